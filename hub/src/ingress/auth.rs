//! Basic auth on public links, made expensive to guess: every attempt is counted per client address
//! and per link **before** the password is checked, and past a few failures the client waits
//! (429 + `Retry-After`, doubling); passwords are stored as salted argon2id hashes, verified off
//! the async workers, and a verified `Authorization` value is remembered for a while so a browser
//! pays the hash once, not per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode, header};
use pconnect_proto::link::{self, LinkPolicy};
use tokio::sync::Semaphore;

use super::policy::{Refusal, constant_time_eq, refuse, sha256_hex};
use crate::store::LinkId;
use crate::sync::lock;

/// Failed attempts one address gets for free in a window, then waits.
const FREE_PER_IP: u32 = 5;
/// Failed attempts one link gets for free in a window (from all addresses), then every client waits.
const FREE_PER_LINK: u32 = 30;
/// Failures are forgotten this long after the first one of a window.
const WINDOW: Duration = Duration::from_secs(10 * 60);
/// Longest wait for an address, and for a whole link.
const MAX_IP_WAIT: Duration = Duration::from_secs(15 * 60);
const MAX_LINK_WAIT: Duration = Duration::from_secs(60);
/// How long a verified `Authorization` value is accepted without hashing again.
const VERIFIED_TTL: Duration = Duration::from_secs(10 * 60);
/// Most remembered values (and tracked addresses) before old ones are dropped.
const MAX_ENTRIES: usize = 100_000;
/// Hashes computed at once (each takes ~19 MiB and a core for tens of milliseconds).
const MAX_CONCURRENT_HASHES: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Ip(IpAddr),
    Link(LinkId),
}

#[derive(Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

/// Counts failures and remembers verified credentials, for every link of the hub.
pub(crate) struct LinkAuth {
    failures: Mutex<HashMap<Who, Failures>>,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    hashing: Arc<Semaphore>,
}

impl Default for LinkAuth {
    fn default() -> Self {
        Self {
            failures: Mutex::default(),
            verified: Mutex::default(),
            hashing: Arc::new(Semaphore::new(MAX_CONCURRENT_HASHES)),
        }
    }
}

impl LinkAuth {
    /// Lets a request through a link's basic auth, or says why not (401, or 429 while the client
    /// or the link is waiting out failures).
    pub(crate) async fn check(
        &self,
        link: LinkId,
        policy: &LinkPolicy,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<(), Refusal> {
        if policy.basic_auth.is_none() && policy.basic_auth_sha256.is_none() {
            return Ok(());
        }
        let presented = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
        let memo = memo_key(link, policy, &presented);
        if self.remembered(&memo) {
            return Ok(());
        }
        // The attempt counts as a failure until it is proven good: concurrent guesses from one
        // address all queue behind the same counter.
        self.begin(Who::Ip(client), FREE_PER_IP, MAX_IP_WAIT)?;
        self.begin(Who::Link(link), FREE_PER_LINK, MAX_LINK_WAIT)?;
        let good = !presented.is_empty() && self.verify(policy, presented).await;
        if !good {
            return Err(unauthorized());
        }
        lock(&self.failures).remove(&Who::Ip(client));
        if let Some(f) = lock(&self.failures).get_mut(&Who::Link(link)) {
            f.count = f.count.saturating_sub(1);
        }
        let mut verified = lock(&self.verified);
        if verified.len() >= MAX_ENTRIES {
            let now = Instant::now();
            verified.retain(|_, at| now.duration_since(*at) < VERIFIED_TTL);
            if verified.len() >= MAX_ENTRIES {
                verified.clear();
            }
        }
        verified.insert(memo, Instant::now());
        Ok(())
    }

    fn remembered(&self, memo: &[u8; 32]) -> bool {
        lock(&self.verified).get(memo).is_some_and(|at| at.elapsed() < VERIFIED_TTL)
    }

    /// Counts one attempt of `who`; `Err(429)` while it is waiting out earlier failures.
    fn begin(&self, who: Who, free: u32, max_wait: Duration) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, f| now.duration_since(f.since) < WINDOW || f.blocked_until.is_some_and(|b| b > now));
        }
        let entry = failures.entry(who).or_insert(Failures { since: now, count: 0, blocked_until: None });
        if let Some(until) = entry.blocked_until
            && until > now
        {
            return Err(wait(until - now, who));
        }
        if now.duration_since(entry.since) >= WINDOW {
            *entry = Failures { since: now, count: 0, blocked_until: None };
        }
        entry.count += 1;
        if entry.count > free {
            let doublings = (entry.count - free).min(20);
            let pause = Duration::from_secs(1u64 << doublings).min(max_wait);
            entry.blocked_until = Some(now + pause);
            return Err(wait(pause, who));
        }
        Ok(())
    }

    async fn verify(&self, policy: &LinkPolicy, presented: Vec<u8>) -> bool {
        if let Some(phc) = &policy.basic_auth {
            let Some(credentials) = link::credentials_from_header(&presented) else { return false };
            let Ok(_permit) = self.hashing.clone().acquire_owned().await else { return false };
            let phc = phc.clone();
            return tokio::task::spawn_blocking(move || link::verify_credentials(&phc, &credentials))
                .await
                .unwrap_or(false);
        }
        // Links made before salted hashes: the unsalted SHA-256 of the header.
        policy
            .basic_auth_sha256
            .as_ref()
            .is_some_and(|expected| constant_time_eq(&sha256_hex(&presented), expected.as_bytes()))
    }
}

/// What a verified value is remembered by: the link, its current hash and the header value (so a
/// changed password forgets every remembered value at once).
fn memo_key(link: LinkId, policy: &LinkPolicy, presented: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&link.to_be_bytes());
    ctx.update(policy.basic_auth.as_deref().or(policy.basic_auth_sha256.as_deref()).unwrap_or("").as_bytes());
    ctx.update(&[0]);
    ctx.update(presented);
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

pub(crate) fn unauthorized() -> Refusal {
    let realm = (header::WWW_AUTHENTICATE, "Basic realm=\"pconnect link\"".to_string());
    refuse(
        StatusCode::UNAUTHORIZED,
        "Authentication required",
        "this link needs a user name and password".into(),
        Some(realm),
    )
}

fn wait(pause: Duration, who: Who) -> Refusal {
    let secs = pause.as_secs_f64().ceil().max(1.0) as u64;
    let detail = match who {
        Who::Ip(_) => format!("too many failed sign-ins from your address: try again in {secs}s"),
        Who::Link(_) => format!("too many failed sign-ins on this link: try again in {secs}s"),
    };
    refuse(StatusCode::TOO_MANY_REQUESTS, "Too many attempts", detail, Some((header::RETRY_AFTER, secs.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LinkPolicy {
        LinkPolicy { basic_auth: Some(link::hash_credentials("u:right", &[1; 16]).unwrap()), ..LinkPolicy::default() }
    }

    fn with_auth(credentials: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, link::basic_auth_header(credentials).parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn guesses_are_counted_before_the_password_is_checked() {
        let auth = LinkAuth::default();
        let policy = policy();
        let ip: IpAddr = [192, 0, 2, 1].into();
        let mut statuses = Vec::new();
        for i in 0..20 {
            let result = auth.check(1, &policy, &with_auth(&format!("u:guess{i}")), ip).await;
            statuses.push(result.err().map(|r| r.status.as_u16()).unwrap_or(200));
        }
        assert_eq!(&statuses[..FREE_PER_IP as usize], [401; FREE_PER_IP as usize]);
        assert!(statuses[FREE_PER_IP as usize..].iter().all(|s| *s == 429), "{statuses:?}");
        // Even the right password waits while the address is blocked...
        let blocked = auth.check(1, &policy, &with_auth("u:right"), ip).await.unwrap_err();
        assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(blocked.extra.as_ref().is_some_and(|(name, _)| name == header::RETRY_AFTER));
        // ...another address is not, and is then remembered.
        let other: IpAddr = [192, 0, 2, 2].into();
        assert!(auth.check(1, &policy, &with_auth("u:right"), other).await.is_ok());
        assert!(auth.remembered(&memo_key(1, &policy, link::basic_auth_header("u:right").as_bytes())));
        assert_eq!(auth.check(1, &policy, &HeaderMap::new(), other).await.unwrap_err().status, 401);
    }

    #[tokio::test]
    async fn a_link_without_auth_lets_everything_through() {
        let auth = LinkAuth::default();
        assert!(auth.check(1, &LinkPolicy::default(), &HeaderMap::new(), [192, 0, 2, 1].into()).await.is_ok());
    }
}
