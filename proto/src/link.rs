//! Public links: the access policy a link carries (enforced by the hub's ingress), its pieces
//! (CIDR ranges, path patterns, rate limits), and the JSON bodies of the link RPCs.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Longest temporary link lifetime.
pub const MAX_LINK_SECS: u64 = 30 * 86400;
/// Temporary link lifetime when none is given.
pub const DEFAULT_LINK_SECS: u64 = 24 * 3600;

/// Who may use a link and how. Every field is optional; an empty policy lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkPolicy {
    /// HTTP basic auth: the salted argon2id hash ([`hash_credentials`], PHC string) of `user:password`,
    /// never the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<String>,
    /// HTTP basic auth of links made before 0.2: unsalted SHA-256 (hex) of the `Authorization`
    /// header. Still verified for stored links; the hub refuses it for new ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_sha256: Option<String>,
    /// Client addresses allowed (CIDR); empty = everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_ips: Vec<Cidr>,
    /// Methods allowed (upper case); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Path patterns allowed (`/webhooks/*` = prefix, else exact); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Requests per minute per link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_min: Option<u32>,
    /// Send this `Host` upstream instead of the client's (dev servers that check Host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_host: Option<String>,
}

impl LinkPolicy {
    /// Checks a policy as the hub receives it: every part well formed, a password only as a salted
    /// hash within the cost limits.
    pub fn check(&self) -> Result<(), String> {
        if self.basic_auth_sha256.is_some() {
            return Err("unsalted link passwords are no longer accepted: upgrade connect".into());
        }
        if let Some(phc) = &self.basic_auth {
            check_hash(phc).map_err(|e| e.to_string())?;
        }
        if !self.methods.is_empty() {
            parse_methods(&self.methods.join(","))?;
        }
        for path in &self.paths {
            parse_path_pattern(path)?;
        }
        if let Some(rate) = self.rate_per_min {
            parse_rate(&rate.to_string())?;
        }
        if let Some(host) = &self.rewrite_host {
            let ok = !host.is_empty()
                && host.len() <= 255
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
            if !ok {
                return Err(format!("'{host}' is not a host[:port] to send as Host"));
            }
        }
        if self.allow_ips.len() > 256 || self.paths.len() > 256 {
            return Err("a link takes at most 256 address ranges and 256 path patterns".into());
        }
        Ok(())
    }

    /// Whether `path` (without query) matches one of the patterns (or there are none).
    pub fn allows_path(&self, path: &str) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| path_matches(p, path))
    }

    /// Whether `method` is allowed.
    pub fn allows_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// Whether a client address is allowed.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.allow_ips.is_empty() || self.allow_ips.iter().any(|c| c.contains(ip))
    }
}

/// `/webhooks/*` matches `/webhooks/` and everything under it; other patterns match exactly.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix) || path == prefix.trim_end_matches('/'),
        None => path == pattern,
    }
}

/// Checks a path pattern: starts with `/`, `*` only at the end.
pub fn parse_path_pattern(input: &str) -> Result<String, String> {
    let ok =
        input.starts_with('/') && !input.trim_end_matches('*').contains('*') && !input.contains(char::is_whitespace);
    if ok { Ok(input.to_string()) } else { Err(format!("'{input}' is not a path pattern: use /exact or /prefix/*")) }
}

/// Parses `GET,POST` into upper-case method names.
pub fn parse_methods(input: &str) -> Result<Vec<String>, String> {
    const KNOWN: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    input
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .map(|m| {
            if KNOWN.contains(&m.as_str()) {
                Ok(m)
            } else {
                Err(format!("'{m}' is not an HTTP method (use {})", KNOWN.join(",")))
            }
        })
        .collect()
}

/// Argon2id cost of link passwords (OWASP's minimum: 19 MiB, 2 passes, 1 lane).
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;
/// The most a stored hash may ask of the hub that verifies it (a member chooses the hash).
const ARGON2_MAX_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_MAX_PASSES: u32 = 4;
const ARGON2_MAX_LANES: u32 = 2;

/// Why a link credential or its hash is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("link auth takes user:password (a non-empty user, then ':', then the password)")]
    Format,
    #[error("the link password hash is not an argon2id PHC string within the hub's cost limits")]
    Hash,
}

/// Checks `user:password`: a non-empty user without ':' or control characters, a non-empty password.
pub fn check_credentials(credentials: &str) -> Result<(), AuthError> {
    match credentials.split_once(':') {
        Some((user, password))
            if !user.is_empty() && !password.is_empty() && !credentials.chars().any(char::is_control) =>
        {
            Ok(())
        }
        _ => Err(AuthError::Format),
    }
}

/// The salted argon2id hash (PHC string) a link stores for `user:password`; `salt` is 16 random bytes.
pub fn hash_credentials(credentials: &str, salt: &[u8; 16]) -> Result<String, AuthError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    check_credentials(credentials)?;
    let salt = SaltString::encode_b64(salt).map_err(|_| AuthError::Hash)?;
    let hash = argon2().hash_password(credentials.as_bytes(), &salt).map_err(|_| AuthError::Hash)?;
    Ok(hash.to_string())
}

/// Checks that a stored hash is argon2id within the cost limits (a member could otherwise make the
/// hub spend gigabytes verifying one request).
pub fn check_hash(phc: &str) -> Result<(), AuthError> {
    parse_hash(phc).map(|_| ())
}

/// Whether `credentials` (`user:password`) match a hash from [`hash_credentials`]. Fails closed on
/// a malformed or too costly hash.
pub fn verify_credentials(phc: &str, credentials: &[u8]) -> bool {
    use argon2::password_hash::PasswordVerifier;
    match parse_hash(phc) {
        Ok(hash) => argon2().verify_password(credentials, &hash).is_ok(),
        Err(_) => false,
    }
}

/// `user:password` from a `Basic` `Authorization` header value, if it is one.
pub fn credentials_from_header(value: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()
}

fn argon2() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, None).expect("constant argon2 parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

fn parse_hash(phc: &str) -> Result<argon2::password_hash::PasswordHash<'_>, AuthError> {
    let hash = argon2::password_hash::PasswordHash::new(phc).map_err(|_| AuthError::Hash)?;
    if hash.algorithm != argon2::Algorithm::Argon2id.ident() || hash.salt.is_none() || hash.hash.is_none() {
        return Err(AuthError::Hash);
    }
    let params = argon2::Params::try_from(&hash).map_err(|_| AuthError::Hash)?;
    let affordable = params.m_cost() <= ARGON2_MAX_MEMORY_KIB
        && params.t_cost() <= ARGON2_MAX_PASSES
        && params.p_cost() <= ARGON2_MAX_LANES;
    if !affordable {
        return Err(AuthError::Hash);
    }
    Ok(hash)
}

/// The `Authorization` header value a browser sends for `user:password` (HTTP basic auth).
pub fn basic_auth_header(credentials: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials))
}

/// Parses `60/min` (or `60`) into requests per minute.
pub fn parse_rate(input: &str) -> Result<u32, String> {
    let count = input.trim().strip_suffix("/min").unwrap_or(input.trim());
    match count.parse::<u32>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n),
        _ => Err(format!("'{input}' is not a rate: use N/min with N from 1 to 100000, like 60/min")),
    }
}

/// Requests per minute a link lets through; written `60/min` (or `60`) in files and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RateLimit(pub u32);

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        parse_rate(text).map(RateLimit)
    }
}

impl TryFrom<String> for RateLimit {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<RateLimit> for String {
    fn from(rate: RateLimit) -> String {
        format!("{}/min", rate.0)
    }
}

/// The `Host` a link's service receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HostHeader {
    /// The client's (`<sub>.<domain>`).
    #[default]
    Passthrough,
    /// The target's own `host:port` (dev servers that check Host).
    Rewrite,
}

impl std::str::FromStr for HostHeader {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "passthrough" => Ok(HostHeader::Passthrough),
            "rewrite" => Ok(HostHeader::Rewrite),
            other => Err(format!("the host header is passthrough or rewrite, not '{other}'")),
        }
    }
}

/// An address range: `10.0.0.0/8`, `192.168.1.7` (= /32), `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{input}' is not an address range: use CIDR like 203.0.113.0/24 or one address");
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `POST /v1/links`: publish one of the caller's services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    pub service: String,
    /// Persistent (`--public`): same URL every time this member exposes this service name.
    pub persistent: bool,
    /// Temporary links only.
    pub expires_in_secs: Option<u64>,
    pub policy: LinkPolicy,
    /// The project (`connect up`) that owns the link; hand-made links have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `POST /v1/links/update`: change a link of the caller's in place (it keeps its URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateLink {
    pub subdomain: String,
    /// A temporary link's lifetime, counted from its creation.
    pub expires_in_secs: Option<u64>,
    pub policy: LinkPolicy,
}

/// A link as the hub describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    pub subdomain: String,
    pub url: String,
    pub service: String,
    pub persistent: bool,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: i64,
    /// Unix seconds; `None` for persistent links.
    pub expires_at: Option<i64>,
    pub requests: i64,
    /// The policy it enforces (the password only as a hash).
    #[serde(default)]
    pub policy: LinkPolicy,
    /// The project that owns it (`connect up`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `GET /v1/links`: the caller's active links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkListing {
    pub links: Vec<LinkInfo>,
}

/// `POST /v1/links/revoke` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeLink {
    pub subdomain: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_match() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(one.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let odd: Cidr = "192.168.0.0/23".parse().unwrap();
        assert!(odd.contains("192.168.1.9".parse().unwrap()) && !odd.contains("192.168.2.1".parse().unwrap()));
        assert!("::1/128".parse::<Cidr>().unwrap().contains("::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "banana", "10.0.0/8", "::1/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&net).unwrap();
        assert_eq!(serde_json::from_str::<Cidr>(&json).unwrap(), net);
    }

    #[test]
    fn link_passwords_are_salted_argon2id_and_verified_from_the_header() {
        let hash = hash_credentials("client:s3cret pass", &[7; 16]).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert_ne!(hash, hash_credentials("client:s3cret pass", &[8; 16]).unwrap(), "the salt counts");
        let header = basic_auth_header("client:s3cret pass");
        let presented = credentials_from_header(header.as_bytes()).unwrap();
        assert!(verify_credentials(&hash, &presented));
        assert!(!verify_credentials(&hash, b"client:wrong"));
        assert!(check_hash(&hash).is_ok());
        for bad in ["", ":p", "u:", "nocolon", "u\n:p"] {
            assert_eq!(check_credentials(bad), Err(AuthError::Format), "{bad:?}");
        }
        // A hash asking for 4 GiB, or another algorithm, is refused and never verifies.
        let greedy = hash.replace("m=19456", "m=4194304");
        assert_eq!(check_hash(&greedy), Err(AuthError::Hash));
        assert!(!verify_credentials(&greedy, &presented));
        assert_eq!(check_hash(&hash.replace("argon2id", "argon2i")), Err(AuthError::Hash));
        assert_eq!(credentials_from_header(b"Bearer abc"), None);
    }

    #[test]
    fn basic_auth_matches_rfc_7617() {
        assert_eq!(basic_auth_header("Aladdin:open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_auth_header("a:b"), "Basic YTpi");
        assert_eq!(basic_auth_header("ab:c"), "Basic YWI6Yw==");
    }

    #[test]
    fn paths_methods_rates() {
        assert!(path_matches("/webhooks/*", "/webhooks/stripe"));
        assert!(path_matches("/webhooks/*", "/webhooks"));
        assert!(!path_matches("/webhooks/*", "/admin"));
        assert!(path_matches("/health", "/health") && !path_matches("/health", "/healthz"));
        assert!(
            parse_path_pattern("/a/*").is_ok()
                && parse_path_pattern("a").is_err()
                && parse_path_pattern("/*/x").is_err()
        );
        assert_eq!(parse_methods("get, POST").unwrap(), vec!["GET", "POST"]);
        assert!(parse_methods("GET,FETCH").is_err());
        assert_eq!(parse_rate("60/min").unwrap(), 60);
        assert!(parse_rate("0/min").is_err() && parse_rate("fast").is_err());
        let policy =
            LinkPolicy { methods: vec!["POST".into()], paths: vec!["/webhooks/*".into()], ..Default::default() };
        assert!(policy.allows_method("post") && !policy.allows_method("GET"));
        assert!(policy.allows_path("/webhooks/github") && !policy.allows_path("/"));
        assert!(LinkPolicy::default().allows_ip("8.8.8.8".parse().unwrap()));
    }
}
