//! The exposing agent's direct port: teammates' agents connect here with mutual TLS chained to the
//! workspace CA, and every stream they open carries a ticket the hub signed. A stream is served
//! (by the same code that serves the hub's reverse streams) only when the ticket verifies, has not
//! expired, names this agent's member and workspace, names the connecting agent's member (its
//! certificate must be that member's), and neither that member nor the ticket's share was revoked.
//! Every refusal is logged with the peer's address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pconnect_link::admission::{self, Admission, Caps, LogLimiter, Slot};
use pconnect_link::{heartbeat, lane, ticket, tuning};
use pconnect_proto::clock::now_ms;
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::direct::{HEADER_TICKET, Revoked, Ticket, agent_name};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch::Sender;
use tokio_util::sync::CancellationToken;

use super::identity::Identity;
use super::offer::{Offer, Revocations};
use super::{expiry, watch};
use crate::link::forward::ForwardLink;

/// Connections still in their TLS or HTTP/2 handshake from one address at once; the port is on
/// every interface, so a stranger can knock, but only so often.
const HANDSHAKES_PER_IP: usize = 32;

/// Connections one certificate may hold at once. A teammate's agent keeps one to each exposing
/// agent (two while it replaces one), so this is slack for them; it bounds what one agent of a
/// teammate can make this agent hold to a few connections' windows.
const LANES_PER_CERTIFICATE: usize = 4;

/// Serves the direct port until `cancel`. Until a connection has proved a workspace certificate
/// and started HTTP/2 it holds a handshake slot (a quarter of the open-files limit in all, and
/// [`HANDSHAKES_PER_IP`] per address), so strangers cannot take the descriptors tunnels need.
/// `control` (a forward link to the hub) watches the teammate of each connection ([`watch`]): when
/// the hub says they were removed, their tunnels are cut here even if this agent's reverse links
/// missed the revocation.
pub(crate) async fn serve(
    listener: TcpListener,
    identity: Arc<Identity>,
    offer: Offer,
    control: Option<ForwardLink>,
    cancel: CancellationToken,
) {
    let port = Port { identity, offer, control, handshake: tuning::HANDSHAKE_TIMEOUT, lanes: lanes() };
    serve_port(listener, Arc::new(port), cancel).await;
}

/// What every connection of the direct port shares.
struct Port {
    identity: Arc<Identity>,
    offer: Offer,
    control: Option<ForwardLink>,
    /// How long TLS, then the HTTP/2 preface, may take.
    handshake: Duration,
    /// Established connections, per peer certificate (its fingerprint).
    lanes: Arc<Admission<String>>,
}

/// Established connections: [`LANES_PER_CERTIFICATE`] per certificate (in all, the descriptors
/// bound them).
fn lanes() -> Arc<Admission<String>> {
    Admission::new("direct connections", Caps { total: usize::MAX, per_client: LANES_PER_CERTIFICATE })
}

async fn serve_port(listener: TcpListener, port: Arc<Port>, cancel: CancellationToken) {
    let caps = Caps::from_open_files(admission::open_files_limit(), 0.25, HANDSHAKES_PER_IP);
    let handshakes = Admission::new("direct handshakes", caps);
    let log = LogLimiter::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = admission::accept(&listener, &log, "direct port") => accepted,
        };
        let Some(slot) = handshakes.admit(peer.ip()) else {
            continue;
        };
        let (port, cancel) = (port.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(reason) = connection(tcp, peer, &port, &cancel, slot).await {
                tracing::warn!(%peer, %reason, "direct connection refused");
            }
        });
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    port: &Port,
    cancel: &CancellationToken,
    handshake: Slot,
) -> Result<(), String> {
    let Port { identity, offer, control, handshake: deadline, lanes } = port;
    let _ = tcp.set_nodelay(true);
    let issued = identity.current();
    let tls = tokio::time::timeout(*deadline, pconnect_link::sealed::accept(issued.server.clone(), tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake: {e} (not a certificate of this workspace?)"))?;
    let leaf = tls
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.clone().into_owned())
        .ok_or("no client certificate")?;
    let _held = lanes.admit(pconnect_link::tls::fingerprint(&leaf)).ok_or_else(|| {
        format!("this certificate already holds {LANES_PER_CERTIFICATE} direct connections to this agent")
    })?;
    // A peer that stops after TLS holds a task and its buffers: it gets the handshake's deadline.
    let (lane, driver) = tokio::time::timeout(*deadline, lane::server(tls))
        .await
        .map_err(|_| "HTTP/2 preface timed out".to_string())?
        .map_err(|e| format!("HTTP/2: {e}"))?;
    drop(handshake);
    tracing::debug!(%peer, "direct connection up");
    let (hearing, heard) = tokio::sync::watch::channel(false);
    let outlived = watch::outlived(expiry::not_after(&leaf), heard, watch::unheard_grace(issued.lifetime));
    let ctx = Arc::new(Peer {
        leaf,
        ca_key: issued.ca_key.clone(),
        me: (issued.cert.workspace_id, issued.cert.member_id),
        addr: peer,
        admitted: Mutex::default(),
        control: control.clone(),
        watching: AtomicBool::new(false),
        hearing,
        ended: CancellationToken::new(),
    });
    let _ended = ctx.ended.clone().drop_guard();
    // The driver runs for every frame in a task of its own; what else ends the lane is watched in
    // another, which closes it; this task accepts requests.
    let ended = ctx.ended.clone();
    tokio::spawn(async move {
        match driver.await {
            Ok(()) => {}
            Err(lane::LaneError::Protocol(why)) => {
                tracing::warn!(%peer, why, "direct connection closed: the teammate's agent broke the protocol");
            }
            Err(e) => tracing::debug!(%peer, error = %e, "direct connection ended"),
        }
        ended.cancel();
    });
    let close = cancel.child_token();
    tokio::spawn(end_when(heartbeat::until_dead(lane.clone()), outlived, close.clone(), ctx.ended.clone(), peer));
    loop {
        tokio::select! {
            next = lane.accept() => match next {
                Some(request) => {
                    let (offer, ctx) = (offer.clone(), ctx.clone());
                    tokio::spawn(async move { stream(&offer, &ctx, request).await });
                }
                None => return Ok(()),
            },
            _ = close.cancelled() => {
                lane.close();
                return Ok(());
            }
        }
    }
}

/// Fires `close` when the peer stops answering pings (`dead`) or the connection has outlived its
/// peer's certificate ([`watch::outlived`]), unless the connection `ended` first.
async fn end_when(
    dead: impl Future<Output = String>,
    outlived: impl Future<Output = ()>,
    close: CancellationToken,
    ended: CancellationToken,
    peer: SocketAddr,
) {
    tokio::select! {
        _ = dead => {}
        _ = outlived => tracing::warn!(%peer, "{}", watch::OUTLIVED),
        _ = ended.cancelled() => return,
    }
    close.cancel();
}

/// One direct connection's peer: its certificate, what it is checked against, and the tickets it
/// already proved (a tunnel per connection would otherwise verify the same signature again).
struct Peer {
    leaf: CertificateDer<'static>,
    ca_key: Vec<u8>,
    /// (workspace, member) of this agent.
    me: (i64, i64),
    addr: SocketAddr,
    admitted: Mutex<HashMap<String, Ticket>>,
    /// Where the peer's member is watched, once its first ticket named it.
    control: Option<ForwardLink>,
    watching: AtomicBool,
    /// Whether the watch of the peer's member is held: the hub could tell this agent of their
    /// removal now.
    hearing: Sender<bool>,
    /// Cancelled when the connection has ended (the watch stops then).
    ended: CancellationToken,
}

/// Tickets remembered per connection (a reach agent uses one per service for a minute).
const ADMITTED_CAP: usize = 64;

/// One stream: its ticket checked, then served like a stream from the hub, and cut when its member
/// or share is revoked.
async fn stream(offer: &Offer, ctx: &Peer, request: lane::Request) {
    let peer = ctx.addr;
    let ticket = match admit(&offer.revocations, ctx, &request) {
        Ok(ticket) => ticket,
        Err(reason) => {
            tracing::warn!(%peer, path = request.path(), %reason, "direct stream refused");
            super::offer::refuse(&request.into_stream(), &ErrorBody::new(ErrorCode::Forbidden, reason));
            return;
        }
    };
    // The connection's member is the ticket's (its certificate was checked against it).
    if let Some(control) = &ctx.control
        && !ctx.watching.swap(true, Ordering::Relaxed)
    {
        let (control, ended, revocations) = (control.clone(), ctx.ended.clone(), offer.revocations.clone());
        let hearing = ctx.hearing.clone();
        let member = ticket.member;
        tokio::spawn(async move {
            if watch::until_removed(&control, member, &ended, &hearing).await {
                tracing::warn!(%peer, member, "the hub removed this teammate: cutting their direct tunnels");
                revocations.apply(&Revoked { member: Some(member), share: None });
            }
        });
    }
    crate::metrics::METRICS.direct_served();
    let Some(handler) = offer.handler() else {
        super::offer::refuse(&request.into_stream(), &ErrorBody::new(ErrorCode::Offline, "not serving yet"));
        return;
    };
    let (cut, _forget) = offer.revocations.watch(&ticket);
    // A share's end is kept by this agent's clock too: the hub may be unreachable at that moment.
    let share_ends = async {
        match ticket.share_expires_at {
            Some(at) => tokio::time::sleep(Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = handler(request) => {}
        _ = cut.cancelled() => tracing::info!(%peer, service = %ticket.service, "direct tunnel cut: revoked"),
        _ = share_ends => tracing::info!(%peer, service = %ticket.service, "direct tunnel cut: the share expired"),
    }
}

/// The ticket of a stream, if everything about it holds.
fn admit(revocations: &Revocations, ctx: &Peer, request: &lane::Request) -> Result<Ticket, String> {
    let text = request.field(HEADER_TICKET).ok_or("no ticket")?;
    let known = ctx.admitted.lock().unwrap_or_else(|p| p.into_inner()).get(text).cloned();
    let ticket = match known {
        Some(ticket) => ticket,
        None => {
            let ticket = proven(ctx, text)?;
            let mut admitted = ctx.admitted.lock().unwrap_or_else(|p| p.into_inner());
            if admitted.len() >= ADMITTED_CAP {
                admitted.clear();
            }
            admitted.insert(text.to_string(), ticket.clone());
            ticket
        }
    };
    // What can change while a ticket is remembered: the clock, the path, the revocations.
    if ticket.expires_at <= now_ms() {
        return Err(ticket::TicketError::Expired.to_string());
    }
    let path_service = pconnect_proto::wire::service_from_tunnel_path(request.path());
    if path_service != Some(ticket.service.as_str()) {
        return Err(format!("the ticket is for '{}', not this service", ticket.service));
    }
    if ticket.share_expires_at.is_some_and(|at| at <= now_ms()) {
        return Err("the share expired".into());
    }
    revocations.check(&ticket)?;
    Ok(ticket)
}

/// A ticket signed by the workspace CA for this agent, issued to the member whose certificate
/// opened the connection.
fn proven(ctx: &Peer, text: &str) -> Result<Ticket, String> {
    let (workspace, member) = ctx.me;
    let ticket = ticket::verify(text, &ctx.ca_key, now_ms()).map_err(|e| e.to_string())?;
    if ticket.workspace != workspace || ticket.owner != member {
        return Err("the ticket is for another agent".into());
    }
    let cert = webpki::EndEntityCert::try_from(&ctx.leaf).map_err(|e| format!("unreadable certificate: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(agent_name(workspace, ticket.member))
        .map_err(|_| "bad member name".to_string())?;
    cert.verify_is_valid_for_subject_name(&name).map_err(|_| "the ticket belongs to another member".to_string())?;
    Ok(ticket)
}

#[cfg(test)]
mod tests {
    //! The direct port with real TLS on loopback: a workspace CA made here like the hub's, alice
    //! serving, and clients presenting bob's certificate, a stranger's, and tickets that must fail.

    use std::sync::Arc;

    use pconnect_proto::direct::{DirectCert, Ticket, agent_name};
    use rcgen::{CertificateParams, IsCa, Issuer, KeyPair, PKCS_ED25519};
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    use super::super::dialer::{dial, open_stream};
    use super::super::identity::{Identity, issued};
    use super::super::{Offer, StreamHandler};
    use super::*;

    const WS: i64 = 1;
    const ALICE: i64 = 10;
    const BOB: i64 = 20;

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
        signer: Ed25519KeyPair,
    }

    fn pkcs8() -> Vec<u8> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref().to_vec()
    }

    fn ca() -> Ca {
        let der = pkcs8();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&der.as_slice().into(), &PKCS_ED25519).unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { issuer: Issuer::new(params, key), pem, signer: Ed25519KeyPair::from_pkcs8(&der).unwrap() }
    }

    /// `member`'s certificate from `ca` for a fresh key; what the hub would answer, and the key.
    fn certify(ca: &Ca, member: i64) -> (DirectCert, Vec<u8>) {
        let der = pkcs8();
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&der.as_slice().into(), &PKCS_ED25519).unwrap();
        let params = CertificateParams::new(vec![agent_name(WS, member)]).unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        use base64::Engine as _;
        let ca_key = base64::engine::general_purpose::STANDARD.encode(ca.signer.public_key().as_ref());
        let direct = DirectCert {
            cert_pem: cert.pem(),
            ca_pem: ca.pem.clone(),
            ca_key,
            expires_at: i64::MAX,
            workspace_id: WS,
            member_id: member,
        };
        (direct, der)
    }

    fn ticket(ca: &Ca, member: i64, service: &str, expires_at: i64) -> String {
        let t = Ticket {
            workspace: WS,
            member,
            owner: ALICE,
            service: service.into(),
            share: None,
            share_expires_at: None,
            expires_at,
        };
        pconnect_link::ticket::sign(&t, &ca.signer)
    }

    /// Alice's direct port, answering every admitted stream with 200.
    async fn alice(ca: &Ca) -> (std::net::SocketAddr, Offer, CancellationToken) {
        alice_within(ca, tuning::HANDSHAKE_TIMEOUT).await
    }

    /// [`alice`], with `handshake` for the handshake deadline.
    async fn alice_within(ca: &Ca, handshake: Duration) -> (std::net::SocketAddr, Offer, CancellationToken) {
        let (cert, key) = certify(ca, ALICE);
        let identity = Arc::new(Identity::fixed(key.clone(), issued(cert, &key).unwrap()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let offer = Offer::default();
        let handler: StreamHandler = Arc::new(|request| {
            Box::pin(async move {
                let _ = request.into_stream().accept();
            })
        });
        offer.serve_with(handler);
        let cancel = CancellationToken::new();
        let port = Port { identity, offer: offer.clone(), control: None, handshake, lanes: lanes() };
        tokio::spawn(serve_port(listener, Arc::new(port), cancel.clone()));
        (addr, offer, cancel)
    }

    /// Opens a tunnel stream to `service` with `ticket` and waits for alice's answer: `Ok` when she
    /// accepted, else the reason she gave.
    async fn answer(bob: &lane::Lane, service: &str, ticket: &str) -> Result<(), String> {
        let stream = open_stream(bob, service, ticket).map_err(|e| e.to_string())?;
        let answered = stream.answer().await.map_err(|e| e.to_string())?;
        if answered.status == lane::OK {
            return Ok(());
        }
        Err(answered.reason.unwrap_or_default())
    }

    async fn client(ca: &Ca, member: i64) -> Arc<rustls::ClientConfig> {
        let (cert, key) = certify(ca, member);
        issued(cert, &key).unwrap().client
    }

    #[tokio::test]
    async fn only_a_workspace_certificate_with_its_own_valid_ticket_for_this_service_is_served() {
        let ca = ca();
        let (addr, offer, cancel) = alice(&ca).await;
        let far = pconnect_proto::clock::now_ms() + 60_000;
        let bob = dial(addr, client(&ca, BOB).await, agent_name(WS, ALICE), cancel.clone()).await.unwrap().lane;
        assert!(answer(&bob, "db", &ticket(&ca, BOB, "db", far)).await.is_ok(), "bob's own ticket");

        let expired = answer(&bob, "db", &ticket(&ca, BOB, "db", 1)).await.err().unwrap();
        assert!(expired.contains("expired"), "{expired}");
        let other_service = answer(&bob, "db", &ticket(&ca, BOB, "web", far)).await.err().unwrap();
        assert!(other_service.contains("'web'"), "{other_service}");
        let someone_elses = answer(&bob, "db", &ticket(&ca, 30, "db", far)).await.err().unwrap();
        assert!(someone_elses.contains("another member"), "{someone_elses}");
        let stranger_signed = answer(&bob, "db", &ticket(&ca_stranger(), BOB, "db", far)).await;
        assert!(stranger_signed.err().unwrap().contains("signature"));

        // A removed member: the hub told alice, and bob's certificate and ticket are refused.
        offer.revocations.apply(&pconnect_proto::direct::Revoked { member: Some(BOB), share: None });
        let removed = answer(&bob, "db", &ticket(&ca, BOB, "db", far)).await.err().unwrap();
        assert!(removed.contains("removed"), "{removed}");

        // A stranger: a certificate of another CA never gets past TLS.
        let stranger = ca_stranger();
        let refused = dial(addr, client(&stranger, BOB).await, agent_name(WS, ALICE), cancel.clone()).await;
        if let Ok(dialed) = refused {
            // TLS 1.3 reports the client's rejection only on the first read.
            assert!(answer(&dialed.lane, "db", &ticket(&ca, BOB, "db", far)).await.is_err(), "a stranger was served");
        }
        cancel.cancel();
    }

    fn ca_stranger() -> Ca {
        ca()
    }

    #[tokio::test]
    async fn one_address_holds_only_so_many_handshakes_and_a_teammate_still_gets_in() {
        use tokio::io::AsyncReadExt as _;
        let ca = ca();
        let (addr, _offer, cancel) = alice(&ca).await;
        let knock = || async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            socket.connect(addr).await.unwrap()
        };
        // A stranger on 127.0.0.2 opens connections and never starts TLS.
        let mut held = Vec::new();
        for _ in 0..HANDSHAKES_PER_IP {
            held.push(knock().await);
        }
        let mut over = knock().await;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT / 2, over.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "the connection over the cap was not closed: {read:?}");

        // bob, from another address, is served while the stranger's slots are taken.
        let far = pconnect_proto::clock::now_ms() + 60_000;
        let bob = dial(addr, client(&ca, BOB).await, agent_name(WS, ALICE), cancel.clone()).await.unwrap().lane;
        assert_eq!(answer(&bob, "db", &ticket(&ca, BOB, "db", far)).await, Ok(()));
        cancel.cancel();
    }

    #[tokio::test]
    async fn one_certificate_holds_only_so_many_connections_and_a_closed_one_frees_its_place() {
        let ca = ca();
        let (addr, _offer, cancel) = alice(&ca).await;
        let far = pconnect_proto::clock::now_ms() + 60_000;
        let bob = client(&ca, BOB).await;
        let name = agent_name(WS, ALICE);
        let mut held = Vec::new();
        for _ in 0..LANES_PER_CERTIFICATE {
            let lane = dial(addr, bob.clone(), name.clone(), cancel.clone()).await.unwrap().lane;
            assert_eq!(answer(&lane, "db", &ticket(&ca, BOB, "db", far)).await, Ok(()));
            held.push(lane);
        }
        let served = |dialed: anyhow::Result<super::super::dialer::Dialed>| async {
            match dialed {
                Ok(dialed) => answer(&dialed.lane, "db", &ticket(&ca, BOB, "db", far)).await.is_ok(),
                Err(_) => false,
            }
        };
        let over = dial(addr, bob.clone(), name.clone(), cancel.clone()).await;
        assert!(!served(over).await, "a connection over the certificate's cap was served");
        // Another agent of the same member has a certificate of its own.
        let other_agent = dial(addr, client(&ca, BOB).await, name.clone(), cancel.clone()).await;
        assert!(served(other_agent).await, "another certificate was refused");

        held.pop().unwrap().close();
        let freed = tokio::time::timeout(Duration::from_secs(20), async {
            while !served(dial(addr, bob.clone(), name.clone(), cancel.clone()).await).await {}
        });
        assert!(freed.await.is_ok(), "a closed connection's place was not freed within 20 s");
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_teammate_that_stops_after_tls_is_dropped_at_the_handshake_deadline() {
        use tokio::io::AsyncReadExt as _;
        const DEADLINE: Duration = Duration::from_millis(300);
        let ca = ca();
        let (addr, _offer, cancel) = alice_within(&ca, DEADLINE).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(agent_name(WS, ALICE)).unwrap();
        let mut tls = pconnect_link::sealed::connect(client(&ca, BOB).await, name, tcp).await.unwrap();
        // No HTTP/2 preface follows: alice keeps the connection (her SETTINGS arrive) until the
        // deadline, then drops it.
        let start = tokio::time::Instant::now();
        let mut buf = [0u8; 256];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        assert!(ended.is_ok(), "the stalled connection was still open after 10 s");
        let after = start.elapsed();
        assert!(after >= DEADLINE / 2, "dropped early, after {after:?}");
        cancel.cancel();
    }
}
