//! Captured traffic as the contract describes it: directions, protocols, and the exchange records
//! the agent's parsers (`pconnect-capture`) emit and the hub, viewer and exports read; plus their
//! one-line descriptions ([`summary`]).

mod summary;

use serde::{Deserialize, Serialize};

/// Which way bytes flowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the remote client (a teammate, a public-link visitor) to the local service.
    ToService,
    /// From the local service back to the client.
    ToClient,
}

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Http,
    Postgres,
    Redis,
    /// TLS or anything not recognised: only byte counts and timings.
    Unknown,
}

/// Microseconds since the session started (the caller's clock).
pub type Micros = u64;

/// Longest body prefix kept per message.
pub const BODY_CAP: usize = 64 * 1024;
/// Longest header value kept.
pub const HEADER_VALUE_CAP: usize = 1024;
/// Longest SQL / command text kept.
pub const TEXT_CAP: usize = 16 * 1024;
/// Most rows sampled per query.
pub const ROW_SAMPLE: usize = 10;

/// One request and its response (or an event without a pair, like a pub/sub message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// Per-connection sequence number (0, 1, 2, ...).
    pub seq: u64,
    pub protocol: Protocol,
    /// When the first byte of the request was seen.
    pub started_at: Micros,
    /// When the last byte of the response was seen (None while open or when none came).
    pub finished_at: Option<Micros>,
    pub detail: Detail,
}

/// Protocol-specific content of an exchange. Tagged `type` (`http`, `postgres`, `redis`, `raw`):
/// not `kind`, which [`PgExchange`] has as a field of its own (a duplicate key would not parse back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Detail {
    Http(HttpExchange),
    Postgres(PgExchange),
    Redis(RedisExchange),
    /// Bytes of an unrecognised connection, reported when it closes.
    Raw {
        to_service: u64,
        to_client: u64,
        note: String,
    },
}

/// A header (name lowercased; value capped and redacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A captured body: a decoded, capped prefix plus facts about the whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// Bytes on the wire (after de-chunking, before decompression).
    pub len: u64,
    /// Decoded prefix (decompressed when gzip/deflate/br), as UTF-8 text when it is text, else empty.
    pub text: Option<String>,
    /// Pretty-printed JSON when the body is JSON (redacted).
    pub json: Option<serde_json::Value>,
    /// The prefix was cut at [`BODY_CAP`].
    pub truncated: bool,
    /// Content-Encoding that was decoded, if any.
    pub encoding: Option<String>,
    /// Body is binary (no text shown).
    pub binary: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpExchange {
    pub method: String,
    /// Path and query (token-like query parameters redacted).
    pub path: String,
    pub version: String,
    pub request_headers: Vec<Header>,
    pub request_body: Body,
    /// None when the connection closed before a response.
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub response_headers: Vec<Header>,
    pub response_body: Body,
    /// GraphQL operations found in the request (a batch has several).
    pub graphql: Vec<GraphqlOperation>,
    /// The response switched protocols (101, e.g. WebSocket); the rest of the connection is opaque.
    pub upgraded: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphqlOperation {
    /// `query`, `mutation` or `subscription`.
    pub operation_type: String,
    pub name: Option<String>,
    /// Variable names and redacted values.
    pub variables: Option<serde_json::Value>,
    /// Messages of `errors[]` in the response (GraphQL errors come with status 200).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgExchange {
    /// `startup`, `query` (simple), `extended`, `copy`, `cancel`, `auth`...
    pub kind: String,
    /// SQL text (capped).
    pub sql: Option<String>,
    /// Bind parameters as text (binary shown as hex; redacted by name heuristics when possible).
    pub params: Vec<Option<String>>,
    /// Command tag, e.g. `SELECT 3`, `INSERT 0 1`.
    pub command_tag: Option<String>,
    /// DataRows counted.
    pub rows: u64,
    /// Column names of the result.
    pub columns: Vec<String>,
    /// First rows, each column as text (capped).
    pub sample_rows: Vec<Vec<Option<String>>>,
    pub error: Option<PgError>,
    pub notices: Vec<String>,
    /// ReadyForQuery status after it: `I` idle, `T` in transaction, `E` failed transaction.
    pub tx_status: Option<char>,
    /// Startup parameters (user, database, application_name), for `startup`.
    pub startup: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgError {
    pub severity: String,
    pub sqlstate: String,
    pub message: String,
    pub position: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisExchange {
    /// Upper-case command name (`GET`, `CLIENT SETNAME` keeps only `CLIENT`).
    pub command: String,
    /// Arguments as text (binary -> hex; capped; secrets redacted).
    pub args: Vec<String>,
    /// Reply summary, e.g. `"OK"`, `(integer) 3`, `"value..."`, `(nil)`, `array(5)`.
    pub reply: Option<String>,
    pub error: Option<String>,
    /// Part of a MULTI/EXEC block, a pub/sub push, ...
    pub context: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detail_survives_a_json_round_trip() {
        let pg = PgExchange {
            kind: "query".into(),
            sql: Some("SELECT 1".into()),
            params: vec![None, Some("x".into())],
            command_tag: Some("SELECT 1".into()),
            rows: 1,
            columns: vec!["a".into()],
            sample_rows: vec![vec![Some("1".into())]],
            error: None,
            notices: vec![],
            tx_status: Some('I'),
            startup: vec![("user".into(), "u".into())],
        };
        let exchange = Exchange {
            seq: 1,
            protocol: Protocol::Postgres,
            started_at: 1,
            finished_at: None,
            detail: Detail::Postgres(pg),
        };
        let json = serde_json::to_value(&exchange).unwrap();
        assert_eq!(
            (json["detail"]["type"].as_str(), json["detail"]["kind"].as_str()),
            (Some("postgres"), Some("query"))
        );
        assert_eq!(serde_json::from_value::<Exchange>(json).unwrap(), exchange);
        let raw = Detail::Raw { to_service: 1, to_client: 2, note: "n".into() };
        assert_eq!(serde_json::from_str::<Detail>(&serde_json::to_string(&raw).unwrap()).unwrap(), raw);
    }
}
