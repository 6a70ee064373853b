//! The reach side of the direct path. For a tunnel, the hub is asked for the exposing agent's
//! candidates and a ticket (cached until shortly before the ticket expires); a direct connection
//! to the agent is dialed — its candidate addresses raced, each a moment after the one before —
//! (mutual TLS, the exposing agent's certificate must name the service's owner) and kept,
//! multiplexing every later tunnel as a stream of its [lane](pconnect_link::lane). Happy eyeballs:
//! a tunnel waits at most [`RACE_DELAY`] for a direct connection that is still being dialed, then
//! takes the relay while the dial goes on for the next ones. A failed dial or stream sends
//! tunnels to the relay (never fails them) and the direct path is tried again after
//! [`RETRY_AFTER`]. While a connection lives, the hub is asked to say if its member is removed
//! ([`super::watch`]); then the connection and its tunnels are cut and that member's agents are
//! not dialed again.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pconnect_link::heartbeat;
use pconnect_link::lane::{self, Lane};
use pconnect_proto::control::ErrorCode;
use pconnect_proto::direct::{Candidate, DirectRoute, DirectRouteRequest, HEADER_TICKET, agent_name};
use pconnect_proto::rpc;
use pconnect_proto::wire::{self, LINK_AUTHORITY, TUNNEL_PROTOCOL};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, watch};
use tokio_util::sync::CancellationToken;

use super::expiry;
use super::identity::Identity;
use crate::link::LinkError;
use crate::link::forward::{Bypass, DirectTunnel, ForwardLink, Via};

/// How long a new tunnel waits for a direct connection being dialed before it takes the relay.
pub(crate) const RACE_DELAY: Duration = Duration::from_millis(250);
/// How long the relay is used alone after the direct path failed.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(3);
/// The next candidate address is dialed this long after the one before, unless one answered.
const STAGGER: Duration = Duration::from_millis(100);
/// A direct dial (TCP + TLS + HTTP/2) gives up after this.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// A ticket is asked for again this long before it expires.
const TICKET_MARGIN_MS: i64 = 10_000;

/// What the hub said about a route, and until when it holds.
#[derive(Clone)]
enum RouteEntry {
    Direct(DirectRoute),
    /// No direct path (or the hub did not answer): the relay until then.
    RelayUntil(Instant),
}

/// Which exposing agent a direct connection goes to: its member and the addresses it offered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConnKey {
    owner: i64,
    addrs: Vec<SocketAddr>,
}

/// A direct connection to one exposing agent.
#[derive(Clone)]
enum ConnEntry {
    Live(Lane),
    /// Being dialed: resolves to the connection, or `None` when the dial failed.
    Dialing(watch::Receiver<Option<Option<Lane>>>),
    Failed(Instant),
}

/// The reach agent's direct path (one per forward link pool).
pub(crate) struct Dialer {
    identity: OnceCell<Arc<Identity>>,
    routes: Mutex<HashMap<(String, Via), RouteEntry>>,
    conns: Arc<Mutex<HashMap<ConnKey, ConnEntry>>>,
    /// Members the hub said were removed: their agents are never dialed again.
    gone: Arc<Mutex<HashSet<i64>>>,
    cancel: CancellationToken,
}

impl Dialer {
    pub(crate) fn new(cancel: CancellationToken) -> Arc<Dialer> {
        Arc::new(Dialer {
            identity: OnceCell::new(),
            routes: Mutex::default(),
            conns: Arc::default(),
            gone: Arc::default(),
            cancel,
        })
    }

    async fn route(&self, link: &ForwardLink, service: &str, via: &Via) -> Option<DirectRoute> {
        let key = (service.to_string(), via.clone());
        let now_ms = pconnect_proto::clock::now_ms();
        if let Some(entry) = lock(&self.routes).get(&key).cloned() {
            match entry {
                RouteEntry::Direct(route) if route.expires_at - TICKET_MARGIN_MS > now_ms => return Some(route),
                RouteEntry::RelayUntil(until) if Instant::now() < until => return None,
                _ => {}
            }
        }
        let request = DirectRouteRequest {
            service: service.to_string(),
            join_token: match via {
                Via::Share(token) => Some(token.to_string()),
                _ => None,
            },
            owner: match via {
                Via::Owner(member) => Some(member.to_string()),
                _ => None,
            },
        };
        let (entry, route) = match link.call::<rpc::DirectRouteCall>(&request).await {
            Ok(route) => (RouteEntry::Direct(route.clone()), Some(route)),
            Err(LinkError::Hub(e)) if e.code == ErrorCode::NotFound => {
                (RouteEntry::RelayUntil(Instant::now() + RETRY_AFTER), None)
            }
            Err(e) => {
                tracing::debug!(error = %e, service, "no direct route: relaying");
                (RouteEntry::RelayUntil(Instant::now() + RETRY_AFTER), None)
            }
        };
        lock(&self.routes).insert(key, entry);
        route
    }

    async fn identity(&self, link: &ForwardLink) -> Option<Arc<Identity>> {
        let cancel = self.cancel.clone();
        match self.identity.get_or_try_init(|| Identity::obtain(link.clone(), cancel)).await {
            Ok(identity) => Some(identity.clone()),
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "no direct-path certificate: relaying");
                None
            }
        }
    }

    /// A live connection to the route's agent: the one kept, or a new dial awaited for at most
    /// [`RACE_DELAY`].
    async fn conn(&self, link: &ForwardLink, route: &DirectRoute, identity: &Arc<Identity>) -> Option<(ConnKey, Lane)> {
        // Checked again here, where they are dialed: only addresses, never names to resolve.
        let addrs: Vec<SocketAddr> = route.candidates.iter().filter_map(Candidate::tcp_addr).collect();
        if addrs.is_empty() {
            return None;
        }
        let key = ConnKey { owner: route.owner_id, addrs };
        let entry = lock(&self.conns).get(&key).cloned();
        let mut dialing = match entry {
            Some(ConnEntry::Live(lane)) if !lane.is_closed() => return Some((key, lane)),
            Some(ConnEntry::Failed(at)) if at.elapsed() < RETRY_AFTER => return None,
            Some(ConnEntry::Dialing(rx)) => rx,
            _ => self.start_dial(link, &key, route, identity),
        };
        let ready = tokio::time::timeout(RACE_DELAY, dialing.wait_for(Option::is_some)).await;
        match ready {
            Ok(Ok(result)) => result.clone().flatten().map(|lane| (key, lane)),
            _ => None,
        }
    }

    /// Dials the route's agent in the background; a connection that comes up is watched
    /// ([`watch_owner`]) and cut when its member is removed.
    fn start_dial(
        &self,
        link: &ForwardLink,
        key: &ConnKey,
        route: &DirectRoute,
        identity: &Arc<Identity>,
    ) -> watch::Receiver<Option<Option<Lane>>> {
        let (tx, rx) = watch::channel(None);
        lock(&self.conns).insert(key.clone(), ConnEntry::Dialing(rx.clone()));
        let (conns, key, addrs) = (self.conns.clone(), key.clone(), key.addrs.clone());
        let (issued, name) = (identity.current(), agent_name(issued_workspace(identity), route.owner_id));
        let (cut, owner, link, gone) = (self.cancel.child_token(), route.owner_id, link.clone(), self.gone.clone());
        tokio::spawn(async move {
            let dialing = dial_any(addrs, issued.client.clone(), name, cut.clone());
            let dialed = tokio::time::timeout(DIAL_TIMEOUT, dialing).await;
            let entry = match dialed {
                Ok(Ok((addr, Dialed { lane, ended, expires_at }))) => {
                    tracing::info!(%addr, "direct connection up");
                    let watched = Watched {
                        owner,
                        expires_at,
                        unheard_grace: super::watch::unheard_grace(issued.lifetime),
                        cut,
                        ended,
                        conns: conns.clone(),
                        key: key.clone(),
                        gone,
                    };
                    tokio::spawn(watch_owner(link, watched));
                    ConnEntry::Live(lane)
                }
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "direct dial failed: relaying");
                    ConnEntry::Failed(Instant::now())
                }
                Err(_) => {
                    tracing::info!("direct dial timed out: relaying");
                    ConnEntry::Failed(Instant::now())
                }
            };
            let lane = match &entry {
                ConnEntry::Live(lane) => Some(lane.clone()),
                _ => None,
            };
            lock(&conns).insert(key, entry);
            let _ = tx.send(Some(lane));
        });
        rx
    }

    fn forget(&self, key: &ConnKey) {
        lock(&self.conns).insert(key.clone(), ConnEntry::Failed(Instant::now()));
    }
}

fn issued_workspace(identity: &Identity) -> i64 {
    identity.current().cert.workspace_id
}

impl Bypass for Dialer {
    fn open<'a>(
        &'a self,
        link: &'a ForwardLink,
        service: &'a str,
        via: &'a Via,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<DirectTunnel>> + Send + 'a>> {
        Box::pin(async move {
            let route = self.route(link, service, via).await?;
            if lock(&self.gone).contains(&route.owner_id) {
                return None;
            }
            let identity = self.identity(link).await?;
            let (key, lane) = self.conn(link, &route, &identity).await?;
            let conns = self.conns.clone();
            let broken_key = key.clone();
            let broken = Box::new(move || {
                tracing::info!("the direct connection did not answer: relaying");
                lock(&conns).insert(broken_key, ConnEntry::Failed(Instant::now()));
            });
            match open_stream(&lane, service, &route.ticket) {
                Ok(stream) => Some(DirectTunnel { stream, lane, broken }),
                Err(e) => {
                    tracing::info!(service, error = %e, "direct tunnel failed: relaying");
                    self.forget(&key);
                    None
                }
            }
        })
    }
}

/// Opens a tunnel stream on a direct connection, without waiting for the answer (the reach side
/// sends the client's first bytes at once and keeps them until the agent answers).
pub(crate) fn open_stream(lane: &Lane, service: &str, ticket: &str) -> Result<lane::LaneStream, lane::LaneError> {
    let path = wire::tunnel_path(service);
    lane.open(&[
        (":method", "CONNECT"),
        (":protocol", TUNNEL_PROTOCOL),
        (":scheme", "https"),
        (":authority", LINK_AUTHORITY),
        (":path", &path),
        (HEADER_TICKET, ticket),
    ])
}

/// Dials the exposing agent's candidates in order, each [`STAGGER`] after the one before (happy
/// eyeballs across its addresses); the first that completes TLS and HTTP/2 wins, the others are
/// dropped. The error of the last attempt when none does.
async fn dial_any(
    addrs: Vec<SocketAddr>,
    config: Arc<rustls::ClientConfig>,
    name: String,
    cancel: CancellationToken,
) -> anyhow::Result<(SocketAddr, Dialed)> {
    let mut attempts = tokio::task::JoinSet::new();
    for (i, addr) in addrs.into_iter().enumerate() {
        let (config, name, cancel) = (config.clone(), name.clone(), cancel.clone());
        attempts.spawn(async move {
            tokio::time::sleep(STAGGER * i as u32).await;
            let dialed = dial(addr, config, name, cancel).await;
            dialed.map(|sender| (addr, sender)).map_err(|e| anyhow::anyhow!("{addr}: {e:#}"))
        });
    }
    let mut last = anyhow::anyhow!("no candidate to dial");
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok(Ok(won)) => return Ok(won),
            Ok(Err(e)) => last = e,
            Err(e) => last = anyhow::anyhow!("a dial task failed: {e}"),
        }
    }
    Err(last)
}

/// A direct connection that came up.
pub(crate) struct Dialed {
    pub(crate) lane: Lane,
    /// Cancelled when the connection has ended.
    pub(crate) ended: CancellationToken,
    /// When the certificate the exposing agent presented expires (unix seconds).
    pub(crate) expires_at: Option<i64>,
}

/// A direct connection to the agent at `addr`, which must present `name`'s certificate; it lasts
/// until `cancel` or until it fails.
pub(crate) async fn dial(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: String,
    cancel: CancellationToken,
) -> anyhow::Result<Dialed> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(name)?;
    let tls = pconnect_link::sealed::connect(config, name, tcp).await?;
    let expires_at = tls.peer_certificates().and_then(|chain| chain.first()).and_then(|leaf| expiry::not_after(leaf));
    let (lane, driver) = lane::client(tls).await?;
    let ended = CancellationToken::new();
    let on_end = ended.clone().drop_guard();
    // The driver's task polls the driver alone (it runs for every frame); what ends the lane
    // otherwise is watched by a task of its own.
    tokio::spawn(async move {
        if let Err(e) = driver.await {
            tracing::debug!(error = %e, "direct connection ended");
        }
        drop(on_end);
    });
    tokio::spawn(end_when(lane.clone(), cancel, ended.clone()));
    Ok(Dialed { lane, ended, expires_at })
}

/// Closes `lane` when its peer stops answering pings or `cancel` fires, unless it `ended` first.
async fn end_when(lane: Lane, cancel: CancellationToken, ended: CancellationToken) {
    tokio::select! {
        reason = heartbeat::until_dead(lane.clone()) => tracing::info!(%reason, "direct connection closed"),
        _ = cancel.cancelled() => {}
        _ = ended.cancelled() => return,
    }
    lane.close();
}

/// A live direct connection to `owner`'s agent, as its watch sees it.
struct Watched {
    owner: i64,
    /// When the certificate the owner's agent presented expires (unix seconds).
    expires_at: Option<i64>,
    /// How long the hub may go unheard once that certificate expired.
    unheard_grace: Duration,
    /// Cuts the connection (and every tunnel on it).
    cut: CancellationToken,
    /// Cancelled once the connection has ended, for whatever reason.
    ended: CancellationToken,
    conns: Arc<Mutex<HashMap<ConnKey, ConnEntry>>>,
    key: ConnKey,
    gone: Arc<Mutex<HashSet<i64>>>,
}

/// Watches the connection's member for as long as the connection lives; when the hub says the
/// member was removed, the connection and its tunnels are cut and that member's agents are not
/// dialed again. A connection that [`outlived`](super::watch::outlived) the member's certificate
/// without a held watch is cut too (dialed again later with a fresh route).
async fn watch_owner(link: ForwardLink, watched: Watched) {
    let (heard, hearing) = watch::channel(false);
    let removed = async {
        let removed = super::watch::until_removed(&link, watched.owner, &watched.ended, &heard).await;
        if !removed {
            // The connection ended, or the hub watches no members: then only the certificate
            // bounds the connection.
            watched.ended.cancelled().await;
        }
        removed
    };
    tokio::select! {
        removed = removed => {
            if !removed {
                return;
            }
            tracing::warn!(
                owner = watched.owner,
                "the hub removed this teammate: their direct connection and its tunnels are closed"
            );
            lock(&watched.gone).insert(watched.owner);
        }
        _ = super::watch::outlived(watched.expires_at, hearing, watched.unheard_grace) => {
            tracing::warn!(owner = watched.owner, "{}", super::watch::OUTLIVED);
        }
    }
    lock(&watched.conns).insert(watched.key.clone(), ConnEntry::Failed(Instant::now()));
    watched.cut.cancel();
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
