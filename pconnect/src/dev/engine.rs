//! The engine of `connect up`: reads what is (the hub, this agent's listeners and sessions),
//! plans with the pure `plan(desired, actual)`, and applies every change from it: services (the
//! reverse links this agent serves), links and shares (hub RPCs), reach listeners and debug
//! sessions. Then it writes `.env.pconnect` and publishes the result for `connect status`. The
//! teardown is the same plan against an empty project.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use pconnect_proto::control::{ServiceInfo, Unregister};
use pconnect_proto::plan::{Change, Desired, Plan, plan};
use pconnect_proto::project::ServiceKind;
use pconnect_proto::rpc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::actual::{self, HubView};
use super::apply::{self, Applied, Outcome};
use super::control::{DebugUp, LastApply, LinkUp, ServiceUp, ShareUp, UpStatus};
use super::desired::Project;
use super::envfile::{self, EnvFileOwner, EnvService};
use super::reach::Reaching;
use crate::cli::DirectArgs;
use crate::commands::debug;
use crate::debug::{Captures, DebugOptions, DebugSession};
use crate::direct::{self, Offer};
use crate::drain::{DEFAULT_GRACE, Drain};
use crate::home;
use crate::link::REVERSE_CONNECTIONS;
use crate::link::forward::ForwardLink;
use crate::link::reverse::{self, Exposed};
use crate::project::load::Loaded;
use crate::session::Session;
use crate::shutdown::Shutdown;
use crate::state::ShareCodes;
use crate::ui::Ui;

/// What a running `up` holds and applies changes to.
pub struct Engine {
    ui: Ui,
    session: Session,
    link: ForwardLink,
    /// The project's tag on the hub.
    tag: String,
    /// Cancels everything this engine started (a child of its command's links).
    links: CancellationToken,
    shutdown: Shutdown,
    /// The services served right now, and the token of their reverse links.
    served: Vec<Exposed>,
    serving: Option<CancellationToken>,
    reaching: Reaching,
    /// Services captured by debug sessions (`debug: true`), and the sessions.
    captures: Arc<Captures>,
    debugging: BTreeMap<String, DebugSession>,
    env_file: Option<EnvFileOwner>,
    direct: DirectPort,
    /// Why the file on disk does not load, while it does not (the last good one stays applied).
    file_problem: Option<String>,
    status: watch::Sender<UpStatus>,
}

impl Engine {
    pub(crate) fn new(
        ui: Ui,
        session: Session,
        link: ForwardLink,
        tag: String,
        links: CancellationToken,
        shutdown: Shutdown,
        status: watch::Sender<UpStatus>,
    ) -> Self {
        Self {
            ui,
            session,
            link,
            tag,
            links,
            shutdown,
            served: Vec::new(),
            serving: None,
            reaching: Reaching::default(),
            captures: Captures::new(),
            debugging: BTreeMap::new(),
            env_file: None,
            direct: DirectPort { args: None, open: None },
            file_problem: None,
            status,
        }
    }

    /// Offers the direct port as `args` say (and the file's `direct:`); without this, never.
    pub(crate) fn with_direct(mut self, args: DirectArgs) -> Self {
        self.direct.args = Some(args);
        self
    }

    pub fn ui(&self) -> Ui {
        self.ui
    }

    /// The project's tag on the hub (fixed for the life of the `up`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Notes that the file does not load (`Some`: shown by `connect status` until it does) or
    /// loads again (`None`).
    pub fn file_problem(&mut self, problem: Option<String>) {
        self.file_problem = problem;
        let error = self.file_problem.clone().or_else(|| self.status.borrow().error.clone());
        self.record(error);
    }

    /// Brings the reach listeners' open tunnels (by path) in `connect status` up to date.
    pub fn refresh_tunnels(&self) {
        let live = self.reaching.status();
        self.status.send_if_modified(|status| {
            let changed = status.reach != live;
            if changed {
                status.reach = live;
            }
            changed
        });
    }

    /// Makes hub and agent match the file, and records the outcome for `connect status`.
    pub async fn reconcile(&mut self, loaded: &Loaded, project: &Project) -> Result<()> {
        let result = self.apply_all(loaded, project).await;
        let error = self.file_problem.clone().or_else(|| result.as_ref().err().map(|e| format!("{e:#}")));
        self.record(error);
        result
    }

    /// Records the outcome of the last apply (or the file's problem) for `connect status`.
    fn record(&self, error: Option<String>) {
        let at = pconnect_proto::clock::now();
        self.status.send_modify(|status| {
            status.ready |= error.is_none();
            status.error = error.clone();
            status.last_apply = Some(LastApply { ok: error.is_none(), at, error });
        });
    }

    async fn apply_all(&mut self, loaded: &Loaded, project: &Project) -> Result<()> {
        let view = self.view().await?;
        let plan = plan(&project.desired, &view.actual);
        if !plan.waiting.is_empty() {
            self.ui.warn(&format!(
                "reach: {} not in the workspace yet (nothing exposed under that name); retrying every few seconds",
                plan.waiting.join(", ")
            ));
        }
        let applied = self.apply_plan(&plan, project, &view.services.services).await;
        self.ui.up_applied(&applied);
        self.remember_codes(&applied);
        self.reaching.refresh(&view.services.services);
        let env_file = self.write_env(loaded, project)?;
        let view = if applied.is_empty() { view } else { self.view().await? };
        self.publish(project, &view, env_file);
        let failed = applied.iter().filter(|a| a.result.is_err()).count();
        anyhow::ensure!(failed == 0, "{failed} change(s) could not be applied (see above); retrying in a few seconds");
        Ok(())
    }

    /// The hub's state with this agent's reach listeners.
    async fn view(&self) -> Result<HubView> {
        let mut view = actual::fetch(&self.link, &self.session.login.member).await?;
        view.actual.reaching = self.reaching.actual();
        Ok(view)
    }

    /// Applies a plan in its order: services, then hub changes, reach listeners, debug sessions.
    async fn apply_plan(&mut self, plan: &Plan, project: &Project, workspace: &[ServiceInfo]) -> Vec<Applied> {
        let mut applied = Vec::new();
        let service_changes: Vec<&Change> =
            plan.changes.iter().filter(|c| matches!(c, Change::Expose { .. } | Change::Unexpose { .. })).collect();
        // The reverse hello registers every served service at once: a changed set (or target)
        // restarts the reverse links with the whole set.
        let targets_changed = project.exposed != self.served;
        let direct_changed = self.direct.wanted(project) != self.direct.open.is_some();
        if !service_changes.is_empty() || targets_changed || direct_changed {
            let result = self.serve(project, &service_changes).await.map_err(|e| format!("{e:#}"));
            for change in service_changes {
                let result = result.clone().map(|()| Outcome::Done);
                applied.push(Applied { change: change.clone(), result });
            }
        }
        for change in &plan.changes {
            let outcome = match change {
                Change::Expose { .. } | Change::Unexpose { .. } => continue,
                change if apply::is_hub_change(change) => {
                    applied.push(apply::apply(&self.link, &self.tag, change).await);
                    continue;
                }
                Change::OpenReach { service, via, port } => match workspace.iter().find(|s| &s.name == service) {
                    Some(info) => {
                        let reaching = pconnect_proto::plan::Reaching { via: via.clone(), port: *port };
                        self.reaching.open(self.ui, &self.link, info.clone(), reaching).await;
                        Ok(Outcome::Done)
                    }
                    None => Err(format!("'{service}' left the workspace")),
                },
                Change::CloseReach { service } => {
                    self.reaching.close(service);
                    Ok(Outcome::Done)
                }
                Change::StartDebug { service } => self.start_debug(project, service).await,
                Change::StopDebug { service, .. } => {
                    if let Some(session) = self.debugging.remove(service) {
                        session.finish().await;
                    }
                    Ok(Outcome::Done)
                }
                _ => continue,
            };
            applied.push(Applied { change: change.clone(), result: outcome });
        }
        applied
    }

    /// (Re)starts the reverse links with the project's services, offering the direct port when the
    /// project and the flags want it; unregisters the services the plan removes.
    async fn serve(&mut self, project: &Project, changes: &[&Change]) -> Result<()> {
        let exposed = &project.exposed[..];
        if let Some(old) = self.serving.take() {
            old.cancel();
        }
        let removed: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Unexpose { service } => Some(service.clone()),
                _ => None,
            })
            .collect();
        if !removed.is_empty() {
            self.link.call::<rpc::UnregisterServices>(&Unregister { names: removed }).await?;
        }
        self.served.clear();
        if !exposed.is_empty() {
            let token = self.links.child_token();
            let (creds, id, captures) = (self.session.creds.clone(), self.session.id.clone(), self.captures.clone());
            let (exposed_now, drain) = (exposed.to_vec(), Drain::new());
            let direct = self.direct.offer(project, &self.session, &self.link, &self.links).await?;
            reverse::serve_with_captures(
                creds,
                id,
                exposed_now,
                REVERSE_CONNECTIONS,
                token.clone(),
                captures,
                drain,
                direct,
            )
            .await?;
            self.serving = Some(token);
        }
        if !self.direct.wanted(project) {
            self.direct.close();
        }
        self.served = exposed.to_vec();
        Ok(())
    }

    /// Starts the debug session a `debug: true` service declares.
    async fn start_debug(&mut self, project: &Project, service: &str) -> Result<Outcome, String> {
        let Some(exposed) = project.exposed.iter().find(|e| e.name == service) else {
            return Err(format!("'{service}' is not one of the project's services"));
        };
        let options = DebugOptions {
            service: exposed.name.clone(),
            target: exposed.target.clone(),
            kind: exposed.kind,
            ai: false,
            project: Some(self.tag.clone()),
        };
        let started =
            debug::start_and_announce(self.ui, &self.session, &self.captures, options, self.links.child_token()).await;
        match started {
            Some(session) => {
                self.debugging.insert(service.to_string(), session);
                Ok(Outcome::Done)
            }
            None => Err("the debug session did not start (see above)".into()),
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

    /// Renders the env file (exposed services, then reached ones) when its text changed. The file
    /// that was there before the first write is put back at teardown.
    fn write_env(&mut self, loaded: &Loaded, project: &Project) -> Result<PathBuf> {
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
                kind: project
                    .kinds
                    .get(&e.name)
                    .copied()
                    .flatten()
                    .or_else(|| ServiceKind::guess(&e.name, e.target.port)),
                host: e.target.host.clone(),
                port: e.target.port,
                env: project.env.get(&e.name).cloned().unwrap_or_default(),
            })
            .collect();
        for reached in self.reaching.env_services() {
            if !services.iter().any(|s| s.name == reached.name) {
                services.push(reached);
            }
        }
        let rendered = envfile::render(loaded.spec.project.as_deref(), &file, &services, template.as_deref())?;
        let out = loaded.dir.join(&file);
        if self.env_file.as_ref().is_some_and(|owner| owner.path() != out) {
            // The file moved (`env.file` edited): the old one goes.
            if let Some(old) = self.env_file.take() {
                self.ui.env_file_released(&old.release());
            }
        }
        let owner = self.env_file.get_or_insert_with(|| EnvFileOwner::new(out.clone()));
        if owner.write(&rendered.text)? {
            for refused in &rendered.refused {
                self.ui.warn(refused);
            }
            self.ui.up_env_written(&display(&out));
        }
        Ok(out)
    }

    /// What `connect status` reports: this project's services, links, shares and reach listeners.
    fn publish(&self, project: &Project, view: &HubView, env_file: PathBuf) {
        let codes = home::agent_home().map(|home| ShareCodes::load(&home)).unwrap_or_default();
        let hub = &self.session.login.hub;
        let mine = |p: &Option<String>| p.as_deref() == Some(self.tag.as_str());
        let services =
            self.served.iter().map(|e| ServiceUp { name: e.name.clone(), target: e.target.to_string() }).collect();
        let links = view
            .links
            .links
            .iter()
            .filter(|l| mine(&l.project) && project.desired.links.contains_key(&l.service))
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
            .filter(|s| mine(&s.project))
            .filter_map(|s| {
                let name = s.name.clone()?;
                Some(ShareUp {
                    name,
                    code: codes.get(hub, s.id).map(str::to_string),
                    services: s.routes.iter().map(|r| r.service.clone()).collect(),
                    expires_at: s.expires_at,
                })
            })
            .collect();
        let debug = self
            .debugging
            .iter()
            .map(|(service, session)| DebugUp {
                service: service.clone(),
                id: session.id.clone(),
                url: session.url.clone(),
            })
            .collect();
        let (reach, reaching) = (self.reaching.status(), self.reaching.actual());
        self.status.send_modify(|status| {
            status.debug = debug;
            status.services = services;
            status.links = links;
            status.shares = shares;
            status.reach = reach;
            status.reaching = reaching;
            status.env_file = Some(env_file);
        });
    }

    /// Removes what `up` created: debug sessions, reach listeners (their tunnels get the grace
    /// period), temporary links, shares, service registrations, the env file. Persistent links
    /// stay. It is the plan against an empty project.
    pub async fn teardown(&mut self) {
        for (_, session) in std::mem::take(&mut self.debugging) {
            session.finish().await;
        }
        self.reaching.drain(self.ui, DEFAULT_GRACE, &self.shutdown).await;
        let empty = Desired { project: self.tag.clone(), ..Desired::default() };
        if let Ok(view) = self.view().await {
            let plan = plan(&empty, &view.actual);
            let mut applied = Vec::new();
            for change in plan.changes.iter().filter(|c| apply::is_hub_change(c)) {
                applied.push(apply::apply(&self.link, &self.tag, change).await);
            }
            self.ui.up_applied(&applied);
        }
        let names: Vec<String> = self.served.iter().map(|e| e.name.clone()).collect();
        if let Some(serving) = self.serving.take() {
            serving.cancel();
        }
        self.direct.close();
        if !names.is_empty() {
            let _ = self.link.call::<rpc::UnregisterServices>(&Unregister { names }).await;
        }
        self.served.clear();
        if let Some(owner) = self.env_file.take() {
            self.ui.env_file_released(&owner.release());
        }
        self.ui.up_stopped();
    }
}

/// This agent's direct port while the project offers one (`direct:` in the file, unless
/// `--no-direct`), opened with the first served service and kept across reverse-link restarts.
struct DirectPort {
    /// The command's flags; `None`: this engine never offers one.
    args: Option<DirectArgs>,
    open: Option<(Offer, CancellationToken)>,
}

impl DirectPort {
    fn wanted(&self, project: &Project) -> bool {
        let allowed = self.args.as_ref().is_some_and(|args| !args.no_direct);
        allowed && project.direct && !project.exposed.is_empty()
    }

    /// The offer for the reverse hello: the open port's, a newly bound one's, or none.
    async fn offer(
        &mut self,
        project: &Project,
        session: &Session,
        control: &ForwardLink,
        links: &CancellationToken,
    ) -> Result<Option<Offer>> {
        if !self.wanted(project) {
            self.close();
            return Ok(None);
        }
        if let Some((offer, _)) = &self.open {
            return Ok(Some(offer.clone()));
        }
        let hub = format!("{}:{}", session.creds.hub.host, session.creds.hub.port);
        let listen = self.args.as_ref().map_or("0.0.0.0:0", |args| args.direct_listen.as_str());
        let (listener, offer) = direct::bind(listen, &hub).await?;
        let cancel = links.child_token();
        tokio::spawn(direct::serve(listener, offer.clone(), control.clone(), cancel.clone()));
        self.open = Some((offer.clone(), cancel));
        Ok(Some(offer))
    }

    fn close(&mut self) {
        if let Some((_, cancel)) = self.open.take() {
            cancel.cancel();
        }
    }
}

fn display(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}
