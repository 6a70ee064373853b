//! `connect plan`: what `connect up` would change on the hub, as a readable diff. Exit code 2 when
//! there are changes (for CI), 0 when the hub matches the file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use pconnect_proto::plan::{Change, plan};
use tokio_util::sync::CancellationToken;

use crate::dev::{actual, desired};
use crate::link::forward::ForwardLink;
use crate::project::load;
use crate::session;
use crate::ui::Ui;

/// Exit code of `connect plan` when there is something to apply.
pub(crate) const CHANGES_EXIT: u8 = 2;

/// The project file: `--file`, else `pconnect.yml` here or in a parent directory.
pub(crate) fn project_file(file: Option<PathBuf>) -> Result<PathBuf> {
    match file {
        Some(file) => Ok(file),
        None => {
            let here = std::env::current_dir().context("cannot read the current directory")?;
            load::find(&here).ok_or_else(|| {
                anyhow::anyhow!(
                    "no pconnect.yml in {} or its parents: create one (see examples/) or pass --file",
                    here.display()
                )
            })
        }
    }
}

/// Returns whether there are changes.
pub(crate) async fn plan_command(ui: Ui, file: Option<PathBuf>) -> Result<bool> {
    let path = project_file(file)?;
    let loaded = load::load(&path)?;
    let project = desired::project(&loaded.spec)?;
    let session = session::resolve_for_project(loaded.spec.hub.as_deref()).await?;
    let cancel = CancellationToken::new();
    let (link, _) = ForwardLink::connect(session.creds, session.id, 1, cancel.clone()).await?;
    let view = actual::fetch(&link, &session.login.member).await?;
    cancel.cancel();
    let plan = plan(&project.desired, &view.actual);
    ui.plan(&path, &plan);
    Ok(!plan.is_empty())
}

/// One line per change, `+` adds, `-` removes.
pub(crate) fn describe(change: &Change) -> String {
    match change {
        Change::Expose { service, port } => format!("+ expose {service} (port {port})"),
        Change::Unexpose { service } => format!("- unexpose {service}"),
        Change::CreateLink { service, link } if link.persistent => format!("+ public link for {service}"),
        Change::CreateLink { service, .. } => format!("+ link for {service}"),
        Change::RevokeLink { subdomain, service } => format!("- revoke link {subdomain} ({service})"),
        Change::CreateShare { name, share } => {
            let services: Vec<&str> = share.services.iter().map(String::as_str).collect();
            format!("+ share {name} ({})", services.join(", "))
        }
        Change::RevokeShare { name, .. } => format!("- revoke share {name}"),
    }
}
