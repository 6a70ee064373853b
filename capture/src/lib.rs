//! pconnect-capture: passive parsers for debug sessions. The exposing agent copies both directions
//! of each tunneled connection into a [`Tap`]; the tap detects the protocol from the client's first
//! bytes and emits [`Exchange`]s (a request paired with its response), already redacted. The
//! exchange types are the contract's (`pconnect_proto::exchange`), re-exported here.
//!
//! IO-free and allocation-bounded: every buffer and body prefix is capped, and a parser that loses
//! track degrades the connection to byte counting instead of failing. Feeding the same bytes split
//! at any points yields the same exchanges.

pub mod http;
pub mod postgres;
pub mod redact;
pub mod redis;
mod tap;

pub use pconnect_proto::exchange::*;
pub use tap::{Tap, detect};
