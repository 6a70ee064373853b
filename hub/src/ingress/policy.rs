//! Enforcement of a link's policy on each request: client address and rate ([`screen`], before
//! credentials), method and path ([`scope`], after them; basic auth itself is [`super::auth`]);
//! and [`decide_head`], the whole pre-proxy decision on a raw request head (the fuzz target's entry).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use http::{Request, StatusCode, header};
use pconnect_proto::link::LinkPolicy;

use super::host::{self, Target};
use crate::store::LinkId;
use crate::sync::lock;

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

/// The checks that come before credentials: the client's address, then the link's rate (so
/// guessing a password spends the link's requests too).
pub(crate) fn screen(policy: &LinkPolicy, link: LinkId, client: IpAddr, limits: &RateLimits) -> Result<(), Refusal> {
    if !policy.allows_ip(client) {
        return Err(refuse(StatusCode::FORBIDDEN, "Forbidden", format!("{client} may not use this link"), None));
    }
    if let Some(per_min) = policy.rate_per_min
        && let Err(wait) = limits.take(link, per_min)
    {
        let retry = (header::RETRY_AFTER, wait.to_string());
        let detail = format!("this link allows {per_min} requests per minute");
        return Err(refuse(StatusCode::TOO_MANY_REQUESTS, "Too many requests", detail, Some(retry)));
    }
    Ok(())
}

/// The checks on what is asked for: method and path.
pub(crate) fn scope<B>(policy: &LinkPolicy, request: &Request<B>) -> Result<(), Refusal> {
    if !policy.allows_method(request.method().as_str()) {
        let allow = (header::ALLOW, policy.methods.join(", "));
        let detail = format!("{} is not allowed here", request.method());
        return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", detail, Some(allow)));
    }
    // A published prefix must not be escaped with dot segments the service resolves itself
    // (`/webhooks/../admin`, `/webhooks/%2e%2e/admin`, `/webhooks/..;/admin`).
    if !policy.paths.is_empty() && !is_plain_path(request.uri().path()) {
        let detail = "paths with `.` or `..` segments, encoded slashes or backslashes are not accepted here";
        return Err(refuse(StatusCode::BAD_REQUEST, "Bad request", detail.into(), None));
    }
    if !policy.allows_path(request.uri().path()) {
        return Err(refuse(StatusCode::FORBIDDEN, "Forbidden", "this path is not published on this link".into(), None));
    }
    Ok(())
}

/// Whether `path` has no segment a server could resolve to another place: no `.` or `..` segment
/// (also percent-encoded, or followed by `;params`), no encoded `/` or `\`, no backslash.
fn is_plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains('\\') || lower.contains("%2f") || lower.contains("%5c") {
        return false;
    }
    lower.split('/').all(|segment| {
        let segment = segment.split(';').next().unwrap_or_default().replace("%2e", ".");
        segment != "." && segment != ".."
    })
}

/// What the ingress does with one raw HTTP/1.1 request head before any agent is contacted:
/// `Ok(subdomain)` when it forwards the request to that link's service (whose policy is `policy`),
/// `Err(status)` of the hub's own answer otherwise (400 unparsable, 404 no link, 421 SNI and Host
/// differ, 401/403/405/429 refused by the policy). The same steps the server runs (without the
/// failure counting of [`super::auth`]); public so the `ingress_head` fuzz target can drive them
/// with arbitrary bytes.
pub fn decide_head(
    head: &[u8],
    sni: Option<&str>,
    domain: &str,
    policy: &LinkPolicy,
    client: IpAddr,
) -> Result<String, StatusCode> {
    let request = parse_head(head).ok_or(StatusCode::BAD_REQUEST)?;
    let host = host::of_request(&request).unwrap_or_default();
    let Target::Link(subdomain) = host::classify(&host, domain) else {
        return Err(StatusCode::NOT_FOUND);
    };
    if sni.is_some_and(|sni| host::misdirected(&host, sni)) {
        return Err(StatusCode::MISDIRECTED_REQUEST);
    }
    screen(policy, 1, client, &RateLimits::default()).map_err(|refusal| refusal.status)?;
    if policy.basic_auth.is_some() || policy.basic_auth_sha256.is_some() {
        let presented = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
        let good = match (&policy.basic_auth, &policy.basic_auth_sha256) {
            (Some(phc), _) => pconnect_proto::link::credentials_from_header(presented)
                .is_some_and(|credentials| pconnect_proto::link::verify_credentials(phc, &credentials)),
            (None, Some(expected)) => constant_time_eq(&sha256_hex(presented), expected.as_bytes()),
            (None, None) => true,
        };
        if !good {
            return Err(StatusCode::UNAUTHORIZED);
        }
    }
    scope(policy, &request).map_err(|refusal| refusal.status)?;
    Ok(subdomain)
}

/// A complete request head as hyper's HTTP/1 server parses it (httparse), or `None`.
fn parse_head(head: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    if !matches!(parsed.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let mut builder = Request::builder().method(parsed.method?).uri(parsed.path?);
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    builder.body(()).ok()
}

pub(crate) fn refuse(
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

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhooks_only() -> LinkPolicy {
        LinkPolicy { paths: vec!["/webhooks/*".into()], ..LinkPolicy::default() }
    }

    fn decide(head: &str, sni: Option<&str>, policy: &LinkPolicy) -> Result<String, StatusCode> {
        decide_head(head.as_bytes(), sni, "localhost", policy, IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn dot_segments_cannot_escape_a_published_prefix() {
        let policy = webhooks_only();
        let ok = decide("POST /webhooks/stripe HTTP/1.1\r\nHost: abc123.localhost\r\n\r\n", None, &policy);
        assert_eq!(ok, Ok("abc123".to_string()));
        for path in [
            "/webhooks/../admin",
            "/webhooks/%2e%2e/admin",
            "/webhooks/%2E./admin",
            "/webhooks/..;/admin",
            "/webhooks/.",
            "/webhooks/a%2f..%2fadmin",
            "/webhooks/..\\admin",
        ] {
            let head = format!("GET {path} HTTP/1.1\r\nHost: abc123.localhost\r\n\r\n");
            assert_eq!(decide(&head, None, &policy), Err(StatusCode::BAD_REQUEST), "{path}");
        }
        // Without a path policy the service sees the path as sent.
        let head = "GET /a/../b HTTP/1.1\r\nHost: abc123.localhost\r\n\r\n";
        assert!(decide(head, None, &LinkPolicy::default()).is_ok());
        assert!(is_plain_path("/webhooks/v1.2/..x/.well-known"));
    }

    #[test]
    fn heads_are_routed_by_host_and_sni_and_refused_otherwise() {
        let any = LinkPolicy::default();
        let head = "GET / HTTP/1.1\r\nHost: abc123.localhost:8443\r\n\r\n";
        assert_eq!(decide(head, Some("abc123.localhost"), &any), Ok("abc123".into()));
        assert_eq!(decide(head, Some("zzz999.localhost"), &any), Err(StatusCode::MISDIRECTED_REQUEST));
        assert_eq!(decide("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", None, &any), Err(StatusCode::NOT_FOUND));
        assert_eq!(decide("GET / HTTP/1.1\r\nHost: abc", None, &any), Err(StatusCode::BAD_REQUEST));
        assert_eq!(decide("\u{0}\u{1}", None, &any), Err(StatusCode::BAD_REQUEST));
        let get_only = LinkPolicy { methods: vec!["GET".into()], ..LinkPolicy::default() };
        let post = "POST / HTTP/1.1\r\nHost: abc123.localhost\r\n\r\n";
        assert_eq!(decide(post, None, &get_only), Err(StatusCode::METHOD_NOT_ALLOWED));
    }
}
