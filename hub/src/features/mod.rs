//! What the hub offers members, each behind the RPC layer ([`crate::rpc`]): environment shares,
//! public links, debug sessions, the direct path between agents, and membership (the admin verbs and socket).

pub(crate) mod debug;
pub(crate) mod direct;
pub(crate) mod links;
pub mod members;
pub(crate) mod shares;
