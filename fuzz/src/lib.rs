//! What each fuzz target does with its input, kept out of the `fuzz_targets/` stubs so every
//! target reads as one call. Each function must never panic on any input; where a parser promises
//! more (a decoded frame re-encodes to itself, a forwarded request obeys its link's policy), the
//! function asserts that too, so a broken promise is a crash libFuzzer reports.

use std::net::IpAddr;

use pconnect_capture::{Direction, Protocol, Tap};
use pconnect_proto::handshake::{self, Hello, Reply};
use pconnect_proto::link::{Cidr, LinkPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The agent <-> hub control messages: the length-prefixed handshake frame, and every JSON body
/// of the control RPCs (decoded values must survive a re-encode unchanged).
pub fn control_frames(data: &[u8]) {
    if let Some(prefix) = data.get(..4) {
        let prefix: [u8; 4] = prefix.try_into().expect("4 bytes");
        if let Ok(len) = handshake::frame_len(prefix) {
            let body = &data[4..];
            let body = &body[..body.len().min(len)];
            if let Ok(hello) = handshake::decode::<Hello>(body) {
                let again = handshake::encode(&hello);
                let back: Hello = handshake::decode(&again[4..]).expect("an encoded hello decodes");
                assert_eq!(back, hello);
                if hello.token.len() >= 8 {
                    assert!(!format!("{hello:?}").contains(&hello.token), "token in a hello's Debug");
                }
            }
            round_trip::<Reply>(body);
        }
    }
    use pconnect_proto::{control, link, share};
    round_trip::<control::ServiceSpec>(data);
    round_trip::<control::ServiceList>(data);
    round_trip::<control::Unregister>(data);
    round_trip::<control::WhoAmI>(data);
    if let Some(error) = round_trip::<control::ErrorBody>(data) {
        assert!((400..600).contains(&error.status()));
    }
    round_trip::<share::CreateShare>(data);
    round_trip::<share::ShareCode>(data);
    round_trip::<share::ShareId>(data);
    round_trip::<share::Joined>(data);
    round_trip::<share::ShareEvent>(data);
    round_trip::<share::ShareListing>(data);
    round_trip::<link::CreateLink>(data);
    round_trip::<link::RevokeLink>(data);
    round_trip::<link::LinkListing>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pconnect_proto::wire::service_from_tunnel_path(text);
        let _ = pconnect_proto::names::validate(text);
        if let Ok(code) = share::parse_code(text) {
            assert_eq!(share::parse_code(&code).as_ref(), Ok(&code), "a parsed code parses to itself");
        }
        let _ = pconnect_proto::duration::parse(text, 7 * 86400);
        let _ = link::parse_rate(text);
        let _ = link::parse_methods(text);
        let _ = link::parse_path_pattern(text);
        let _ = text.parse::<Cidr>();
    }
}

/// Decodes `data` as `T`; a decoded value must re-encode and decode to itself.
fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&value).expect("control types always serialise");
    let back: T = serde_json::from_slice(&json).expect("what we encode we decode");
    assert_eq!(back, value);
    Some(value)
}

/// `pconnect.yml` text through the real loader (interpolation, YAML, unknown keys, semantic checks).
pub fn project_yml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let vars = |name: &str| match name {
        "PORT" => Some("5432".to_string()),
        "HOST" => Some("db.internal".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    if let Err(e) = pconnect::project::parse(text, "pconnect.yml", &vars) {
        let _ = e.to_string();
    }
    let _ = pconnect::project::load::to_json(text, "pconnect.yml", &vars);
}

/// One raw request head through the ingress decision (Host, link name, SNI, policy). Input:
/// byte 0 picks the policy and whether there is an SNI, byte 1 the SNI's length; then the SNI
/// bytes, then the head. A forwarded request must obey the policy it was checked against.
pub fn ingress_head(data: &[u8]) {
    let (Some(&flags), Some(&sni_len)) = (data.first(), data.get(1)) else { return };
    let rest = &data[2..];
    let sni_len = usize::from(sni_len).min(rest.len());
    let (sni, head) = rest.split_at(sni_len);
    let sni = (flags & 0x80 != 0).then(|| String::from_utf8_lossy(sni).to_ascii_lowercase());
    let policy = policy(flags);
    let client = if flags & 0x40 != 0 { IpAddr::from([10, 1, 2, 3]) } else { IpAddr::from([127, 0, 0, 1]) };
    let decision = pconnect_hub::decide_head(head, sni.as_deref(), "localhost", &policy, client);
    if let Ok(subdomain) = decision {
        assert!(!subdomain.is_empty() && !subdomain.contains('.'), "forwarded to {subdomain:?}");
        assert!(policy.allows_ip(client));
        // The path the service will see is the request target's (origin or absolute form).
        if let Some(uri) = request_target(head).and_then(|t| t.parse::<http::Uri>().ok())
            && !policy.paths.is_empty()
        {
            let path = uri.path();
            assert!(policy.allows_path(path), "{path:?} forwarded past {:?}", policy.paths);
            assert!(!path.split('/').any(|s| s == ".."), "dot segment {path:?} forwarded");
        }
    }
}

/// The policy a fuzz input's flag byte picks.
fn policy(flags: u8) -> LinkPolicy {
    let mut policy = LinkPolicy::default();
    if flags & 0x01 != 0 {
        policy.paths = vec!["/webhooks/*".into(), "/health".into()];
    }
    if flags & 0x02 != 0 {
        policy.methods = vec!["GET".into(), "POST".into()];
    }
    if flags & 0x04 != 0 {
        policy.allow_ips = vec!["127.0.0.0/8".parse().expect("a valid CIDR")];
    }
    if flags & 0x08 != 0 {
        // User "u", password "p": the hub keeps the SHA-256 of the header value.
        policy.basic_auth_sha256 = Some(sha256_hex(&pconnect_proto::link::basic_auth_header("u:p")));
    }
    if flags & 0x10 != 0 {
        policy.rate_per_min = Some(1);
    }
    policy
}

fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The request target of a head (for the assertions), if the head has a request line.
fn request_target(head: &[u8]) -> Option<&str> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.split(' ').nth(1)
}

/// Arbitrary bytes, cut into arbitrary chunks in both directions, through a capture tap. Input:
/// byte 0 picks the declared protocol (or detection); then records of one header byte (bit 0:
/// direction, bits 1-7: length - 1) followed by that many bytes. A close ends every input.
pub fn capture_tap(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else { return };
    let declared = match kind % 4 {
        0 => None,
        1 => Some(Protocol::Http),
        2 => Some(Protocol::Postgres),
        _ => Some(Protocol::Redis),
    };
    capture_protocol(declared, rest);
}

/// One protocol's parser (or detection, with `None`): `data` is a sequence of chunks, each a header
/// byte (bit 0: direction, bits 1-7: length - 1) and its bytes.
pub fn capture_protocol(declared: Option<Protocol>, mut rest: &[u8]) {
    let mut tap = Tap::new(declared);
    let mut at = 1;
    let mut exchanges = Vec::new();
    while let Some((&header, tail)) = rest.split_first() {
        let dir = if header & 1 == 0 { Direction::ToService } else { Direction::ToClient };
        let len = usize::from(header >> 1) + 1;
        let (chunk, tail) = tail.split_at(len.min(tail.len()));
        exchanges.extend(tap.on_bytes(dir, chunk, at));
        rest = tail;
        at += 1;
    }
    exchanges.extend(tap.on_close(at));
    for exchange in &exchanges {
        let _ = format!("{exchange:?}");
    }
}
