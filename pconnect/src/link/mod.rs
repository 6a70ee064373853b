//! The agent's side of the link to the hub: dialing ([`dial`]), the pool of forward connections
//! for RPCs and outbound tunnels ([`forward`]), and the reverse connections that serve exposed
//! services ([`reverse`]), public-link requests among them ([`http_forward`]); on a hub cluster
//! both kinds spread over distinct replicas ([`spread`]).

pub mod backoff;
pub mod dial;
pub mod exposed;
pub mod forward;
pub(crate) mod http_forward;
pub mod reverse;
mod spread;
mod target_dial;

use pconnect_proto::control::ErrorBody;

/// Forward connections a long-running command keeps; RPCs and outbound tunnels go to the least
/// loaded one.
pub const FORWARD_CONNECTIONS: usize = 2;
/// Reverse connections an exposing agent keeps; the hub spreads inbound tunnels over them.
pub const REVERSE_CONNECTIONS: usize = 2;

/// Why a call or tunnel over the link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No connection to the hub right now (it is reconnecting).
    #[error("not connected to the hub ({0}); reconnecting in the background")]
    Down(String),
    /// The hub answered with an error.
    #[error("{0}")]
    Hub(ErrorBody),
    /// The stream failed mid-way.
    #[error("the link to the hub failed: {0}")]
    Stream(#[from] h2::Error),
    #[error("the hub sent a reply this agent does not understand: {0}")]
    Decode(String),
}

/// Renders a hub error with its hint, for the user.
pub fn describe(error: &ErrorBody) -> String {
    match &error.hint {
        Some(hint) => format!("{}; {hint}", error.message),
        None => error.message.clone(),
    }
}
