//! Traffic and bookkeeping for the reliability stories: checksummed echo transfers (raw TCP through
//! `connect reach`, HTTP POST through a public link), a raw forward-link probe that watches for the
//! hub's GOAWAY, the store-operation worker with its ledger of acknowledged writes, and a
//! long-lived tunnel that notices the moment it is cut.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pconnect::link::dial::{Credentials, dial};
use pconnect::link::forward::ForwardLink;
use pconnect_e2e::{Agent, HttpClient};
use pconnect_proto::handshake::{Hello, Role};
use pconnect_proto::link::{CreateLink, LinkInfo, LinkListing, LinkPolicy, RevokeLink};
use pconnect_proto::rpc;
use pconnect_proto::share::{CreateShare, ShareCreated, ShareId, ShareListing};
use pconnect_proto::wire::PROTOCOL_VERSION;
use tokio_util::sync::CancellationToken;

/// A small seeded generator (xorshift64): reproducible payloads and kill points.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
    }
}

/// How a transfer ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Every byte came back, and the SHA-256 of what came back is the one of what was sent.
    Complete,
    /// The right length (or more) but other bytes.
    Corrupted,
    /// A clean end of stream before the full length: a silent truncation.
    CleanShort,
    /// The stream failed visibly (RST, error status, broken framing).
    Error(String),
    /// Nothing happened for a minute.
    Hung,
}

/// One checksummed transfer's outcome.
pub(crate) struct Transfer {
    pub(crate) end: End,
    /// Bytes received back.
    pub(crate) received: u64,
    /// When it ended.
    pub(crate) ended: Instant,
}

/// Writes `len` seeded bytes to the echo behind `addr` (optionally `pace`d: a chunk, then a pause),
/// half-closes, and reads everything back, hashing both ways. `progress` counts bytes received.
pub(crate) fn echo_transfer(
    addr: SocketAddr,
    len: u64,
    seed: u64,
    pace: Option<(usize, Duration)>,
    progress: Option<&Arc<AtomicU64>>,
) -> Transfer {
    let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(stream) => stream,
        Err(e) => return Transfer { end: End::Error(format!("connect: {e}")), received: 0, ended: Instant::now() },
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else {
        return Transfer { end: End::Error("clone".into()), received: 0, ended: Instant::now() };
    };
    let chunk = pace.map_or(64 * 1024, |(size, _)| size);
    // Returns the digest of what was sent, or when the write that failed began: Linux reports a
    // connection reset to one system call only, so when the writer's call took it, the reader's next
    // read says end-of-stream; such an end is a reset, not a clean close.
    let sender = std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; chunk];
        let mut left = len;
        while left > 0 {
            let n = chunk.min(usize::try_from(left).unwrap_or(chunk));
            rng.fill(&mut buf[..n]);
            let began = Instant::now();
            if writer.write_all(&buf[..n]).is_err() {
                return Err(began);
            }
            digest.update(&buf[..n]);
            left -= n as u64;
            if let Some((_, pause)) = pace {
                std::thread::sleep(pause);
            }
        }
        let _ = writer.shutdown(Shutdown::Write);
        Ok(digest.finish())
    });
    let mut reader = stream;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let failure = loop {
        match reader.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                digest.update(&buf[..n]);
                received += n as u64;
                if let Some(p) = progress {
                    p.store(received, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break Some(End::Hung),
            Err(e) => break Some(End::Error(e.to_string())),
        }
    };
    let ended = Instant::now();
    if failure.is_some() {
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender.join().unwrap_or(Err(ended));
    let end = match (failure, &sent) {
        (Some(end), _) => end,
        (None, Err(began)) if *began <= ended => End::Error("reset (the writer saw it first)".into()),
        (None, _) if received < len => End::CleanShort,
        (None, Ok(s)) if received == len && s.as_ref() == digest.finish().as_ref() => End::Complete,
        (None, _) => End::Corrupted,
    };
    Transfer { end, received, ended }
}

/// POSTs `len` seeded bytes to `/echo` of the link `host` through the hub's ingress and checks
/// that the streamed response is the same bytes.
pub(crate) fn http_echo_transfer(ingress: &str, host: &str, len: u64, seed: u64) -> Transfer {
    let failed = |e: String| Transfer { end: End::Error(e), received: 0, ended: Instant::now() };
    let mut client = match HttpClient::connect(ingress) {
        Ok(client) => client,
        Err(e) => return failed(format!("{e:#}")),
    };
    let Ok(mut writer) = client.stream().try_clone() else { return failed("clone".into()) };
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    );
    let sender = std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        writer.write_all(head.as_bytes()).ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
            rng.fill(&mut buf[..n]);
            writer.write_all(&buf[..n]).ok()?;
            digest.update(&buf[..n]);
            left -= n as u64;
        }
        Some(digest.finish())
    });
    let response = client.read_response("POST");
    let ended = Instant::now();
    if response.is_err() {
        let _ = client.stream().shutdown(Shutdown::Both);
    }
    let sent = sender.join().ok().flatten();
    match response {
        Err(e) => failed(format!("{e:#}")),
        Ok(r) if r.status != 200 => failed(format!("status {}: {}", r.status, r.text())),
        Ok(r) => {
            let received = r.body.len() as u64;
            let same =
                sent.is_some_and(|s| s.as_ref() == ring::digest::digest(&ring::digest::SHA256, &r.body).as_ref());
            let end = match (received == len, same) {
                (true, true) => End::Complete,
                _ if received < len => End::CleanShort,
                _ => End::Corrupted,
            };
            Transfer { end, received, ended }
        }
    }
}

/// Waits until every counter reached `min` (the transfers are really in flight).
pub(crate) fn wait_all_progress(progress: &[Arc<AtomicU64>], min: u64, within: Duration) {
    let start = Instant::now();
    while progress.iter().any(|p| p.load(Ordering::SeqCst) < min) {
        assert!(start.elapsed() < within, "transfers did not get going within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The saved credentials of a logged-in agent.
pub(crate) fn creds(agent: &Agent) -> Credentials {
    let login = pconnect::state::Login::load(agent.home()).unwrap().expect("the agent is logged in");
    pconnect::session::credentials(&login).unwrap()
}

/// A bare forward link (hello, then HTTP/2 by hyper) that reports how the hub ended it.
pub(crate) struct ForwardProbe {
    done: tokio::sync::oneshot::Receiver<Result<(), String>>,
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
}

impl ForwardProbe {
    pub(crate) async fn open(agent: &Agent) -> anyhow::Result<ForwardProbe> {
        let creds = creds(agent);
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Forward,
            token: creds.token.clone(),
            session: "probe".into(),
            services: Vec::new(),
            direct: Vec::new(),
        };
        let (stream, _) = dial(&creds, &hello).await?;
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        let (tx, done) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(conn.await.map_err(|e| format!("{e:?}")));
        });
        Ok(ForwardProbe { done, sender })
    }

    /// `Ok` when the hub closed the connection cleanly (GOAWAY, no error) within `within`.
    pub(crate) async fn closed(self, within: Duration) -> Result<(), String> {
        let ForwardProbe { done, sender } = self;
        let outcome = match tokio::time::timeout(within, done).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the probe task vanished".into()),
            Err(_) => Err(format!("still open after {within:?}")),
        };
        drop(sender);
        outcome
    }
}

/// What happened to one share or link, as far as the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// Creation acknowledged, no revoke attempted: must be there.
    Live,
    /// Revoke acknowledged: must be gone.
    Revoked,
    /// A revoke was sent but not acknowledged: either is fine.
    Unsure,
}

/// Acknowledged writes, to check against the store after the crashes.
#[derive(Default)]
pub(crate) struct Ledger {
    shares: BTreeMap<i64, Known>,
    links: BTreeMap<String, Known>,
    /// Names of every share creation attempted (acknowledged or not).
    share_names: BTreeSet<String>,
    acked: [u64; 4],
}

impl Ledger {
    pub(crate) fn summary(&self) -> String {
        let [sc, sr, lc, lr] = self.acked;
        format!("{sc} share creates, {sr} share revokes, {lc} link creates, {lr} link revokes")
    }

    /// Every acknowledged write is visible; nothing listed is half-made or unknown.
    pub(crate) fn check(&self, (shares, links): &(ShareListing, LinkListing)) {
        let listed: BTreeMap<i64, _> = shares.shares.iter().map(|s| (s.id, s)).collect();
        for (id, known) in &self.shares {
            match known {
                Known::Live => assert!(listed.contains_key(id), "acknowledged share {id} was lost"),
                Known::Revoked => assert!(!listed.contains_key(id), "revoked share {id} came back"),
                Known::Unsure => {}
            }
        }
        for share in &shares.shares {
            let name = share.name.clone().unwrap_or_default();
            assert!(self.share_names.contains(&name), "share {} ({name}) was never requested", share.id);
            let routes: Vec<&str> = share.routes.iter().map(|r| r.service.as_str()).collect();
            assert_eq!(routes, ["echo"], "share {} is half-applied: routes {routes:?}", share.id);
        }
        let listed: BTreeMap<&str, &LinkInfo> = links.links.iter().map(|l| (l.subdomain.as_str(), l)).collect();
        for (sub, known) in &self.links {
            match known {
                Known::Live => assert!(listed.contains_key(sub.as_str()), "acknowledged link {sub} was lost"),
                Known::Revoked => assert!(!listed.contains_key(sub.as_str()), "revoked link {sub} came back"),
                Known::Unsure => {}
            }
        }
        for link in &links.links {
            assert_eq!(link.service, "echo", "link {} is half-applied: {link:?}", link.subdomain);
            assert!(link.expires_at.is_some(), "link {} lost its expiry: {link:?}", link.subdomain);
        }
    }
}

/// Creates and revokes shares and links of `echo` until `stop`; records what was acknowledged.
/// Returns how many operations were sent.
pub(crate) async fn store_ops(
    creds: Credentials,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    point: u64,
) -> u64 {
    let cancel = CancellationToken::new();
    let Ok((link, _)) = ForwardLink::connect(creds, format!("ops-{point}"), 1, cancel.clone()).await else {
        return 0;
    };
    let lock = || ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut sent = 0;
    while !stop.load(Ordering::SeqCst) {
        sent += 1;
        let ok = match sent % 4 {
            1 => {
                let name = format!("p{point}-{sent}");
                lock().share_names.insert(name.clone());
                let body = CreateShare { name: Some(name), expires_in_secs: 3600, services: None, project: None };
                let created: Result<ShareCreated, _> = link.call::<rpc::CreateShareCall>(&body).await;
                created.map(|c| {
                    let mut l = lock();
                    l.shares.insert(c.share.id, Known::Live);
                    l.acked[0] += 1;
                })
            }
            2 => {
                let body = CreateLink {
                    service: "echo".into(),
                    persistent: false,
                    expires_in_secs: Some(3600),
                    policy: LinkPolicy::default(),
                    project: None,
                };
                let created: Result<LinkInfo, _> = link.call::<rpc::CreateLinkCall>(&body).await;
                created.map(|info| {
                    let mut l = lock();
                    l.links.insert(info.subdomain, Known::Live);
                    l.acked[2] += 1;
                })
            }
            3 => {
                let id = lock().shares.iter().rev().find(|(_, k)| **k == Known::Live).map(|(id, _)| *id);
                let Some(id) = id else { continue };
                lock().shares.insert(id, Known::Unsure);
                link.call::<rpc::RevokeShareById>(&ShareId { id }).await.map(|()| {
                    let mut l = lock();
                    l.shares.insert(id, Known::Revoked);
                    l.acked[1] += 1;
                })
            }
            _ => {
                let sub = lock().links.iter().rev().find(|(_, k)| **k == Known::Live).map(|(s, _)| s.clone());
                let Some(sub) = sub else { continue };
                lock().links.insert(sub.clone(), Known::Unsure);
                link.call::<rpc::RevokeLinkCall>(&RevokeLink { subdomain: sub.clone() }).await.map(|()| {
                    let mut l = lock();
                    l.links.insert(sub, Known::Revoked);
                    l.acked[3] += 1;
                })
            }
        };
        if ok.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    cancel.cancel();
    sent
}

/// The caller's active shares and links.
pub(crate) async fn listings(creds: Credentials) -> anyhow::Result<(ShareListing, LinkListing)> {
    let cancel = CancellationToken::new();
    let (link, _) = ForwardLink::connect(creds, "check".into(), 1, cancel.clone()).await?;
    let shares = link.call::<rpc::ListShares>(&()).await?;
    let links = link.call::<rpc::ListLinks>(&()).await?;
    cancel.cancel();
    Ok((shares, links))
}

/// One long-lived echo connection, pinged on demand; remembers the last echo that came back.
pub(crate) struct LiveTunnel {
    stream: Option<TcpStream>,
    /// Echoes that came back.
    pub(crate) echoes: u64,
    /// Unix time (s) at which the last successful echo was sent.
    pub(crate) last_echo_sent: f64,
    /// The connection failed or ended.
    pub(crate) broken: bool,
}

impl LiveTunnel {
    pub(crate) fn open(addr: SocketAddr) -> LiveTunnel {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok();
        if let Some(s) = &stream {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.set_nodelay(true);
        }
        let broken = stream.is_none();
        LiveTunnel { stream, echoes: 0, last_echo_sent: 0.0, broken }
    }

    /// Sends 8 bytes and expects them back.
    pub(crate) fn ping(&mut self) {
        let Some(stream) = self.stream.as_mut().filter(|_| !self.broken) else { return };
        let sent = super::unix_now();
        let msg = self.echoes.to_le_bytes();
        let mut back = [0u8; 8];
        if stream.write_all(&msg).is_ok() && stream.read_exact(&mut back).is_ok() && back == msg {
            self.echoes += 1;
            self.last_echo_sent = sent;
        } else {
            self.broken = true;
        }
    }
}
