//! The pool of forward connections (agent = HTTP/2 client): control RPCs and outbound tunnels.
//!
//! Each slot keeps one connection alive: it reconnects with backoff and jitter when the link dies.
//! New streams go to the least loaded live connection. When none is live, callers wait briefly and
//! then get [`LinkError::Down`], so a local client sees a fast, clear failure, never a hang.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{Method, Request};
use pconnect_link::barrier::{self, ClientLink};
use pconnect_link::lane::{Lane, LaneStream};
use pconnect_link::load::{Load, LoadGuard};
use pconnect_link::{h2io, tuning};
use pconnect_proto::handshake::{Hello, Role, Welcome};

use crate::metrics::METRICS;
use pconnect_proto::direct::{DIRECT_WATCH_PATH, HEADER_MEMBER};
use pconnect_proto::rpc::{Call, Verb};
use pconnect_proto::wire::{self, HEADER_EXPECT_OWNER, HEADER_JOIN, LINK_AUTHORITY, PROTOCOL_VERSION, TUNNEL_PROTOCOL};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::LinkError;
use super::backoff::Backoff;
use super::dial::{Credentials, DialError, HubStream, dial};
use super::spread::{self, Spread};

/// How long a new stream waits for a live connection before failing.
const WAIT_FOR_LINK: Duration = Duration::from_secs(3);
/// Largest RPC reply read from the hub.
const REPLY_CAP: usize = 16 * 1024 * 1024;

/// A live connection of a slot.
#[derive(Clone)]
struct Live {
    sender: SendRequest<Bytes>,
    load: Load,
}

struct Inner {
    creds: Credentials,
    session: String,
    slots: Vec<Mutex<Option<Live>>>,
    changed: Notify,
    /// Set when the hub refuses us for good (token revoked, certificate changed).
    fatal: watch::Sender<Option<String>>,
    cancel: CancellationToken,
    /// The hub-cluster replica each slot is on.
    spread: Spread,
    /// The direct path, when this agent uses it.
    bypass: std::sync::OnceLock<Arc<dyn Bypass>>,
}

/// Forward connections to the hub. Cloning shares the pool.
#[derive(Clone)]
pub struct ForwardLink {
    inner: Arc<Inner>,
}

/// An outbound tunnel stream through the hub.
pub struct Tunnel {
    /// The hub's answer, still on its way: bytes may be sent before it arrives (early data). The
    /// hub answers only once the owning agent reached its target, so its refusal is final.
    pub answer: h2::client::ResponseFuture,
    pub send: SendStream<Bytes>,
    /// Counts this tunnel in its connection's load until dropped.
    pub load: LoadGuard,
}

/// A tunnel opened on the direct path, not yet answered: until the exposing agent says yes, it may
/// still go through the hub.
pub(crate) struct DirectTunnel {
    pub(crate) stream: LaneStream,
    /// The direct connection it is on (pinged to tell a slow agent from a dead route).
    pub(crate) lane: Lane,
    /// Marks the direct connection failed when it never answers.
    pub(crate) broken: Box<dyn FnOnce() + Send>,
}

/// The way a tunnel takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Through the hub.
    Relay,
    /// Straight to the exposing agent.
    Direct,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Relay => "relay",
            Path::Direct => "direct",
        }
    }
}

/// The receive side once the hub (or the agent behind it) accepted; its error (offline, not
/// found, ...) otherwise.
pub async fn answered(answer: h2::client::ResponseFuture) -> Result<RecvStream, LinkError> {
    Ok(accepted(answer).await?.into_body())
}

/// A way to a service besides the relay, tried first (the direct path, `crate::direct`): `None`
/// sends the tunnel through the hub.
pub(crate) trait Bypass: Send + Sync {
    fn open<'a>(
        &'a self,
        link: &'a ForwardLink,
        service: &'a str,
        via: &'a Via,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<DirectTunnel>> + Send + 'a>>;
}

impl ForwardLink {
    /// Dials the first connection (so a wrong token or a dead hub is reported at once), then keeps
    /// `connections` connections alive in the background until `cancel`.
    pub async fn connect(
        creds: Credentials,
        session: String,
        connections: usize,
        cancel: CancellationToken,
    ) -> Result<(Self, Welcome), DialError> {
        let hello = hello(&creds, &session);
        let (stream, welcome) = dial(&creds, &hello).await?;
        let inner = Arc::new(Inner {
            creds,
            session,
            slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
            spread: Spread::new(connections.max(1)),
            changed: Notify::new(),
            fatal: watch::channel(None).0,
            cancel,
            bypass: std::sync::OnceLock::new(),
        });
        let link = Self { inner };
        let mut first = Some((stream, welcome.clone()));
        for slot in 0..link.inner.slots.len() {
            tokio::spawn(maintain(link.inner.clone(), slot, first.take()));
        }
        link.wait_live(tuning::HANDSHAKE_TIMEOUT)
            .await
            .map_err(|e| DialError::Unreachable { url: link.inner.creds.hub.url(), cause: e.to_string() })?;
        Ok((link, welcome))
    }

    /// Resolves with a message when the hub has refused this agent for good.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.inner.fatal.subscribe()
    }

    /// Makes control call `C` (its method, path and body types are `C`'s, the hub's router uses the
    /// same description).
    pub async fn call<C: Call>(&self, request: &C::Request) -> Result<C::Reply, LinkError> {
        let (method, body) = match C::VERB {
            Verb::Get => (Method::GET, None),
            Verb::Post => {
                let body = serde_json::to_vec(request).map_err(|e| LinkError::Decode(e.to_string()))?;
                (Method::POST, Some(Bytes::from(body)))
            }
        };
        let reply = self.send(method, C::PATH, body).await?;
        // `204 No Content` is the `()` reply.
        let reply: &[u8] = if reply.is_empty() { b"null" } else { &reply };
        serde_json::from_slice(reply).map_err(|e| LinkError::Decode(e.to_string()))
    }

    async fn send(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<Bytes, LinkError> {
        let live = self.pick_or_wait().await?;
        let mut sender = live.sender.ready().await?;
        let request = Request::builder()
            .method(method)
            .uri(format!("https://{LINK_AUTHORITY}{path}"))
            .header("content-type", "application/json")
            .body(())
            .expect("static request");
        let (response, mut send) = sender.send_request(request, body.is_none())?;
        if let Some(body) = body {
            send.send_data(body, true)?;
        }
        let response = accepted(response).await?;
        read_body(response.into_body()).await
    }

    /// Opens a tunnel to `service` on the direct path, if this agent uses it and the hub gives a
    /// route to an agent that can be reached; `None` sends the tunnel through the hub.
    pub(crate) async fn open_direct(&self, service: &str, via: &Via) -> Option<DirectTunnel> {
        self.inner.bypass.get()?.open(self, service, via).await
    }

    /// Opens a tunnel to `service` through the hub and returns without waiting for the answer, so
    /// the caller can send the client's first bytes at once. The hub answers only once the owning
    /// agent reached its target, so an offline service or a dead target is an error in
    /// [`answered`], before any byte reaches the client.
    /// `via` says whose service it must be: whoever serves the name, the creator of a share (the
    /// tunnel is cut when the share ends), or one teammate.
    pub async fn open_relayed(&self, service: &str, via: &Via) -> Result<Tunnel, LinkError> {
        let live = self.pick_or_wait().await?;
        let load = live.load.hold();
        open_on(&live, service, via, load).await
    }

    /// Tunnels try `bypass` (the direct path) before the relay from now on.
    pub(crate) fn use_bypass(&self, bypass: Arc<dyn Bypass>) {
        let _ = self.inner.bypass.set(bypass);
    }

    /// Opens a joiner's attach stream: the hub counts us joined while the returned send half is
    /// open, and sends share events on the receive half.
    pub async fn attach(&self, join_token: &str) -> Result<(SendStream<Bytes>, RecvStream), LinkError> {
        self.open_events(wire::SHARE_ATTACH_PATH, HEADER_JOIN, join_token).await
    }

    /// Opens a watch of `member` (whose agent we hold a direct connection with): the hub sends a
    /// [`pconnect_proto::direct::MemberGone`] line on the receive half when the member is removed.
    /// The watch lasts while the returned send half is open.
    pub async fn watch_member(&self, member: i64) -> Result<(SendStream<Bytes>, RecvStream), LinkError> {
        self.open_events(DIRECT_WATCH_PATH, HEADER_MEMBER, &member.to_string()).await
    }

    /// A long-lived `POST` to `path` with `header: value`: the request body stays open as long as
    /// the caller holds the send half, the hub's events arrive on the receive half.
    async fn open_events(
        &self,
        path: &str,
        header: &str,
        value: &str,
    ) -> Result<(SendStream<Bytes>, RecvStream), LinkError> {
        let live = self.pick_or_wait().await?;
        let mut sender = live.sender.ready().await?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("https://{LINK_AUTHORITY}{path}"))
            .header(header, value)
            .body(())
            .map_err(|e| LinkError::Decode(e.to_string()))?;
        let (response, send) = sender.send_request(request, false)?;
        Ok((send, accepted(response).await?.into_body()))
    }

    fn pick(&self) -> Option<Live> {
        self.inner
            .slots
            .iter()
            .filter_map(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .min_by_key(|live| live.load.current())
    }

    async fn pick_or_wait(&self) -> Result<Live, LinkError> {
        self.wait_live(WAIT_FOR_LINK).await
    }

    async fn wait_live(&self, timeout: Duration) -> Result<Live, LinkError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.inner.changed.notified();
            if let Some(live) = self.pick() {
                return Ok(live);
            }
            if let Some(reason) = self.inner.fatal.borrow().clone() {
                return Err(LinkError::Down(reason));
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(LinkError::Down(format!("the hub at {} is unreachable", self.inner.creds.hub.url())));
            }
        }
    }
}

fn hello(creds: &Credentials, session: &str) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role: Role::Forward,
        token: creds.token.clone(),
        session: session.to_string(),
        services: Vec::new(),
        direct: Vec::new(),
    }
}

/// Whose service a tunnel is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Via {
    /// Whoever serves the name in the workspace (`connect reach <name>`).
    Name,
    /// The creator of the share this join token admits to.
    Share(Arc<str>),
    /// This member, and nobody who takes the name after them.
    Owner(Arc<str>),
}

async fn open_on(live: &Live, service: &str, via: &Via, load: LoadGuard) -> Result<Tunnel, LinkError> {
    let mut sender = live.sender.clone().ready().await?;
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://{LINK_AUTHORITY}{}", wire::tunnel_path(service)));
    match via {
        Via::Name => {}
        Via::Share(token) => request = request.header(HEADER_JOIN, &**token),
        Via::Owner(member) => request = request.header(HEADER_EXPECT_OWNER, &**member),
    }
    let mut request = request.body(()).map_err(|e| LinkError::Decode(e.to_string()))?;
    request.extensions_mut().insert(h2::ext::Protocol::from_static(TUNNEL_PROTOCOL));
    let (answer, send) = sender.send_request(request, false)?;
    Ok(Tunnel { answer, send, load })
}

/// Awaits a reply; a non-2xx one becomes the hub's error (its JSON body read in full).
async fn accepted(response: h2::client::ResponseFuture) -> Result<http::Response<RecvStream>, LinkError> {
    let response = response.await?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_body(response.into_body()).await?;
    Err(LinkError::Hub(h2io::error_body(&body, status, "the hub")))
}

async fn read_body(body: RecvStream) -> Result<Bytes, LinkError> {
    match h2io::read_body(body, REPLY_CAP).await {
        Ok(buf) => Ok(Bytes::from(buf)),
        Err(h2io::ReadBodyError::Stream(e)) => Err(e.into()),
        Err(e) => Err(LinkError::Down(format!("the hub's reply: {e}"))),
    }
}

/// Keeps slot `index` connected until cancelled or refused for good.
async fn maintain(inner: Arc<Inner>, index: usize, mut first: Option<(HubStream, Welcome)>) {
    let mut backoff = Backoff::new();
    let hello = hello(&inner.creds, &inner.session);
    let mut spread_tries = 0;
    loop {
        let dialed = match first.take() {
            Some(dialed) => Some(dialed),
            None => match dial(&inner.creds, &hello).await {
                Ok(dialed) => Some(dialed),
                Err(e) if !e.is_retryable() => {
                    tracing::warn!(error = %e, "hub refused this agent");
                    inner.fatal.send_replace(Some(e.to_string()));
                    inner.changed.notify_waiters();
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dial failed");
                    None
                }
            },
        };
        if let Some((stream, welcome)) = dialed {
            // On a hub cluster, another replica: losing one then never cuts every link.
            if inner.spread.taken(index, &welcome) && spread_tries < spread::TRIES {
                spread_tries += 1;
                drop(stream);
                tokio::select! {
                    _ = inner.cancel.cancelled() => return,
                    _ = tokio::time::sleep(spread::DELAY) => continue,
                }
            }
            spread_tries = 0;
            inner.spread.set(index, Some(&welcome));
            if let Err(e) = run_connection(&inner, index, stream, &mut backoff).await {
                tracing::debug!(slot = index, error = %e, "forward link ended");
            }
            inner.spread.set(index, None);
        }
        *inner.slots[index].lock().unwrap_or_else(|p| p.into_inner()) = None;
        inner.changed.notify_waiters();
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Runs one forward connection: HTTP/2 handshake, protocol barrier, then serve until it dies.
async fn run_connection(inner: &Inner, index: usize, stream: HubStream, backoff: &mut Backoff) -> anyhow::Result<()> {
    // This side opens tunnels, so the hub must offer extended CONNECT.
    let Some(ClientLink { sender, mut conn, mut heartbeat }) =
        barrier::open_client(stream, true, &inner.cancel).await?
    else {
        return Ok(());
    };
    *inner.slots[index].lock().unwrap_or_else(|p| p.into_inner()) = Some(Live { sender, load: Load::default() });
    backoff.connected();
    inner.changed.notify_waiters();
    let _up = METRICS.hub_connection();
    tokio::select! {
        result = &mut conn => result.map_err(Into::into),
        reason = &mut heartbeat => Err(anyhow::anyhow!("{reason}")),
        _ = inner.cancel.cancelled() => Ok(()),
    }
}
