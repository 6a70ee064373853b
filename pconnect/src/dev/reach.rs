//! The `reach:` section of a project while `connect up` runs: local listeners for declared workspace
//! services and for every service of a declared teammate, kept in step with the file and with what
//! the teammate exposes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pconnect_proto::control::{ServiceInfo, ServiceList};
use pconnect_proto::project::ReachDecl;
use tokio::task::JoinHandle;

use super::control::ReachUp;
use super::envfile::EnvService;
use crate::drain::Drain;
use crate::link::forward::{ForwardLink, Via};
use crate::local_port;
use crate::ui::Ui;

/// Reach listeners open on loopback.
const BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One service brought to a local port.
struct Listening {
    info: ServiceInfo,
    /// The port the file asked for, if it named one.
    declared: Option<u16>,
    /// Whose service the tunnels are for.
    via: Via,
    addr: SocketAddr,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The reach listeners of a running `up`.
#[derive(Default)]
pub struct Reaching {
    open: BTreeMap<String, Listening>,
    /// The tunnels of all listeners: `up`'s teardown lets them finish for a grace period.
    drain: Drain,
}

/// Service name -> (its listing, the local port the file named, whose service it must be).
type Wanted = BTreeMap<String, (ServiceInfo, Option<u16>, Via)>;

/// What the reach declarations want right now, and what they name that the workspace lacks.
fn wanted(decls: &[ReachDecl], list: &ServiceList, me: &str) -> (Wanted, Vec<String>) {
    let mut wanted = BTreeMap::new();
    let mut missing = Vec::new();
    for decl in decls {
        match (&decl.service, &decl.teammate) {
            (Some(name), _) => match list.services.iter().find(|s| &s.name == name) {
                Some(info) => {
                    let port = decl.port.and_then(|p| u16::try_from(p).ok());
                    wanted.insert(name.clone(), (info.clone(), port, Via::Name));
                }
                None => missing.push(format!("service '{name}'")),
            },
            (None, Some(teammate)) => {
                let theirs: Vec<&ServiceInfo> =
                    list.services.iter().filter(|s| s.owner.eq_ignore_ascii_case(teammate) && s.owner != me).collect();
                if theirs.is_empty() {
                    missing.push(format!("teammate '{teammate}'"));
                }
                for info in theirs {
                    let via = Via::Owner(info.owner.as_str().into());
                    wanted.entry(info.name.clone()).or_insert_with(|| (info.clone(), None, via));
                }
            }
            (None, None) => {}
        }
    }
    (wanted, missing)
}

impl Reaching {
    /// Opens listeners for newly wanted services and closes those no longer wanted. Services not in
    /// the workspace yet are reported and retried on the next call.
    pub async fn sync(&mut self, ui: Ui, link: &ForwardLink, decls: &[ReachDecl], list: &ServiceList, me: &str) {
        let (wanted, missing) = wanted(decls, list, me);
        if !missing.is_empty() {
            ui.warn(&format!(
                "reach: {} not in the workspace yet (nothing exposed under that name); retrying every few seconds",
                missing.join(", ")
            ));
        }
        let stale: Vec<String> = self
            .open
            .iter()
            .filter(|(name, l)| {
                !matches!(wanted.get(*name), Some((_, port, via)) if *port == l.declared && *via == l.via)
                    || l.task.is_finished()
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(listening) = self.open.remove(&name) {
                listening.task.abort();
            }
        }
        for (name, (info, declared, via)) in wanted {
            if let Some(listening) = self.open.get_mut(&name) {
                listening.info = info;
                continue;
            }
            match local_port::bind(BIND, declared, info.port).await {
                Ok((listener, fallback)) => {
                    let Ok(addr) = listener.local_addr() else { continue };
                    ui.up_reaching(&info, addr, fallback);
                    let serve =
                        local_port::serve(ui, link.clone(), name.clone(), via.clone(), listener, self.drain.clone());
                    let task = tokio::spawn(serve);
                    self.open.insert(name, Listening { info, declared, via, addr, task });
                }
                Err(e) => ui.warn(&format!("reach {name}: {e:#}")),
            }
        }
    }

    /// Closes every listener.
    pub fn close(&mut self) {
        for (_, listening) in std::mem::take(&mut self.open) {
            listening.task.abort();
        }
    }

    /// Closes every listener and lets open connections finish for up to `grace`.
    pub async fn drain(&mut self, ui: Ui, grace: std::time::Duration) {
        self.close();
        self.drain.run(ui, grace).await;
    }

    /// For `connect status`.
    pub fn status(&self) -> Vec<ReachUp> {
        self.open
            .values()
            .map(|l| ReachUp { service: l.info.name.clone(), owner: l.info.owner.clone(), address: l.addr.to_string() })
            .collect()
    }

    /// For `.env.pconnect`: each reached service at its local address, with its declared kind and env.
    pub fn env_services(&self) -> Vec<EnvService> {
        self.open
            .values()
            .map(|l| EnvService {
                name: l.info.name.clone(),
                kind: l.info.kind,
                host: "localhost".into(),
                port: l.addr.port(),
                env: l.info.env.clone(),
            })
            .collect()
    }
}

impl Drop for Reaching {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, owner: &str, port: u16) -> ServiceInfo {
        ServiceInfo { name: name.into(), owner: owner.into(), port, online: true, kind: None, env: Default::default() }
    }

    fn decl(service: Option<&str>, teammate: Option<&str>, port: Option<u32>) -> ReachDecl {
        ReachDecl { service: service.map(Into::into), teammate: teammate.map(Into::into), port }
    }

    #[test]
    fn a_teammate_brings_all_their_services_and_a_named_service_keeps_its_port() {
        let list = ServiceList {
            services: vec![service("db", "alice", 5432), service("web", "alice", 3000), service("pay", "carol", 8080)],
        };
        let decls = [decl(None, Some("Alice"), None), decl(Some("pay"), None, Some(9000))];
        let (wanted, missing) = wanted(&decls, &list, "bob");
        assert_eq!(wanted.keys().collect::<Vec<_>>(), ["db", "pay", "web"]);
        assert_eq!(wanted["pay"].1, Some(9000));
        assert!(missing.is_empty());
    }

    #[test]
    fn unknown_services_and_teammates_are_reported_not_fatal() {
        let list = ServiceList { services: vec![service("db", "bob", 5432)] };
        let decls = [decl(Some("nope"), None, None), decl(None, Some("bob"), None)];
        let (wanted, missing) = wanted(&decls, &list, "bob");
        assert!(wanted.is_empty(), "my own services are not reached as a teammate's");
        assert_eq!(missing, ["service 'nope'", "teammate 'bob'"]);
    }
}
