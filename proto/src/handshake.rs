//! The frames an agent and the hub exchange right after TLS and before HTTP/2 starts.
//!
//! Every connection is authenticated here, so no HTTP/2 stream is ever served to a stranger. A frame
//! is a 4-byte big-endian length followed by that many bytes of JSON. The agent sends a [`Hello`];
//! the hub answers with a [`Welcome`] (then HTTP/2 starts) or a [`Refusal`] (then closes).

use serde::{Deserialize, Serialize};

use crate::control::ServiceSpec;

/// Largest frame either side accepts. A hello with many services stays far below it.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// The role of a connection, also told by ALPN; the hub checks that both agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Agent is the HTTP/2 client: control RPCs and outbound tunnels.
    Forward,
    /// Agent is the HTTP/2 server: the hub opens a stream per inbound connection to its services.
    Reverse,
}

/// First frame from the agent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub version: u32,
    pub role: Role,
    /// Bearer token of the member this agent acts for.
    pub token: String,
    /// Random id of the agent process; all its connections share it, and it survives reconnects.
    pub session: String,
    /// Services this reverse connection serves (registered or re-registered on every connect).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    /// Where this (exposing) agent accepts direct connections from teammates' agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub direct: Vec<crate::direct::Candidate>,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("role", &self.role)
            .field("token", &"<redacted>")
            .field("session", &self.session)
            .field("services", &self.services)
            .field("direct", &self.direct)
            .finish()
    }
}

/// The hub's answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    Welcome(Welcome),
    Refusal(Refusal),
}

/// The hello was accepted; HTTP/2 starts on the next byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub member: String,
    pub workspace: String,
    /// On a hub cluster: which replica answered, and how many are alive. An agent spreads its
    /// reverse links over distinct replicas, so losing one never takes its services offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaInfo>,
}

/// The replica that answered a hello, in a hub cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// The replica's id (random per replica process).
    pub id: String,
    /// Replicas alive in the cluster, this one included.
    pub alive: u32,
}

/// The hello was refused; the hub closes the connection after this frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: RefusalCode,
    /// What happened, in words for the user.
    pub message: String,
}

/// Why a hello was refused; the agent retries only what can get better by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The token is unknown or revoked: retrying will not help.
    Unauthorized,
    /// The agent speaks another protocol version.
    Version,
    /// A service name is taken by another member, or invalid.
    Conflict,
    /// Malformed hello.
    BadRequest,
    /// The hub is shutting down; reconnect soon.
    Draining,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// Whether an agent should keep retrying after this refusal.
    pub fn is_retryable(&self) -> bool {
        matches!(self.code, RefusalCode::Draining)
    }
}

/// Errors reading a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("handshake frame of {0} bytes is larger than the {MAX_FRAME_LEN} allowed")]
    TooLarge(usize),
    #[error("handshake frame is not valid: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes a frame: length prefix then JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("handshake types always serialise");
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out
}

/// Reads the length prefix of a frame and checks it against [`MAX_FRAME_LEN`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body (the bytes after the length prefix).
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_hides_token() {
        let hello = Hello {
            version: 1,
            role: Role::Reverse,
            token: "pc_secret".into(),
            session: "s1".into(),
            services: vec![ServiceSpec {
                name: "db".into(),
                port: 5432,
                kind: None,
                env: Default::default(),
                project: None,
            }],
            direct: Vec::new(),
        };
        let bytes = encode(&hello);
        let len = frame_len(bytes[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, bytes.len() - 4);
        let back: Hello = decode(&bytes[4..]).unwrap();
        assert_eq!(back, hello);
        assert!(!format!("{hello:?}").contains("pc_secret"));
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        assert!(matches!(frame_len(u32::MAX.to_be_bytes()), Err(FrameError::TooLarge(_))));
        assert!(decode::<Hello>(b"{\"version\":1}").is_err());
        assert!(decode::<Reply>(b"\xff\x00").is_err());
    }

    #[test]
    fn refusal_round_trips() {
        let reply = Reply::Refusal(Refusal::new(RefusalCode::Unauthorized, "token rejected"));
        let bytes = encode(&reply);
        assert_eq!(decode::<Reply>(&bytes[4..]).unwrap(), reply);
    }
}
