//! `connect up`: make the hub match `pconnect.yml` and keep it so. Serves the declared services,
//! applies link and share changes, opens the `reach:` listeners, writes `.env.pconnect`, watches the
//! file (a change is applied within a second; an invalid file is reported and changes nothing),
//! re-plans every few seconds to restore drift, answers `connect status` / `connect down` on its
//! control socket, and on Ctrl+C or `down` removes what it created (persistent links stay).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use pconnect_proto::control::Unregister;
use pconnect_proto::plan::{Change, plan};
use pconnect_proto::wire::UNREGISTER_PATH;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::UpArgs;
use crate::commands::debug;
use crate::commands::reach::FORWARD_CONNECTIONS;
use crate::debug::{Captures, DebugSession};
use crate::dev::actual::{self, HubView};
use crate::dev::apply::{self, Applied, Outcome};
use crate::dev::control::{self, Control, DebugUp, DownRequest, LinkUp, ServiceUp, ShareUp, UpStatus};
use crate::dev::desired::{self, Project};
use crate::dev::envfile::{self, EnvService};
use crate::dev::reach::Reaching;
use crate::drain::{DEFAULT_GRACE, Drain};
use crate::home;
use crate::link::forward::ForwardLink;
use crate::link::reverse::{self, Exposed};
use crate::project::load::{self, Loaded};
use crate::session::{self, Session};
use crate::signals::stop_requested;
use crate::state::ShareCodes;
use crate::ui::Ui;

use super::plan::project_file;

/// How often the file is checked for changes.
const WATCH_EVERY: Duration = Duration::from_millis(400);
/// How often the hub is re-planned against (drift, teammates' services for `reach:`).
const DRIFT_EVERY: Duration = Duration::from_secs(5);

pub(crate) async fn up(ui: Ui, args: UpArgs) -> Result<()> {
    let path = std::path::absolute(project_file(args.file)?)?;
    if args.detach {
        return super::detach::detach(ui, &path).await;
    }
    let loaded = load::load(&path)?;
    let project = desired::project(&loaded.spec)?;
    let (status, status_rx) = watch::channel(UpStatus {
        project: loaded.spec.project.clone(),
        file: path.clone(),
        pid: std::process::id(),
        ..UpStatus::default()
    });
    let mut control = Control::bind(control::socket_path(&path)?, status_rx).await?;
    let session = session::resolve_for_project(loaded.spec.hub.as_deref()).await?;
    let cancel = CancellationToken::new();
    let (link, _) =
        ForwardLink::connect(session.creds.clone(), session.id.clone(), FORWARD_CONNECTIONS, cancel.clone()).await?;
    ui.up_starting(&path, loaded.spec.project.as_deref());
    let mut up = Up {
        ui,
        session,
        link,
        exposed: Vec::new(),
        serving: None,
        reaching: Reaching::default(),
        captures: Captures::new(),
        debugging: BTreeMap::new(),
        status,
    };
    let mut current = (loaded, project);
    let answer = match up.reconcile(&current.0, &current.1).await {
        Err(e) => {
            up.teardown(&current.1).await;
            cancel.cancel();
            return Err(e);
        }
        Ok(()) => {
            ui.up_watching(&path);
            watch_and_keep(&mut up, &mut control, &path, &mut current).await
        }
    };
    up.teardown(&current.1).await;
    if let Some(answer) = answer {
        answer.answer().await;
    }
    cancel.cancel();
    Ok(())
}

/// Runs until Ctrl+C or `connect down`; returns the `down` request to answer once torn down.
async fn watch_and_keep(
    up: &mut Up,
    control: &mut Control,
    path: &Path,
    current: &mut (Loaded, Project),
) -> Option<DownRequest> {
    let mut last_text = std::fs::read_to_string(path).unwrap_or_default();
    let mut watch = tokio::time::interval(WATCH_EVERY);
    let mut drift = tokio::time::interval(DRIFT_EVERY);
    loop {
        tokio::select! {
            _ = stop_requested() => return None,
            answer = control.down_requested() => return answer,
            _ = watch.tick() => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                if text == last_text {
                    continue;
                }
                last_text = text;
                let next = load::load(path)
                    .map_err(anyhow::Error::from)
                    .and_then(|l| desired::project(&l.spec).map(|p| (l, p)));
                match next {
                    Ok(next) => {
                        up.ui.up_reloading(path);
                        *current = next;
                        up.reconcile_or_warn(&current.0, &current.1).await;
                    }
                    Err(e) => up.ui.warn(&format!("{e:#}\nNothing was changed; fix the file and save it again.")),
                }
            }
            _ = drift.tick() => up.reconcile_or_warn(&current.0, &current.1).await,
        }
    }
}

/// What `up` holds while it runs.
struct Up {
    ui: Ui,
    session: Session,
    link: ForwardLink,
    /// (name, target) of the services served right now.
    exposed: Vec<(String, String)>,
    serving: Option<CancellationToken>,
    reaching: Reaching,
    /// Services captured by debug sessions (`debug: true`), and the sessions.
    captures: Arc<Captures>,
    debugging: BTreeMap<String, DebugSession>,
    status: watch::Sender<UpStatus>,
}

impl Up {
    async fn reconcile_or_warn(&mut self, loaded: &Loaded, project: &Project) {
        if let Err(e) = self.reconcile(loaded, project).await {
            self.ui.warn(&format!("{e:#}"));
        }
    }

    /// Serves the declared services, applies the plan, opens reach listeners, writes the env file,
    /// and publishes the result for `connect status`.
    async fn reconcile(&mut self, loaded: &Loaded, project: &Project) -> Result<()> {
        let result = self.apply_all(loaded, project).await;
        self.status.send_modify(|status| match &result {
            Ok(()) => {
                status.ready = true;
                status.error = None;
            }
            Err(e) => status.error = Some(format!("{e:#}")),
        });
        result
    }

    async fn apply_all(&mut self, loaded: &Loaded, project: &Project) -> Result<()> {
        let served = self.serve(&project.exposed).await?;
        self.debug_sessions(loaded, project).await;
        let view = actual::fetch(&self.link, &self.session.login.member).await?;
        let changes = plan(&project.desired, &view.actual).changes;
        let applied = apply::apply(&self.link, &changes).await;
        self.ui.up_applied(&served.iter().collect::<Vec<_>>(), &applied);
        self.remember_codes(&applied);
        self.reaching.sync(self.ui, &self.link, &loaded.spec.reach, &view.services, &self.session.login.member).await;
        let env_file = self.write_env(loaded, project)?;
        let view =
            if applied.is_empty() { view } else { actual::fetch(&self.link, &self.session.login.member).await? };
        self.publish(project, &view, env_file);
        let failed = applied.iter().filter(|a| a.result.is_err()).count();
        anyhow::ensure!(failed == 0, "{failed} change(s) could not be applied (see above); retrying in a few seconds");
        Ok(())
    }

    /// (Re)starts the reverse links when the set of exposed services changed; unregisters removed
    /// ones. Returns the service changes made.
    async fn serve(&mut self, exposed: &[Exposed]) -> Result<Vec<Change>> {
        let wanted: Vec<(String, String)> = exposed.iter().map(|e| (e.name.clone(), e.target.to_string())).collect();
        if wanted == self.exposed {
            return Ok(Vec::new());
        }
        let mut changes: Vec<Change> = exposed
            .iter()
            .filter(|e| !self.exposed.iter().any(|(n, t)| *n == e.name && *t == e.target.to_string()))
            .map(|e| Change::Expose { service: e.name.clone(), port: e.target.port })
            .collect();
        let removed: Vec<String> =
            self.exposed.iter().filter(|(n, _)| !wanted.iter().any(|(w, _)| w == n)).map(|(n, _)| n.clone()).collect();
        if let Some(old) = self.serving.take() {
            old.cancel();
        }
        if !removed.is_empty() {
            self.link.post(UNREGISTER_PATH, &Unregister { names: removed.clone() }).await?;
        }
        changes.extend(removed.into_iter().map(|service| Change::Unexpose { service }));
        if !exposed.is_empty() {
            let token = CancellationToken::new();
            let (creds, id) = (self.session.creds.clone(), self.session.id.clone());
            let captures = self.captures.clone();
            reverse::serve_with_captures(creds, id, exposed.to_vec(), 2, token.clone(), captures, Drain::new()).await?;
            self.serving = Some(token);
        }
        self.exposed = wanted;
        Ok(changes)
    }

    /// Starts a debug session for each served service declared `debug: true`, and ends those no
    /// longer declared. A session stopped elsewhere (`connect debug stop`) is not restarted until
    /// the file changes it.
    async fn debug_sessions(&mut self, loaded: &Loaded, project: &Project) {
        let wanted: Vec<&Exposed> =
            project.exposed.iter().filter(|e| loaded.spec.services.get(&e.name).is_some_and(|s| s.debug)).collect();
        let dropped: Vec<String> =
            self.debugging.keys().filter(|name| !wanted.iter().any(|e| &e.name == *name)).cloned().collect();
        for name in dropped {
            if let Some(session) = self.debugging.remove(&name) {
                session.finish().await;
            }
        }
        for exposed in wanted {
            if self.debugging.contains_key(&exposed.name) {
                continue;
            }
            let (ui, kind) = (self.ui, exposed.kind);
            let started = debug::start_and_announce(
                ui,
                &self.session,
                &self.captures,
                &exposed.name,
                &exposed.target,
                kind,
                false,
                CancellationToken::new(),
            )
            .await;
            if let Some(session) = started {
                self.debugging.insert(exposed.name.clone(), session);
            }
        }
    }

    /// Keeps the codes of shares `up` created, so `connect status` and `connect share --list` can
    /// show them (the hub keeps only their hashes).
    fn remember_codes(&self, applied: &[Applied]) {
        let Ok(home) = home::agent_home() else { return };
        for a in applied {
            if let Ok(Outcome::Share(created)) = &a.result
                && let Err(e) = ShareCodes::remember(&home, &self.session.login.hub, created.share.id, &created.code)
            {
                self.ui.warn(&format!("could not save the code of share {}: {e:#}", created.code));
            }
        }
    }

    /// Renders the env file (exposed services, then reached ones) when its text changed.
    fn write_env(&self, loaded: &Loaded, project: &Project) -> Result<PathBuf> {
        let file = loaded.spec.env.file.clone().unwrap_or_else(|| ".env.pconnect".into());
        let template = match &loaded.spec.env.template {
            Some(path) => Some(std::fs::read_to_string(loaded.dir.join(path))?),
            None => None,
        };
        let mut services: Vec<EnvService> = project
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
        for reached in self.reaching.env_services() {
            if services.iter().any(|s| s.name == reached.name) {
                continue;
            }
            services.push(reached);
        }
        let rendered = envfile::render(loaded.spec.project.as_deref(), &file, &services, template.as_deref())?;
        let out = loaded.dir.join(&file);
        if std::fs::read_to_string(&out).ok().as_deref() != Some(rendered.text.as_str()) {
            for refused in &rendered.refused {
                self.ui.warn(refused);
            }
            envfile::write(&out, &rendered.text)?;
            self.ui.up_env_written(&display(&out));
        }
        Ok(out)
    }

    /// What `connect status` reports: this project's services, links, shares and reach listeners.
    fn publish(&self, project: &Project, view: &HubView, env_file: PathBuf) {
        let codes = home::agent_home().map(|home| ShareCodes::load(&home)).unwrap_or_default();
        let hub = &self.session.login.hub;
        let services = self
            .exposed
            .iter()
            .map(|(name, target)| ServiceUp { name: name.clone(), target: target.clone() })
            .collect();
        let links = view
            .links
            .links
            .iter()
            .filter(|l| project.desired.links.contains_key(&l.service))
            .map(|l| LinkUp {
                service: l.service.clone(),
                url: l.url.clone(),
                persistent: l.persistent,
                expires_at: l.expires_at,
            })
            .collect();
        let shares = view
            .shares
            .shares
            .iter()
            .filter_map(|s| {
                let name = s.name.clone().filter(|n| project.desired.shares.contains_key(n))?;
                Some(ShareUp {
                    name,
                    code: codes.get(hub, s.id).map(str::to_string),
                    services: s.routes.iter().map(|r| r.service.clone()).collect(),
                    expires_at: s.expires_at,
                })
            })
            .collect();
        let reach = self.reaching.status();
        let debug = self
            .debugging
            .iter()
            .map(|(service, session)| DebugUp {
                service: service.clone(),
                id: session.id.clone(),
                url: session.url.clone(),
            })
            .collect();
        self.status.send_modify(|status| {
            status.debug = debug;
            status.services = services;
            status.links = links;
            status.shares = shares;
            status.reach = reach;
            status.env_file = Some(env_file);
        });
    }

    /// Removes what `up` created: temporary links, shares, registrations, reach listeners.
    /// Persistent links stay.
    async fn teardown(&mut self, project: &Project) {
        for (_, session) in std::mem::take(&mut self.debugging) {
            session.finish().await;
        }
        self.reaching.drain(self.ui, DEFAULT_GRACE).await;
        if let Ok(view) = actual::fetch(&self.link, &self.session.login.member).await {
            let mut changes = plan(&Default::default(), &view.actual).changes;
            // Only what this project declares: links of its services, shares of its names.
            changes.retain(|c| match c {
                Change::RevokeLink { service, .. } => project.desired.services.contains_key(service),
                Change::RevokeShare { name, .. } => project.desired.shares.contains_key(name),
                _ => false,
            });
            let applied: Vec<Applied> = apply::apply(&self.link, &changes).await;
            self.ui.up_applied(&[], &applied);
        }
        let names: Vec<String> = self.exposed.iter().map(|(n, _)| n.clone()).collect();
        if let Some(serving) = self.serving.take() {
            serving.cancel();
        }
        if !names.is_empty() {
            let _ = self.link.post(UNREGISTER_PATH, &Unregister { names }).await;
        }
        self.ui.up_stopped();
    }
}

fn display(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}
