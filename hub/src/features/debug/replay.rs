//! Replay: the hub rebuilds a raw HTTP/1.1 request from a captured exchange plus the viewer's edits
//! and asks the exposing agent (over its reverse link) to send it to its own target. The answer is
//! captured by the agent's parsers and stored here like any other exchange, with `replay_of` set.
//!
//! Redacted values are sent as they are (`[redacted]`): the viewer never holds the secret.

use base64::Engine;
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::debug::{ReplayCall, ReplayReply, ReplayRequest, ReplayResult};
use pconnect_proto::exchange::{Detail, HttpExchange};
use pconnect_proto::wire;

use super::DebugSessions;
use super::limits::Busy;
use super::session::Session;
use crate::conn::reverse;
use crate::conn::routes::ReverseConn;

/// Headers never copied into a replay: framing and hop-by-hop ones (the hub sets its own).
const DROPPED_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];

/// Replays exchange `request.id` of `session` with the edits in `request`, within the session's
/// replay limits (`Err` when over them).
pub(crate) async fn replay(
    debug: &DebugSessions,
    session: &Session,
    request: &ReplayRequest,
) -> Result<ReplayResult, Busy> {
    let _running = session.calls.start_replay()?;
    Ok(match run(debug, session, request).await {
        Ok(id) => ReplayResult { ok: true, captured: Some(id), error: None },
        Err(error) => ReplayResult { ok: false, captured: None, error: Some(error) },
    })
}

async fn run(debug: &DebugSessions, session: &Session, request: &ReplayRequest) -> Result<u64, String> {
    let original =
        session.get(request.id).ok_or_else(|| format!("exchange #{} is no longer in the capture", request.id))?;
    let Detail::Http(http) = &original.exchange.detail else {
        return Err(format!("exchange #{} is not HTTP: only HTTP requests can be replayed", request.id));
    };
    let raw = build(http, request)?;
    let conn = agent_conn(debug, session).await.map_err(|e| e.message)?;
    let call = ReplayCall {
        session: session.meta.id.clone(),
        replay_of: request.id,
        request: base64::engine::general_purpose::STANDARD.encode(&raw),
    };
    let body = serde_json::to_vec(&call).map_err(|e| e.to_string())?;
    let reply = reverse::call(&conn, &session.meta.service, wire::DEBUG_REPLAY_PATH, body.into())
        .await
        .map_err(|e| e.message)?;
    let reply: ReplayReply =
        serde_json::from_slice(&reply).map_err(|e| format!("the agent sent an unreadable replay answer: {e}"))?;
    match (reply.ok, reply.exchange) {
        (true, Some(exchange)) => {
            let size = serde_json::to_vec(&exchange).map_or(0, |v| v.len());
            Ok(session.push(reply.conn, Some(request.id), exchange, size))
        }
        _ => Err(reply.error.unwrap_or_else(|| "the agent could not replay the request".into())),
    }
}

/// The reverse connection of the agent that runs `session` (through the replica holding it, in a
/// cluster).
pub(crate) async fn agent_conn(debug: &DebugSessions, session: &Session) -> Result<ReverseConn, ErrorBody> {
    debug
        .routes
        .find(session.meta.workspace, &session.meta.service, Some(session.meta.owner))
        .await
        .ok_or_else(|| ErrorBody::new(ErrorCode::Offline, "the agent that captured this session is offline"))
}

/// The raw request: method, path, headers (captured, or the edited list), and the body.
pub(crate) fn build(http: &HttpExchange, edits: &ReplayRequest) -> Result<Vec<u8>, String> {
    let method = edits.method.clone().unwrap_or_else(|| http.method.clone());
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
        return Err(format!("'{method}' is not an HTTP method"));
    }
    let path = edits.path.clone().unwrap_or_else(|| http.path.clone());
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("the path must start with / and contain no spaces or control characters".into());
    }
    let body: Vec<u8> = match &edits.body {
        Some(body) => body.clone().into_bytes(),
        None if http.request_body.len == 0 => Vec::new(),
        None if http.request_body.truncated || http.request_body.binary => {
            return Err("the captured body is incomplete or binary: edit the body to replay this request".into());
        }
        None => http.request_body.text.clone().unwrap_or_default().into_bytes(),
    };
    let headers: Vec<(String, String)> = match &edits.headers {
        Some(list) => list.iter().map(|[n, v]| (n.clone(), v.clone())).collect(),
        None => http.request_headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect(),
    };
    // The captured body text is decoded: its Content-Encoding no longer applies.
    let decoded = edits.body.is_none() && http.request_body.encoding.is_some();
    let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    for (name, value) in &headers {
        let lower = name.to_ascii_lowercase();
        if DROPPED_HEADERS.contains(&lower.as_str()) || (decoded && lower == "content-encoding") {
            continue;
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            return Err(format!("'{name}' is not a header name"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("the value of header '{name}' contains a line break"));
        }
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pconnect_proto::exchange::{Body, Header};

    fn captured() -> HttpExchange {
        HttpExchange {
            method: "POST".into(),
            path: "/api/items?x=1".into(),
            version: "HTTP/1.1".into(),
            request_headers: vec![
                Header { name: "host".into(), value: "app.test".into() },
                Header { name: "authorization".into(), value: "[redacted]".into() },
                Header { name: "content-length".into(), value: "7".into() },
                Header { name: "transfer-encoding".into(), value: "chunked".into() },
            ],
            request_body: Body { len: 7, text: Some("{\"a\":1}".into()), ..Body::default() },
            status: Some(201),
            reason: None,
            response_headers: vec![],
            response_body: Body::default(),
            graphql: vec![],
            upgraded: None,
        }
    }

    #[test]
    fn requests_are_rebuilt_with_edits_and_own_framing() {
        let plain = ReplayRequest { id: 1, method: None, path: None, headers: None, body: None };
        let raw = String::from_utf8(build(&captured(), &plain).unwrap()).unwrap();
        assert_eq!(
            raw,
            "POST /api/items?x=1 HTTP/1.1\r\nhost: app.test\r\nauthorization: [redacted]\r\n\
             Content-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}"
        );
        let edited = ReplayRequest { body: Some("{}".into()), path: Some("/b".into()), ..plain.clone() };
        let raw = String::from_utf8(build(&captured(), &edited).unwrap()).unwrap();
        assert!(
            raw.starts_with("POST /b HTTP/1.1\r\n")
                && raw.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        );
        let bad = ReplayRequest { headers: Some(vec![["x".into(), "a\r\nb".into()]]), ..plain.clone() };
        assert!(build(&captured(), &bad).is_err());
        let bad = ReplayRequest { path: Some("/a b".into()), ..plain };
        assert!(build(&captured(), &bad).is_err());
    }
}
