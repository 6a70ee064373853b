//! Debug sessions: the JSON words the exposing agent, the hub and the viewer share
//! (`docs/debug-sessions.md` is the prose of this contract). Exchanges themselves are
//! [`crate::exchange::Exchange`], already redacted by the agent.

use crate::exchange::Exchange;
use serde::{Deserialize, Serialize};

/// Exchanges the hub keeps per session (the oldest go first).
pub const RING_CAPACITY: usize = 2000;
/// Bytes (as JSON) the hub keeps per session, whatever the count: the oldest go first.
pub const RING_BYTES: usize = 64 * 1024 * 1024;
/// Exchanges sent in a viewer's `hello`.
pub const HELLO_RECENT: usize = 200;
/// Largest capture summary sent to a model.
pub const SUMMARY_CAP: usize = 32 * 1024;

/// One exchange as the hub stores and serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    /// Assigned by the hub on arrival, increasing per session.
    pub id: u64,
    /// The agent's connection number (exchanges of one TCP connection share it).
    pub conn: u64,
    /// The exchange this one replays.
    pub replay_of: Option<u64>,
    pub exchange: Exchange,
}

/// A debug session as a viewer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub service: String,
    pub owner: String,
    pub kind: Option<crate::project::ServiceKind>,
    pub ai: bool,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub exchanges: u64,
    pub dropped: u64,
    pub viewers: Vec<Viewer>,
}

/// Someone watching a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    pub id: u64,
    pub name: String,
}

/// How much an insight matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warn,
    Error,
}

/// A finding of the offline rules, citing the exchanges it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insight {
    pub severity: Severity,
    pub title: String,
    pub detail: String,
    pub exchanges: Vec<u64>,
}

/// Replay exchange `id`, with optional edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub id: u64,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub headers: Option<Vec<[String; 2]>>,
    #[serde(default)]
    pub body: Option<String>,
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayResult {
    pub ok: bool,
    /// Id of the new exchange.
    pub captured: Option<u64>,
    pub error: Option<String>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerSource {
    Insights,
    Model,
}

/// The assistant's answer to a viewer's question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    pub cites: Vec<u64>,
    pub source: AnswerSource,
}

/// `POST /v1/debug/start` (forward link): start a session for one of the caller's services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartDebug {
    pub service: String,
    #[serde(default)]
    pub ai: bool,
    /// Declared protocol of the service, shown to viewers.
    #[serde(default)]
    pub kind: Option<crate::project::ServiceKind>,
    /// The project (`connect up`) that started it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `POST /v1/debug/start` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugStarted {
    pub id: String,
    /// The capability in the viewer URL; shown once, to the owner.
    pub token: String,
    pub url: String,
}

/// One of the caller's sessions in `GET /v1/debug`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugSummary {
    pub id: String,
    pub service: String,
    pub url: String,
    pub exchanges: u64,
    pub dropped: u64,
    pub viewers: u64,
    pub ai: bool,
    /// The project that started it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `POST /v1/debug/stop` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopDebug {
    pub id: String,
}

/// One line of the agent's events stream (`POST /v1/debug/<id>/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AgentEvent {
    Exchange {
        conn: u64,
        #[serde(default)]
        replay_of: Option<u64>,
        exchange: Box<Exchange>,
    },
    /// Totals so far: chunks and exchanges the capture dropped, bytes it saw.
    Stats { dropped: u64, bytes: u64 },
}

/// `POST /v1/debug/replay` (hub -> agent on the reverse link).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayCall {
    pub session: String,
    pub replay_of: u64,
    /// Raw HTTP/1.1 request bytes, standard base64.
    pub request: String,
}

/// `POST /v1/debug/replay` reply: the captured exchange comes back with it (the hub stores it
/// like any other, with `replay_of` set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayReply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub conn: u64,
    #[serde(default)]
    pub exchange: Option<Exchange>,
}

/// `POST /v1/debug/ask` (hub -> agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskCall {
    pub session: String,
    pub question: String,
    /// Redacted, capped at [`SUMMARY_CAP`], exchange ids as `#id`.
    pub summary: String,
}

/// `POST /v1/debug/ask` reply: `text` is None when no model is configured or it failed (`error`
/// says why); the hub then answers from its insights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskReply {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The exchange ids an answer cites: every `#<digits>` in it, in order, without repeats.
pub fn cited_ids(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'#' {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if end > start
                && let Ok(id) = text[start..end].parse::<u64>()
                && !out.contains(&id)
            {
                out.push(id);
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cites_are_hash_numbers() {
        assert_eq!(cited_ids("See #12 and #3, again #12; not #x or # 4."), vec![12, 3]);
        assert_eq!(cited_ids("#99999999999999999999999"), Vec::<u64>::new());
        assert_eq!(cited_ids(""), Vec::<u64>::new());
    }

    #[test]
    fn events_are_tagged_lines() {
        let line = r#"{"type":"stats","dropped":2,"bytes":10}"#;
        assert_eq!(serde_json::from_str::<AgentEvent>(line).unwrap(), AgentEvent::Stats { dropped: 2, bytes: 10 });
        let s = serde_json::to_string(&Severity::Warn).unwrap();
        assert_eq!(s, "\"warn\"");
    }
}
