//! Placeholder: the tap that detects the protocol and drives the parsers (written by the lead).

/// Detects the protocol of one connection and feeds its parser.
#[derive(Debug, Default)]
pub struct Tap;
