//! What a lane or one of its streams ended with, and how a request was answered.

/// Why a lane or one of its streams ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaneError {
    #[error("the direct connection closed")]
    Closed,
    #[error("the direct connection failed: {0}")]
    Io(String),
    #[error("the direct connection broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("the other side reset the stream (HTTP/2 error {0})")]
    Reset(u32),
    #[error("the other side is going away")]
    GoingAway,
    #[error("the direct connection carries as many streams as the other side allows")]
    Busy,
    #[error("the local connection failed ({0})")]
    Local(std::io::ErrorKind),
    #[error("tunnel closed: the agent is shutting down")]
    Stopped,
}

impl LaneError {
    /// How the driver ends for a lane that ended with this.
    pub(crate) fn outcome(&self) -> Result<(), LaneError> {
        match self {
            LaneError::Closed => Ok(()),
            other => Err(other.clone()),
        }
    }
}

/// The HTTP/2 status of an accepted tunnel.
pub const OK: u16 = 200;
/// The field of a refusal that says why.
pub const REASON: &str = "pconnect-reason";

/// The answer to a stream's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub status: u16,
    /// Why it was refused, if it was and the other side said.
    pub reason: Option<String>,
}
