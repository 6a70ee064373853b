//! JSON bodies of the control RPCs on a forward connection, and the error body every failure carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::envvar;
use crate::project::ServiceKind;

/// Most services one agent connection may register.
pub const MAX_SERVICES: usize = 256;

/// A service as an agent registers it: a name and the port it is known by.
///
/// The target address stays on the agent; the hub only ever names the service, so it can never make
/// an agent dial an address of the hub's choosing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// The port teammates get by default when they reach it (the target's own port).
    pub port: u16,
    /// Declared protocol, for teammates' env files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceKind>,
    /// Declared variables (`DATABASE_URL: postgresql://{{ host }}:{{ port }}/shop`); the only
    /// placeholders are those of [`envvar`], replaced as text where the file is written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The project (`connect up`) that serves it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

impl ServiceSpec {
    /// Everything a teammate's agent declares is untrusted: the name follows the service-name rules
    /// and every variable the [`envvar`] rules. The hub refuses a registration that fails this.
    pub fn check(&self) -> Result<(), String> {
        crate::names::validate(&self.name).map_err(|e| e.to_string())?;
        if let Some(project) = &self.project {
            check_project_tag(project)?;
        }
        envvar::check_all(&self.env).map_err(|e| format!("service '{}': {e}", self.name))
    }
}

/// Checks the tag a project marks its hub resources with: 1-64 of letters, digits, `.`, `_`, `-`.
pub fn check_project_tag(tag: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(format!("project tag {tag:?}: use 1-64 letters, digits, '.', '_' or '-'")) }
}

/// A workspace service as the hub lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    pub owner: String,
    pub port: u16,
    pub online: bool,
    /// What the serving agent declared, while it is online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceKind>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The project that serves it (`connect up`), while it is online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `GET /v1/services` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceList {
    pub services: Vec<ServiceInfo>,
}

/// `GET /v1/whoami` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub member: String,
    pub workspace: String,
}

/// `POST /v1/services/unregister` body: forget these services of the caller's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unregister {
    pub names: Vec<String>,
}

/// Body of every non-2xx reply on the link: what happened and what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// With [`ErrorCode::RateLimited`]: seconds until a retry can succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// Machine-readable error kinds; callers branch on these, users read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    /// The service exists but its agent is not connected.
    Offline,
    /// The agent is connected but could not reach its own target.
    TargetUnreachable,
    BadRequest,
    Forbidden,
    /// Existed, but is no longer valid (revoked, expired).
    Gone,
    /// Too many failed attempts; see `retry_after_secs`.
    RateLimited,
    Internal,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), hint: None, retry_after_secs: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The HTTP status this error travels with.
    pub fn status(&self) -> u16 {
        match self.code {
            ErrorCode::NotFound => 404,
            ErrorCode::Offline => 503,
            ErrorCode::TargetUnreachable => 502,
            ErrorCode::BadRequest => 400,
            ErrorCode::Forbidden => 403,
            ErrorCode::Gone => 410,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
        }
    }
}
