//! A running `connect up`: applies the file once, then keeps hub and agent in step with it (a
//! changed file is applied within a second; an invalid one is reported with `file:line:col`, in
//! `connect status` too, and changes nothing), re-plans every few seconds to restore drift, answers
//! `connect status` / `connect down` on its control socket, and on a stop request (Ctrl+C, SIGTERM,
//! `down`) stops whatever it was doing, even mid-apply, and tears down what it created.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;

use super::control::{self, Control, DownRequest, UpStatus};
use super::desired::{self, Project};
use super::engine::Engine;
use crate::cli::DirectArgs;
use crate::foreground::Foreground;
use crate::link::FORWARD_CONNECTIONS;
use crate::link::forward::ForwardLink;
use crate::project::load::{self, Loaded};
use crate::session;
use crate::shutdown::Shutdown;
use crate::ui::Ui;

/// How often the file is checked for changes.
const WATCH_EVERY: Duration = Duration::from_millis(400);
/// How often the hub is re-planned against (drift, teammates' services for `reach:`).
const DRIFT_EVERY: Duration = Duration::from_secs(5);

/// Why the watch loop ended.
enum Stop {
    Requested,
    Down(DownRequest),
}

/// Runs `connect up` for the project file `path` until it is stopped.
pub(crate) async fn up(ui: Ui, path: &Path, direct: DirectArgs, shutdown: &Shutdown) -> Result<()> {
    let fg = Foreground::new(shutdown);
    // The text the first apply is made from, read before it: an edit saved at any moment after
    // this (even while the first apply runs) differs from it and is applied by the loop.
    let applied_text = std::fs::read_to_string(path).unwrap_or_default();
    let loaded = load::load(path)?;
    let tag = desired::tag(&loaded.spec, path);
    let project = desired::project(&loaded.spec, &tag)?;
    let (status, status_rx) = watch::channel(UpStatus {
        project: loaded.spec.project.clone(),
        file: path.to_path_buf(),
        pid: std::process::id(),
        ..UpStatus::default()
    });
    let mut control = Control::bind(control::socket_path(path)?, status_rx).await?;
    let session = session::resolve_for_project(loaded.spec.hub.as_deref()).await?;
    let (link, _) =
        ForwardLink::connect(session.creds.clone(), session.id.clone(), FORWARD_CONNECTIONS, fg.links()).await?;
    // `reach:` tunnels go straight to the exposing agent when it can be reached.
    crate::direct::dial_first(&link, fg.links());
    ui.up_starting(path, loaded.spec.project.as_deref());
    let mut engine = Engine::new(ui, session, link, tag, fg.links(), shutdown.clone(), status).with_direct(direct);
    let mut current = (loaded, project);
    let first = tokio::select! {
        result = engine.reconcile(&current.0, &current.1) => result.map(|()| None),
        _ = fg.stop_requested() => Ok(Some(Stop::Requested)),
        down = control.down_requested() => Ok(down.map(Stop::Down)),
    };
    let stop = match first {
        Err(e) => {
            engine.teardown().await;
            return Err(e);
        }
        Ok(Some(stop)) => stop,
        Ok(None) => {
            ui.up_watching(path);
            keep(&mut engine, &fg, &mut control, path, &mut current, applied_text).await
        }
    };
    engine.teardown().await;
    if let Stop::Down(answer) = stop {
        answer.answer().await;
    }
    Ok(())
}

/// What woke the loop.
enum Tick {
    File,
    Drift,
}

/// Keeps the project applied until a stop; each apply can be interrupted by it.
async fn keep(
    engine: &mut Engine,
    fg: &Foreground,
    control: &mut Control,
    path: &Path,
    current: &mut (Loaded, Project),
    mut last_text: String,
) -> Stop {
    let mut watch = tokio::time::interval(WATCH_EVERY);
    // The first apply just ran: the first drift check is one period away, not at once.
    let mut drift = tokio::time::interval_at(tokio::time::Instant::now() + DRIFT_EVERY, DRIFT_EVERY);
    loop {
        let tick = tokio::select! {
            _ = fg.stop_requested() => return Stop::Requested,
            down = control.down_requested() => match down {
                Some(down) => return Stop::Down(down),
                None => return Stop::Requested,
            },
            _ = watch.tick() => Tick::File,
            _ = drift.tick() => Tick::Drift,
        };
        let work = async {
            match tick {
                Tick::File => {
                    engine.refresh_tunnels();
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    if text != last_text {
                        last_text = text;
                        reload(engine, path, current).await;
                    }
                }
                // A drift check gives way to a changed file (it may hang on an unreachable hub; the
                // file's apply must not wait behind it): the next tick applies the file.
                Tick::Drift => tokio::select! {
                    _ = reconcile_or_warn(engine, current) => {}
                    _ = file_changes(path, &last_text) => {}
                },
            }
        };
        tokio::select! {
            _ = work => {}
            _ = fg.stop_requested() => return Stop::Requested,
            down = control.down_requested() => match down {
                Some(down) => return Stop::Down(down),
                None => return Stop::Requested,
            },
        }
    }
}

/// Resolves once the file's text is no longer `last`.
async fn file_changes(path: &Path, last: &str) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if std::fs::read_to_string(path).unwrap_or_default() != last {
            return;
        }
    }
}

/// Applies a changed file; a file that does not load changes nothing and says where it is wrong.
async fn reload(engine: &mut Engine, path: &Path, current: &mut (Loaded, Project)) {
    let next = load::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|loaded| desired::project(&loaded.spec, engine.tag()).map(|project| (loaded, project)));
    match next {
        Ok(next) => {
            engine.ui().up_reloading(path);
            engine.file_problem(None);
            *current = next;
            reconcile_or_warn(engine, current).await;
        }
        Err(e) => {
            let message = format!("{e:#}");
            engine.ui().warn(&format!("{message}\nNothing was changed; fix the file and save it again."));
            engine.file_problem(Some(message));
        }
    }
}

async fn reconcile_or_warn(engine: &mut Engine, current: &(Loaded, Project)) {
    if let Err(e) = engine.reconcile(&current.0, &current.1).await {
        engine.ui().warn(&format!("{e:#}"));
    }
}

/// The absolute path of the project file (`--file`, else found from here).
pub(crate) fn project_path(file: Option<PathBuf>) -> Result<PathBuf> {
    Ok(std::path::absolute(crate::commands::plan::project_file(file)?)?)
}
