//! HTTP/2 link plumbing shared by the hub and the agent (the agent links this crate as a library):
//! connection tuning, handshake frame IO, heartbeats, and the byte pumps of the tunnel data path.

pub mod frames;
pub mod h2io;
pub mod heartbeat;
pub mod pump;
pub mod tuning;
