//! pconnect-capture: passive parsers for debug sessions. The exposing agent copies both directions
//! of each tunneled connection into a [`Tap`]; the tap detects the protocol from the client's first
//! bytes and emits [`Exchange`]s (a request paired with its response), already redacted.
//!
//! IO-free and allocation-bounded: every buffer and body prefix is capped, and a parser that loses
//! track degrades the connection to byte counting instead of failing. Feeding the same bytes split
//! at any points yields the same exchanges.

pub mod http;
pub mod postgres;
pub mod redact;
pub mod redis;
mod summary;
mod tap;
mod types;

pub use tap::{Tap, detect};
pub use types::*;
