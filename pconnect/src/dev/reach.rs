//! The reach listeners of a running `connect up`: which workspace services are on which local
//! ports right now. What to open and close is decided by the plan
//! ([`pconnect_proto::plan::reach_targets`]); this holds the listeners, their tunnels, and what
//! they contribute to `.env.pconnect` and `connect status`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use pconnect_proto::control::ServiceInfo;
use pconnect_proto::plan::{self, ReachVia};
use pconnect_proto::project::ServiceKind;
use tokio::task::JoinHandle;

use super::control::{ReachUp, TunnelsUp};
use super::envfile::EnvService;
use crate::drain::Drain;
use crate::link::forward::{ForwardLink, Via};
use crate::local_port::{self, Paths, Tunnels};
use crate::shutdown::Shutdown;
use crate::ui::Ui;

/// Reach listeners open on loopback.
const BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One service brought to a local port.
struct Listening {
    info: ServiceInfo,
    /// Whose service it reaches and the port the file asked for: what the plan compares.
    reaching: plan::Reaching,
    addr: SocketAddr,
    paths: Arc<Paths>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The reach listeners of a running `up`.
#[derive(Default)]
pub struct Reaching {
    open: BTreeMap<String, Listening>,
    /// The tunnels of all listeners: `up`'s teardown lets them finish for a grace period.
    drain: Drain,
}

impl Reaching {
    /// What is open, as the planner sees it (a listener whose task ended counts as closed).
    pub fn actual(&self) -> BTreeMap<String, plan::Reaching> {
        self.open.iter().filter(|(_, l)| !l.task.is_finished()).map(|(n, l)| (n.clone(), l.reaching.clone())).collect()
    }

    /// Opens a listener for `info` (on the declared port, else the service's own, else a free one).
    pub async fn open(&mut self, ui: Ui, link: &ForwardLink, info: ServiceInfo, reaching: plan::Reaching) {
        self.close(&info.name);
        let via = match &reaching.via {
            ReachVia::Name => Via::Name,
            ReachVia::Owner(owner) => Via::Owner(owner.as_str().into()),
        };
        match local_port::bind(BIND, reaching.port, info.port).await {
            Ok((listener, fallback)) => {
                let Ok(addr) = listener.local_addr() else { return };
                ui.up_reaching(&info, addr, fallback);
                let tunnels = Tunnels::new(self.drain.clone());
                let paths = tunnels.paths.clone();
                let serve = local_port::serve(ui, link.clone(), info.name.clone(), via, listener, tunnels);
                let task = tokio::spawn(serve);
                self.open.insert(info.name.clone(), Listening { info, reaching, addr, paths, task });
            }
            Err(e) => ui.warn(&format!("reach {}: {e:#}", info.name)),
        }
    }

    /// Closes one listener (its open tunnels go on until they end).
    pub fn close(&mut self, service: &str) {
        if let Some(listening) = self.open.remove(service) {
            listening.task.abort();
        }
    }

    /// Keeps the listings (kind, env) of open listeners current.
    pub fn refresh(&mut self, workspace: &[ServiceInfo]) {
        for (name, listening) in &mut self.open {
            if let Some(info) = workspace.iter().find(|s| &s.name == name) {
                listening.info = info.clone();
            }
        }
    }

    /// Closes every listener and lets open connections finish for up to `grace`.
    pub async fn drain(&mut self, ui: Ui, grace: std::time::Duration, shutdown: &Shutdown) {
        let names: Vec<String> = self.open.keys().cloned().collect();
        for name in names {
            self.close(&name);
        }
        self.drain.run(ui, grace, shutdown).await;
    }

    /// For `connect status`.
    pub fn status(&self) -> Vec<ReachUp> {
        self.open
            .values()
            .map(|l| {
                let (direct, relay) = l.paths.live();
                let (service, owner, address) = (l.info.name.clone(), l.info.owner.clone(), l.addr.to_string());
                ReachUp { service, owner, address, tunnels: TunnelsUp { direct, relay } }
            })
            .collect()
    }

    /// For `.env.pconnect`: each reached service at its local address, with its declared kind and env.
    pub fn env_services(&self) -> Vec<EnvService> {
        self.open
            .values()
            .map(|l| EnvService {
                name: l.info.name.clone(),
                kind: l.info.kind.or_else(|| ServiceKind::guess(&l.info.name, l.info.port)),
                host: "localhost".into(),
                port: l.addr.port(),
                env: l.info.env.clone(),
            })
            .collect()
    }
}

impl Drop for Reaching {
    fn drop(&mut self) {
        for (_, listening) in std::mem::take(&mut self.open) {
            listening.task.abort();
        }
    }
}
