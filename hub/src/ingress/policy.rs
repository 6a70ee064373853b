//! Enforcement of a link's policy on each request: client address, basic auth, method, path, rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use http::{Request, StatusCode, header};

use crate::links::LiveLink;
use crate::state::lock;
use crate::store::LinkId;

/// Why a request is refused, with the status it gets.
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) title: &'static str,
    pub(crate) detail: String,
    /// `Retry-After` seconds (429) or `Allow` methods (405) or the auth realm (401).
    pub(crate) extra: Option<(header::HeaderName, String)>,
}

/// Fixed one-minute windows per link.
#[derive(Default)]
pub(crate) struct RateLimits {
    windows: Mutex<HashMap<LinkId, (Instant, u32)>>,
}

impl RateLimits {
    /// `Err(seconds to wait)` when the link has used its requests for this minute.
    fn take(&self, link: LinkId, per_min: u32) -> Result<(), u64> {
        let now = Instant::now();
        let mut windows = lock(&self.windows);
        let (start, used) = windows.entry(link).or_insert((now, 0));
        if now.duration_since(*start).as_secs() >= 60 {
            *start = now;
            *used = 0;
        }
        if *used >= per_min {
            return Err(60u64.saturating_sub(now.duration_since(*start).as_secs()).max(1));
        }
        *used += 1;
        Ok(())
    }
}

/// Checks a request against the link's policy.
pub(crate) fn check<B>(
    link: &LiveLink,
    request: &Request<B>,
    client: IpAddr,
    limits: &RateLimits,
) -> Result<(), Refusal> {
    let policy = &link.policy;
    if !policy.allows_ip(client) {
        return Err(refuse(StatusCode::FORBIDDEN, "Forbidden", format!("{client} may not use this link"), None));
    }
    if let Some(expected) = &policy.basic_auth_sha256 {
        let presented = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
        if !constant_time_eq(&sha256_hex(presented), expected.as_bytes()) {
            let realm = (header::WWW_AUTHENTICATE, "Basic realm=\"pconnect link\"".to_string());
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "Authentication required",
                "this link needs a user name and password".into(),
                Some(realm),
            ));
        }
    }
    if !policy.allows_method(request.method().as_str()) {
        let allow = (header::ALLOW, policy.methods.join(", "));
        let detail = format!("{} is not allowed here", request.method());
        return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", detail, Some(allow)));
    }
    if !policy.allows_path(request.uri().path()) {
        return Err(refuse(StatusCode::FORBIDDEN, "Forbidden", "this path is not published on this link".into(), None));
    }
    if let Some(per_min) = policy.rate_per_min
        && let Err(wait) = limits.take(link.row.id, per_min)
    {
        let retry = (header::RETRY_AFTER, wait.to_string());
        let detail = format!("this link allows {per_min} requests per minute");
        return Err(refuse(StatusCode::TOO_MANY_REQUESTS, "Too many requests", detail, Some(retry)));
    }
    Ok(())
}

fn refuse(
    status: StatusCode,
    title: &'static str,
    detail: String,
    extra: Option<(header::HeaderName, String)>,
) -> Refusal {
    Refusal { status, title, detail, extra }
}

/// Lowercase hex SHA-256, as the agent stores the expected `Authorization` value.
pub(crate) fn sha256_hex(bytes: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().flat_map(|b| format!("{b:02x}").into_bytes()).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
