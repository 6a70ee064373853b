//! What an exposing agent offers on the direct path: where teammates' agents reach it, how its
//! streams are served, and the revocations the hub told it (which cut live direct tunnels).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use pconnect_link::lane::Request;
use pconnect_proto::direct::{Candidate, MAX_CANDIDATES, Revoked, TICKET_LIFETIME_MS, Ticket};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Refuses a direct tunnel with `error` (its status and message; the reach agent then takes the
/// relay).
pub(crate) fn refuse(stream: &pconnect_link::lane::LaneStream, error: &pconnect_proto::control::ErrorBody) {
    let _ = stream.refuse(error.status(), &error.message);
}

/// Serves one admitted tunnel request of the direct port (as the hub's reverse tunnels are served).
pub(crate) type StreamHandler = Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What an exposing agent offers on the direct path: where it listens, the revocations the hub told
/// it, and (once its reverse links serve) how its streams are served.
#[derive(Clone, Default)]
pub(crate) struct Offer {
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) revocations: Arc<Revocations>,
    handler: Arc<RwLock<Option<StreamHandler>>>,
}

impl Offer {
    /// An offer of `candidates`, serving nothing until the reverse links say how.
    pub(crate) fn new(candidates: Vec<Candidate>) -> Offer {
        Offer { candidates, ..Offer::default() }
    }

    /// Serves direct streams with `handler` from now on (reverse links restarted with another set
    /// of services replace the one before).
    pub(crate) fn serve_with(&self, handler: StreamHandler) {
        *self.handler.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// How streams are served right now; `None` until the reverse links serve.
    pub(crate) fn handler(&self) -> Option<StreamHandler> {
        self.handler.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The addresses teammates may reach a listener bound to `bound` at: the address itself; or, bound
/// to all interfaces, the address this host reaches the hub from first (teammates on the hub's side
/// most likely share that network), then every other address of an interface that is not down (a
/// VPN, a second network), of the listener's family, at most [`MAX_CANDIDATES`].
pub(crate) fn candidates_for(bound: SocketAddr, hub: &str) -> Vec<Candidate> {
    if !bound.ip().is_unspecified() {
        return vec![Candidate::Tcp { addr: bound.to_string() }];
    }
    let toward_hub = route_to(hub).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let others = interfaces
        .iter()
        .filter(|i| i.oper_status != if_addrs::IfOperStatus::Down && !i.is_loopback() && !i.is_link_local())
        .map(|i| i.ip());
    let mut ips = vec![toward_hub];
    for ip in others {
        // A listener on 0.0.0.0 takes IPv4 only; one on [::] both.
        if (bound.is_ipv6() || ip.is_ipv4()) && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips.truncate(MAX_CANDIDATES);
    ips.into_iter().map(|ip| Candidate::Tcp { addr: SocketAddr::new(ip, bound.port()).to_string() }).collect()
}

/// The local address of a UDP socket "connected" to `hub` (no packet is sent): the interface the
/// host reaches the hub through.
fn route_to(hub: &str) -> Option<IpAddr> {
    use std::net::ToSocketAddrs;
    let target = hub.to_socket_addrs().ok()?.next()?;
    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0".parse().ok()? } else { "[::]:0".parse().ok()? };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// How long a revocation is remembered: every ticket issued before it has expired by then.
const REMEMBER: Duration = Duration::from_millis(TICKET_LIFETIME_MS as u64 * 2);

/// Members and shares the hub revoked, and the live direct tunnels to cut when it does.
#[derive(Default)]
pub(crate) struct Revocations {
    state: Mutex<RevocationState>,
}

#[derive(Default)]
struct RevocationState {
    members: HashMap<i64, Instant>,
    shares: HashMap<i64, Instant>,
    /// (member, share) of each live direct tunnel, and its cut.
    live: Vec<(i64, Option<i64>, CancellationToken)>,
}

impl Revocations {
    fn lock(&self) -> std::sync::MutexGuard<'_, RevocationState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a ticket of a revoked member or share.
    pub(crate) fn check(&self, ticket: &Ticket) -> Result<(), String> {
        let state = self.lock();
        if state.members.contains_key(&ticket.member) {
            return Err("the member was removed from the workspace".into());
        }
        if ticket.share.is_some_and(|share| state.shares.contains_key(&share)) {
            return Err("the share was revoked".into());
        }
        Ok(())
    }

    /// A cut for a tunnel opened with `ticket`, cancelled when its member or share is revoked;
    /// the guard forgets it when the tunnel ends.
    pub(crate) fn watch(&self, ticket: &Ticket) -> (CancellationToken, DropGuard) {
        let cut = CancellationToken::new();
        let mut state = self.lock();
        state.live.retain(|(_, _, c)| !c.is_cancelled());
        state.live.push((ticket.member, ticket.share, cut.clone()));
        (cut.clone(), cut.drop_guard())
    }

    /// The hub revoked a member or a share: its tickets are refused and its tunnels cut now.
    pub(crate) fn apply(&self, revoked: &Revoked) {
        let now = Instant::now();
        let mut state = self.lock();
        state.members.retain(|_, at| now.duration_since(*at) < REMEMBER);
        state.shares.retain(|_, at| now.duration_since(*at) < REMEMBER);
        if let Some(member) = revoked.member {
            state.members.insert(member, now);
        }
        if let Some(share) = revoked.share {
            state.shares.insert(share, now);
        }
        let mut cut = 0;
        for (member, share, token) in &state.live {
            if revoked.member == Some(*member) || (revoked.share.is_some() && revoked.share == *share) {
                token.cancel();
                cut += 1;
            }
        }
        tracing::info!(?revoked, cut, "direct tunnels revoked by the hub");
    }
}

#[cfg(test)]
mod tests {
    use pconnect_proto::direct::Candidates;

    use super::*;

    fn ticket(member: i64, share: Option<i64>) -> Ticket {
        Ticket {
            workspace: 1,
            member,
            owner: 9,
            service: "db".into(),
            share,
            share_expires_at: None,
            expires_at: i64::MAX,
        }
    }

    #[test]
    fn a_revoked_share_or_member_is_refused_and_its_tunnels_cut_and_no_other() {
        let r = Revocations::default();
        let (via_share, _g1) = r.watch(&ticket(2, Some(7)));
        let (plain, _g2) = r.watch(&ticket(2, None));
        let (other, _g3) = r.watch(&ticket(3, None));
        r.apply(&Revoked { member: None, share: Some(7) });
        assert!(via_share.is_cancelled() && !plain.is_cancelled() && !other.is_cancelled());
        assert!(r.check(&ticket(2, Some(7))).is_err() && r.check(&ticket(2, None)).is_ok());
        r.apply(&Revoked { member: Some(2), share: None });
        assert!(plain.is_cancelled() && !other.is_cancelled());
        assert!(r.check(&ticket(2, None)).is_err() && r.check(&ticket(3, None)).is_ok());
    }

    #[test]
    fn an_unspecified_bind_offers_the_route_to_the_hub_first_then_the_other_interfaces() {
        let offered = candidates_for("0.0.0.0:4242".parse().unwrap(), "127.0.0.1:7000");
        assert_eq!(offered[0], Candidate::Tcp { addr: "127.0.0.1:4242".into() });
        let addrs: Vec<SocketAddr> = offered
            .iter()
            .map(|c| match c {
                Candidate::Tcp { addr } => addr.parse().unwrap(),
                Candidate::Unknown => panic!("only TCP candidates"),
            })
            .collect();
        assert!(addrs.iter().all(|a| a.port() == 4242 && a.is_ipv4()), "{addrs:?}");
        assert!(addrs[1..].iter().all(|a| !a.ip().is_loopback()), "{addrs:?}");
        let unique: std::collections::HashSet<_> = addrs.iter().collect();
        assert_eq!(unique.len(), addrs.len(), "{addrs:?}");
        assert!(Candidates { candidates: offered }.check().is_ok());
        let fixed = candidates_for("10.1.2.3:5".parse().unwrap(), "127.0.0.1:7000");
        assert_eq!(fixed, [Candidate::Tcp { addr: "10.1.2.3:5".into() }]);
    }
}
