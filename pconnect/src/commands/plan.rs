//! `connect plan`: what `connect up` would change on the hub, as a readable diff. Exit code 2 when
//! there are changes (for CI), 0 when the hub matches the file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use pconnect_proto::plan::plan;

use crate::dev::{actual, control, desired};
use crate::foreground::Foreground;
use crate::link::forward::ForwardLink;
use crate::project::load;
use crate::session;
use crate::shutdown::Shutdown;
use crate::ui::Ui;

/// Exit code of `connect plan` when there is something to apply.
pub(crate) const CHANGES_EXIT: u8 = pconnect_proto::exit::CHANGES_PENDING;

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

/// Returns whether there are changes. The hub's state comes from the hub; the reach listeners
/// from the project's running `up`, if any (none open otherwise).
pub(crate) async fn plan_command(ui: Ui, file: Option<PathBuf>, shutdown: &Shutdown) -> Result<bool> {
    let fg = Foreground::new(shutdown);
    let path = std::path::absolute(project_file(file)?)?;
    let loaded = load::load(&path)?;
    let project = desired::project(&loaded.spec, &desired::tag(&loaded.spec, &path))?;
    let session = session::resolve_for_project(loaded.spec.hub.as_deref()).await?;
    let (link, _) = ForwardLink::connect(session.creds, session.id, 1, fg.links()).await?;
    let mut view = actual::fetch(&link, &session.login.member).await?;
    if let Some(running) = control::status(&control::socket_path(&path)?).await.ok().flatten() {
        view.actual.reaching = running.reaching;
    }
    let plan = plan(&project.desired, &view.actual);
    ui.plan(&path, &plan);
    Ok(!plan.is_empty())
}
