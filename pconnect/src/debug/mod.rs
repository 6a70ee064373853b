//! Debug sessions in the exposing agent: [`start`] asks the hub for a session, registers a
//! [`ServiceCapture`] in the agent's [`Captures`] (the reverse link then splices that service's
//! tunnels with a tap) and runs the uplink that streams exchanges to the hub. The hub's calls back
//! over the reverse link (replay, ask) are answered by [`serve_call`].
//!
//! The wire contract is `docs/debug-sessions.md`; the types are `pconnect_proto::debug`.

mod ask;
pub(crate) mod conn;
mod proxy;
mod replay;
pub(crate) mod tap;
mod uplink;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Response, StatusCode};
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::debug::{AskCall, DebugStarted, ReplayCall, StartDebug};
use pconnect_proto::rpc;
use pconnect_proto::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use tap::{ServiceCapture, declared_protocol};
pub use uplink::Ended;

use crate::link::LinkError;
use crate::link::dial::Credentials;
use crate::link::forward::ForwardLink;
use crate::target::Target;

/// Largest body of a call from the hub.
const CALL_BODY_CAP: usize = 256 * 1024;

/// The services of this agent that are being captured, by name. Shared with the reverse link,
/// which looks a service up once per tunnel.
#[derive(Default)]
pub struct Captures {
    by_service: RwLock<HashMap<String, Arc<ServiceCapture>>>,
}

impl Captures {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The capture of a service, while a debug session runs for it.
    pub fn for_service(&self, name: &str) -> Option<Arc<ServiceCapture>> {
        self.by_service.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    fn by_session(&self, id: &str) -> Option<Arc<ServiceCapture>> {
        self.by_service.read().unwrap_or_else(|p| p.into_inner()).values().find(|c| c.session == id).cloned()
    }

    fn insert(&self, capture: Arc<ServiceCapture>) {
        self.by_service.write().unwrap_or_else(|p| p.into_inner()).insert(capture.service.clone(), capture);
    }

    fn remove(&self, service: &str, session: &str) {
        let mut map = self.by_service.write().unwrap_or_else(|p| p.into_inner());
        if map.get(service).is_some_and(|c| c.session == session) {
            map.remove(service);
        }
    }
}

/// What to capture.
#[derive(Debug, Clone)]
pub struct DebugOptions {
    /// The exposed service (already registered and routed).
    pub service: String,
    /// Its local target (replays go there).
    pub target: Target,
    /// Declared kind: skips protocol detection when known.
    pub kind: Option<pconnect_proto::project::ServiceKind>,
    /// Enable the assistant.
    pub ai: bool,
    /// The project (`connect up`) starting it, if any.
    pub project: Option<String>,
}

/// A running debug session.
pub struct DebugSession {
    /// The hub's id (`d1`), for `connect debug stop`.
    pub id: String,
    /// The viewer URL to share.
    pub url: String,
    pub ai: bool,
    uplink: JoinHandle<Ended>,
    /// Ends this session's uplink (a child of the `cancel` given to [`start`]).
    cancel: CancellationToken,
}

impl DebugSession {
    /// Resolves when the session ended: stopped at the hub, or `cancel` (given to [`start`]) fired.
    pub async fn ended(&mut self) -> Ended {
        (&mut self.uplink).await.unwrap_or(Ended::Local)
    }

    /// Ends the session now and waits (a couple of seconds at most) until the hub has been told:
    /// its viewers get `ended` at once instead of after the re-attach grace. Call it when the
    /// agent stops, before anything else that may take time.
    pub async fn finish(mut self) {
        self.cancel.cancel();
        if tokio::time::timeout(uplink::FINISH_WAIT + Duration::from_secs(1), self.ended()).await.is_err() {
            self.uplink.abort();
        }
    }
}

/// Starts a debug session for an exposed service: the hub issues the id, token and URL, and from
/// now on new tunnels to the service are captured. Runs until `cancel` or until the hub stops it.
///
/// `captures` must be the registry the service's reverse link was started with
/// ([`crate::link::reverse::serve_with_captures`]).
pub async fn start(
    control: &ForwardLink,
    creds: &Credentials,
    agent_session: &str,
    captures: &Arc<Captures>,
    options: DebugOptions,
    cancel: CancellationToken,
) -> Result<DebugSession, LinkError> {
    let body = StartDebug {
        service: options.service.clone(),
        ai: options.ai,
        kind: options.kind,
        project: options.project.clone(),
    };
    let started: DebugStarted = control.call::<rpc::StartDebugCall>(&body).await?;
    let (events, events_rx) = mpsc::channel(tap::EVENT_QUEUE);
    let capture = Arc::new(ServiceCapture::new(
        started.id.clone(),
        options.service.clone(),
        options.target,
        declared_protocol(options.kind),
        events,
    ));
    captures.insert(capture.clone());
    let (creds, agent_session, captures_owned) = (creds.clone(), agent_session.to_string(), captures.clone());
    let (service, id) = (options.service, started.id.clone());
    let own = cancel.child_token();
    let uplink_cancel = own.clone();
    let uplink = tokio::spawn(async move {
        let ended = uplink::run(creds, agent_session, capture, events_rx, uplink_cancel).await;
        captures_owned.remove(&service, &id);
        ended
    });
    Ok(DebugSession { id: started.id, url: started.url, ai: options.ai, uplink, cancel: own })
}

/// Whether a reverse-link request is one of the hub's debug calls.
pub(crate) fn is_call(path: &str) -> bool {
    path == wire::DEBUG_REPLAY_PATH || path == wire::DEBUG_ASK_PATH
}

/// Answers a debug call from the hub (replay, ask) for one of this agent's sessions.
pub(crate) async fn serve_call(
    captures: &Captures,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let path = request.uri().path().to_string();
    let body = match read_body(request.into_body()).await {
        Ok(body) => body,
        Err(e) => return reply(&mut respond, StatusCode::BAD_REQUEST, &ErrorBody::new(ErrorCode::BadRequest, e)),
    };
    let unknown = || ErrorBody::new(ErrorCode::NotFound, "this agent runs no such debug session");
    match path.as_str() {
        wire::DEBUG_REPLAY_PATH => {
            let Some(call) = parse::<ReplayCall>(&body, &mut respond) else { return };
            let Some(capture) = captures.by_session(&call.session) else {
                return reply(&mut respond, StatusCode::NOT_FOUND, &unknown());
            };
            let answer = replay::replay(&capture, &call).await;
            reply(&mut respond, StatusCode::OK, &answer);
        }
        _ => {
            let Some(call) = parse::<AskCall>(&body, &mut respond) else { return };
            if captures.by_session(&call.session).is_none() {
                return reply(&mut respond, StatusCode::NOT_FOUND, &unknown());
            }
            let answer = ask::ask(&call).await;
            reply(&mut respond, StatusCode::OK, &answer);
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8], respond: &mut SendResponse<Bytes>) -> Option<T> {
    match serde_json::from_slice(body) {
        Ok(value) => Some(value),
        Err(e) => {
            let error = ErrorBody::new(ErrorCode::BadRequest, format!("bad debug call: {e}"));
            reply(respond, StatusCode::BAD_REQUEST, &error);
            None
        }
    }
}

async fn read_body(body: RecvStream) -> Result<Vec<u8>, String> {
    pconnect_link::h2io::read_body(body, CALL_BODY_CAP).await.map_err(|e| format!("debug call: {e}"))
}

fn reply<T: Serialize>(respond: &mut SendResponse<Bytes>, status: StatusCode, body: &T) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(())
        .expect("static response");
    if let Ok(mut send) = respond.send_response(response, false) {
        let _ = send.send_data(Bytes::from(serde_json::to_vec(body).unwrap_or_default()), true);
    }
}
