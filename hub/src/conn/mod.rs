//! Connection handling: who gets a connection slot ([`admission`]), the agent port (TLS, hello,
//! [`agent_port`]), forward links (the agent's control calls and outbound tunnels, [`forward`]),
//! reverse links (streams to the agent's services, [`reverse`]), relaying a stream with early data
//! ([`relay`]) and the live routing table ([`routes`]).

pub use pconnect_link::admission;
pub(crate) mod agent_port;
pub(crate) mod forward;
pub(crate) mod relay;
pub(crate) mod reverse;
pub(crate) mod routes;
mod wire_errors;

/// An authenticated agent connection, as forward and reverse links run on it.
pub(crate) type AgentStream = pconnect_link::sealed::Sealed<tokio::net::TcpStream>;
