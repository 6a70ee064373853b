//! [`Exposed`]: a service this agent serves, as the reverse link registers it and the public-link
//! forwarder dials it.

use crate::target::Target;

/// A service this agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    pub name: String,
    pub target: Target,
    /// Declared protocol, shared with teammates (for their env files).
    pub kind: Option<pconnect_proto::project::ServiceKind>,
    /// Declared variables, shared with teammates.
    pub env: std::collections::BTreeMap<String, String>,
    /// The project (`connect up`) serving it, if any.
    pub project: Option<String>,
}
