//! Environment shares: the code alphabet, code parsing, and the JSON bodies of the share RPCs.

use serde::{Deserialize, Serialize};

/// Share codes use lowercase letters and digits minus the look-alikes `0 o 1 l i`.
pub const CODE_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// Characters in a share code (31^6 ~ 8.9e8 codes; redeemable only by members, rate-limited).
pub const CODE_LEN: usize = 6;
/// Longest share lifetime.
pub const MAX_SHARE_SECS: u64 = 7 * 24 * 3600;
/// Share lifetime when none is given.
pub const DEFAULT_SHARE_SECS: u64 = 24 * 3600;

/// A malformed share code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a share code: codes are {CODE_LEN} letters and digits without 0, o, 1, l or i (like x7k9m2); check it with the person who shared it"
)]
pub struct CodeError(pub String);

/// Accepts a code in any case and surrounding spaces; returns its canonical lowercase form.
pub fn parse_code(input: &str) -> Result<String, CodeError> {
    let code = input.trim().to_ascii_lowercase();
    let valid = code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b));
    if valid { Ok(code) } else { Err(CodeError(input.to_string())) }
}

/// Draws a code from a source of random bytes, without modulo bias (rejection sampling).
pub fn code_from(mut random: impl FnMut() -> u8) -> String {
    let n = CODE_ALPHABET.len() as u8;
    let limit = u8::MAX - (u8::MAX % n) - 1;
    let mut code = String::with_capacity(CODE_LEN);
    while code.len() < CODE_LEN {
        let byte = random();
        if byte <= limit {
            code.push(CODE_ALPHABET[usize::from(byte % n)] as char);
        }
    }
    code
}

/// Remaining time in one short unit, rounded down: `23h`, `6h`, `45m`, `20s`, `3d`.
pub fn short_remaining(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s >= 2 * 86400 => format!("{}d", s / 86400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `POST /v1/shares`: share every online service the caller exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateShare {
    pub name: Option<String>,
    pub expires_in_secs: u64,
    /// Only these of the caller's online services (all of them when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// The project (`connect up`) that owns the share; hand-made shares have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `POST /v1/shares/update`: change a share of the caller's in place (it keeps its code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateShare {
    pub id: i64,
    /// Its lifetime, counted from its creation.
    pub expires_in_secs: u64,
}

/// `POST /v1/shares/revoke-id`: revoke one of the caller's shares by id (the code is not needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareId {
    pub id: i64,
}

/// A share as the hub describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareInfo {
    pub id: i64,
    pub name: Option<String>,
    pub creator: String,
    pub routes: Vec<ShareRouteInfo>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Teammates joined right now.
    pub joined: u32,
    /// The project that owns it (`connect up`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// One service of a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRouteInfo {
    pub service: String,
    pub port: u16,
}

/// Reply to a created share: the code is shown once here and never stored by the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareCreated {
    pub code: String,
    pub share: ShareInfo,
}

/// `GET /v1/shares`: the caller's active shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareListing {
    pub shares: Vec<ShareInfo>,
}

/// `POST /v1/shares/revoke` and `POST /v1/shares/join` bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareCode {
    pub code: String,
}

/// Reply to a join: the share, and the join token the agent uses for tunnels and re-attaching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub share: ShareInfo,
    pub join_token: String,
}

/// Events on a joiner's attach stream (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ShareEvent {
    /// The joiner is counted as joined.
    Attached,
    /// The creator (or an admin) revoked the share; tunnels are closed.
    Revoked,
    /// The share reached its expiry; tunnels are closed.
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_in_any_case_and_refuse_look_alikes() {
        assert_eq!(parse_code(" X7K9M2 ").unwrap(), "x7k9m2");
        for bad in ["x7k9m", "x7k9m22", "x7k9m0", "x7k9mo", "x7k9m1", "x7k9ml", "x7k9mi", "x7-9m2", ""] {
            assert!(parse_code(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn drawn_codes_are_valid_and_unbiased_by_rejection() {
        let mut byte = 0u8;
        let code = code_from(|| {
            byte = byte.wrapping_add(37);
            byte
        });
        assert_eq!(parse_code(&code).unwrap(), code);
        // Bytes above the limit are skipped, never folded into the alphabet.
        let mut feed = [255u8, 254, 250, 0, 1, 2, 3, 4, 5].into_iter();
        assert_eq!(code_from(|| feed.next().unwrap()), "abcdef");
    }
}
