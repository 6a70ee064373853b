//! `connect up`: make the hub match `pconnect.yml` and keep it so. Serves the declared services,
//! applies link and share changes, writes `.env.pconnect`, watches the file (a change is applied
//! within a second; an invalid file is reported and changes nothing), re-plans every few seconds to
//! restore drift, and on Ctrl+C removes what it created (persistent links stay).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use pconnect_proto::control::Unregister;
use pconnect_proto::plan::{Change, plan};
use pconnect_proto::wire::UNREGISTER_PATH;
use tokio_util::sync::CancellationToken;

use crate::dev::actual;
use crate::dev::apply::{self, Applied};
use crate::dev::desired::{self, Project};
use crate::dev::envfile::{self, EnvService};
use crate::link::forward::ForwardLink;
use crate::link::reverse::{self, Exposed};
use crate::project::load::{self, Loaded};
use crate::session::{self, Session};
use crate::signals::stop_requested;
use crate::ui::Ui;

use super::plan::project_file;

/// How often the file is checked for changes.
const WATCH_EVERY: Duration = Duration::from_millis(400);
/// How often the hub is re-planned against (drift).
const DRIFT_EVERY: Duration = Duration::from_secs(5);

/// What `up` is serving right now.
struct Running {
    exposed: Vec<(String, String)>,
    serving: Option<CancellationToken>,
}

pub(crate) async fn up(ui: Ui, file: Option<PathBuf>) -> Result<()> {
    let path = project_file(file)?;
    let loaded = load::load(&path)?;
    let session = session::resolve().await?;
    let cancel = CancellationToken::new();
    let (control, _) = ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, cancel.clone()).await?;
    let mut running = Running { exposed: Vec::new(), serving: None };
    ui.up_starting(&path, loaded.spec.project.as_deref());
    warn_unsupported(ui, &loaded);
    let mut project = desired::project(&loaded.spec)?;
    reconcile(ui, &session, &control, &mut running, &loaded, &project).await?;
    ui.up_watching(&path);
    let mut last_text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut current = loaded;
    let mut watch = tokio::time::interval(WATCH_EVERY);
    let mut drift = tokio::time::interval(DRIFT_EVERY);
    let result = loop {
        tokio::select! {
            _ = stop_requested() => break Ok(()),
            _ = watch.tick() => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text == last_text {
                    continue;
                }
                last_text = text;
                match load::load(&path).map_err(anyhow::Error::from).and_then(|l| desired::project(&l.spec).map(|p| (l, p))) {
                    Ok((loaded, next)) => {
                        ui.up_reloading(&path);
                        current = loaded;
                        project = next;
                        if let Err(e) = reconcile(ui, &session, &control, &mut running, &current, &project).await {
                            ui.warn(&format!("{e:#}"));
                        }
                    }
                    Err(e) => ui.warn(&format!("{e:#}\nNothing was changed; fix the file and save it again.")),
                }
            }
            _ = drift.tick() => {
                if let Err(e) = reconcile(ui, &session, &control, &mut running, &current, &project).await {
                    ui.warn(&format!("{e:#}"));
                }
            }
        }
    };
    teardown(ui, &session, &control, &mut running, &project).await;
    cancel.cancel();
    result
}

/// Serves the declared services, applies the plan, writes the env file.
async fn reconcile(
    ui: Ui,
    session: &Session,
    control: &ForwardLink,
    running: &mut Running,
    loaded: &Loaded,
    project: &Project,
) -> Result<()> {
    let served = serve(session, control, running, &project.exposed).await?;
    let (actual, _) = actual::fetch(control, &session.login.member).await?;
    let plan = plan(&project.desired, &actual);
    let applied = apply::apply(control, &plan.changes).await;
    ui.up_applied(&served.iter().collect::<Vec<_>>(), &applied);
    write_env(ui, loaded, project)?;
    let failed = applied.iter().filter(|a| a.result.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} change(s) could not be applied (see above); retrying in a few seconds");
    Ok(())
}

/// (Re)starts the reverse links when the set of exposed services changed; unregisters removed ones.
/// Returns the service changes made.
async fn serve(
    session: &Session,
    control: &ForwardLink,
    running: &mut Running,
    exposed: &[Exposed],
) -> Result<Vec<Change>> {
    let wanted: Vec<(String, String)> = exposed.iter().map(|e| (e.name.clone(), e.target.to_string())).collect();
    if wanted == running.exposed {
        return Ok(Vec::new());
    }
    let mut changes: Vec<Change> = exposed
        .iter()
        .filter(|e| !running.exposed.iter().any(|(n, t)| *n == e.name && *t == e.target.to_string()))
        .map(|e| Change::Expose { service: e.name.clone(), port: e.target.port })
        .collect();
    let removed: Vec<String> =
        running.exposed.iter().filter(|(n, _)| !wanted.iter().any(|(w, _)| w == n)).map(|(n, _)| n.clone()).collect();
    if let Some(old) = running.serving.take() {
        old.cancel();
    }
    if !removed.is_empty() {
        control.post(UNREGISTER_PATH, &Unregister { names: removed.clone() }).await?;
    }
    changes.extend(removed.into_iter().map(|service| Change::Unexpose { service }));
    if !exposed.is_empty() {
        let token = CancellationToken::new();
        reverse::serve(session.creds.clone(), session.id.clone(), exposed.to_vec(), 2, token.clone()).await?;
        running.serving = Some(token);
    }
    running.exposed = wanted;
    Ok(changes)
}

fn write_env(ui: Ui, loaded: &Loaded, project: &Project) -> Result<()> {
    let file = loaded.spec.env.file.clone().unwrap_or_else(|| ".env.pconnect".into());
    let template = match &loaded.spec.env.template {
        Some(path) => Some(std::fs::read_to_string(loaded.dir.join(path))?),
        None => None,
    };
    let services: Vec<EnvService> = project
        .exposed
        .iter()
        .map(|e| EnvService {
            name: e.name.clone(),
            kind: project.kinds.get(&e.name).copied().flatten(),
            host: e.target.host.clone(),
            port: e.target.port,
            env: project.env.get(&e.name).cloned().unwrap_or_default(),
        })
        .collect();
    let text = envfile::render(loaded.spec.project.as_deref(), &file, &services, template.as_deref())?;
    let out = loaded.dir.join(&file);
    if std::fs::read_to_string(&out).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&out, text)?;
        ui.up_env_written(&display(&out));
    }
    Ok(())
}

/// Removes what `up` created: temporary links, shares, registrations. Persistent links stay.
async fn teardown(ui: Ui, session: &Session, control: &ForwardLink, running: &mut Running, project: &Project) {
    if let Ok((actual, _)) = actual::fetch(control, &session.login.member).await {
        let mut changes = plan(&Default::default(), &actual).changes;
        // Only what this project declares: links of its services, shares of its names.
        changes.retain(|c| match c {
            Change::RevokeLink { service, .. } => project.desired.services.contains_key(service),
            Change::RevokeShare { name, .. } => project.desired.shares.contains_key(name),
            _ => false,
        });
        let applied: Vec<Applied> = apply::apply(control, &changes).await;
        ui.up_applied(&[], &applied);
    }
    let names: Vec<String> = running.exposed.iter().map(|(n, _)| n.clone()).collect();
    if let Some(serving) = running.serving.take() {
        serving.cancel();
    }
    if !names.is_empty() {
        let _ = control.post(UNREGISTER_PATH, &Unregister { names }).await;
    }
    ui.up_stopped();
}

/// Says which declared parts this version does not apply yet, instead of ignoring them silently.
fn warn_unsupported(ui: Ui, loaded: &Loaded) {
    if !loaded.spec.reach.is_empty() {
        ui.warn("`reach:` entries are not applied by `connect up` yet: run `connect reach <service>` or `connect join <code>` meanwhile");
    }
    let debug: Vec<&str> = loaded.spec.services.iter().filter(|(_, s)| s.debug).map(|(n, _)| n.as_str()).collect();
    if !debug.is_empty() {
        ui.warn(&format!(
            "`debug: true` is not applied yet (services: {}): debug sessions are coming",
            debug.join(", ")
        ));
    }
}

fn display(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}
