//! The direct path between agents: the hub is each workspace's certificate authority and the one
//! that authorizes tunnels; two agents that can reach each other then talk directly (mutual TLS,
//! HTTP/2 extended CONNECT, the same tunnel streams as the relay), and the hub relays only when
//! they cannot.
//!
//! - An agent gets a short-lived certificate for a key it made itself ([`DirectCertRequest`] →
//!   [`DirectCert`]); the name in it ([`agent_name`]) says whose agent it is.
//! - An exposing agent lists where it accepts direct connections ([`Candidates`], in its reverse
//!   hello).
//! - To open a tunnel, the reach agent asks the hub ([`DirectRouteRequest`] → [`DirectRoute`]):
//!   the candidates and a [`Ticket`] the hub signed with the workspace CA's key, naming who may
//!   open what. The exposing agent checks the ticket on every stream (`HEADER_TICKET`).
//! - The hub tells exposing agents about revocations on their reverse link ([`Revoked`]).
//!
//! Candidates are `ip:port` strings today (never names: [`dialable`]); a later candidate kind (a UDP endpoint for QUIC hole
//! punching) is a new variant of [`Candidate`], which older agents skip.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Certificate for an agent's own key: `POST` with [`DirectCertRequest`], answered [`DirectCert`].
pub const DIRECT_CERT_PATH: &str = "/v1/direct/cert";
/// Candidates and a ticket for one tunnel: `POST` with [`DirectRouteRequest`], answered [`DirectRoute`].
pub const DIRECT_ROUTE_PATH: &str = "/v1/direct/route";
/// Hub → exposing agent on its reverse link: `POST` with [`Revoked`].
pub const DIRECT_REVOKE_PATH: &str = "/v1/direct/revoke";
/// Agent → hub, held open while the agent keeps a direct connection with an agent of the member
/// named in [`HEADER_MEMBER`] (either side: the reach agent watches the exposing member, the
/// exposing agent the teammate it serves): `POST`, the request body left open; the answer's body
/// gets one [`MemberGone`] line (then ends) when that member is removed, so the agent cuts that
/// member's direct tunnels itself, whether or not the other side cooperates.
pub const DIRECT_WATCH_PATH: &str = "/v1/direct/watch";
/// The member id a [`DIRECT_WATCH_PATH`] stream watches.
pub const HEADER_MEMBER: &str = "pconnect-member";
/// The ticket a direct tunnel request carries.
pub const HEADER_TICKET: &str = "pconnect-ticket";
/// ALPN of direct connections between agents: HTTP/2 in the lane's profile (`pconnect_link::lane`).
pub const ALPN_DIRECT: &[u8] = b"pconnect-direct/2";
/// How long a certificate the hub issues is valid unless its operator says otherwise (renewed at
/// half-life). It also bounds how long an exposing agent that cannot reach the hub keeps a
/// teammate's direct connection: no longer than that teammate's certificate.
pub const CERT_LIFETIME_SECS: i64 = 3600;
/// How long a ticket is valid (the reach agent asks again before then).
pub const TICKET_LIFETIME_MS: i64 = 60_000;

/// The DNS name in the certificate of member `member`'s agents in workspace `workspace`: what an
/// exposing agent checks a ticket's member against, and what a reach agent expects of the
/// exposing agent it dials.
pub fn agent_name(workspace: i64, member: i64) -> String {
    format!("m{member}.w{workspace}.agents.pconnect.invalid")
}

/// An agent's public key (Ed25519, 32 raw bytes, base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectCertRequest {
    pub public_key: String,
}

/// The certificate the hub issued, and the workspace CA that everything direct is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectCert {
    /// The agent's certificate (PEM).
    pub cert_pem: String,
    /// The workspace CA's certificate (PEM): the one root of direct connections.
    pub ca_pem: String,
    /// The workspace CA's public key (Ed25519, base64): tickets are signed with it.
    pub ca_key: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub workspace_id: i64,
    pub member_id: i64,
}

/// One way to reach an exposing agent directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Candidate {
    /// TLS over TCP at `host:port`.
    Tcp { addr: String },
    /// A kind this version does not know (a newer agent's): skipped.
    #[serde(other)]
    Unknown,
}

impl Candidate {
    /// The address a teammate's agent dials for this candidate: a TCP candidate that passes
    /// [`dialable`]; `None` for anything else.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Candidate::Tcp { addr } => dialable(addr).ok(),
            Candidate::Unknown => None,
        }
    }
}

/// `addr` as an address to dial, or why it is none: an IP address (never a name to resolve) and
/// a port, and neither port 0 nor an address no connection can go to (unspecified, multicast,
/// broadcast). The hub checks this where candidates enter and the dialing agent again.
pub fn dialable(addr: &str) -> Result<SocketAddr, &'static str> {
    let parsed: SocketAddr = addr.parse().map_err(|_| "is not an IP address and port")?;
    let ip = parsed.ip();
    if parsed.port() == 0 {
        return Err("has port 0");
    }
    if ip.is_unspecified() {
        return Err("is an unspecified address (0.0.0.0 or ::)");
    }
    if ip.is_multicast() || ip == std::net::Ipv4Addr::BROADCAST {
        return Err("is a multicast or broadcast address");
    }
    Ok(parsed)
}

/// Where an exposing agent accepts direct connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidates {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
}

/// Most candidates an agent may list.
pub const MAX_CANDIDATES: usize = 16;

impl Candidates {
    /// Refuses what no agent should send: too many, or a TCP address that is not [`dialable`].
    pub fn check(&self) -> Result<(), String> {
        if self.candidates.len() > MAX_CANDIDATES {
            return Err(format!("at most {MAX_CANDIDATES} direct candidates"));
        }
        for candidate in &self.candidates {
            if let Candidate::Tcp { addr } = candidate
                && let Err(why) = dialable(addr)
            {
                return Err(format!("direct candidate '{}' {why}", crate::text::terminal_safe(addr)));
            }
        }
        Ok(())
    }
}

/// Which tunnel the reach agent wants to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectRouteRequest {
    pub service: String,
    /// Through a share: its join token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<String>,
    /// Only this member's service (clone, `reach: - teammate:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// How to reach the service's agent directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectRoute {
    pub candidates: Vec<Candidate>,
    /// The signed ticket ([`Ticket`]) to send with each tunnel request.
    pub ticket: String,
    /// Unix milliseconds: ask again before this.
    pub expires_at: i64,
    /// The exposing agent's member: its certificate must name it ([`agent_name`]).
    pub owner_id: i64,
    pub owner: String,
}

/// What a ticket allows: `member` (the reach agent's) may open tunnels to `service` of `owner`,
/// through `share` when set, until `expires_at` (unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub workspace: i64,
    pub member: i64,
    pub owner: i64,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<i64>,
    /// When the share ends (unix milliseconds): the exposing agent cuts its tunnels then, by its
    /// own clock, even when the hub is unreachable at that moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_expires_at: Option<i64>,
    pub expires_at: i64,
}

/// Hub → agent on a [`DIRECT_WATCH_PATH`] stream: `member` was removed; its agents are no longer
/// the workspace's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberGone {
    pub member: i64,
}

/// Hub → exposing agent: refuse and cut direct tunnels of this member, or through this share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_ip_and_port_only_and_bounded() {
        let ok = Candidates { candidates: vec![Candidate::Tcp { addr: "10.0.0.2:7000".into() }] };
        assert!(ok.check().is_ok());
        let bad_ones = ["example.com:80", "10.0.0.2", "", "10.0.0.2:99999", "10.0.0.2:0", "0.0.0.0:7000", "[::]:7000"];
        for bad in bad_ones.into_iter().chain(["224.0.0.1:7000", "[ff02::1]:7000", "255.255.255.255:7000"]) {
            let c = Candidates { candidates: vec![Candidate::Tcp { addr: bad.into() }] };
            assert!(c.check().is_err(), "{bad}");
        }
        let many = Candidates { candidates: vec![Candidate::Tcp { addr: "[::1]:1".into() }; MAX_CANDIDATES + 1] };
        assert!(many.check().is_err());
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(json, r#"{"candidates":[{"kind":"tcp","addr":"10.0.0.2:7000"}]}"#);
        let future: Candidates = serde_json::from_str(r#"{"candidates":[{"kind":"quic","addr":"x"}]}"#).unwrap();
        assert_eq!(future.candidates, [Candidate::Unknown]);
        assert!(future.check().is_ok());
    }

    #[test]
    fn only_dialable_tcp_candidates_have_an_address() {
        let tcp = |addr: &str| Candidate::Tcp { addr: addr.into() };
        assert_eq!(tcp("10.0.0.2:7000").tcp_addr(), Some("10.0.0.2:7000".parse().unwrap()));
        assert_eq!(tcp("[fe80::1]:7000").tcp_addr(), Some("[fe80::1]:7000".parse().unwrap()));
        for bad in ["db.internal:7000", "0.0.0.0:7000", "10.0.0.2:0", "239.1.1.1:7000"] {
            assert_eq!(tcp(bad).tcp_addr(), None, "{bad}");
        }
        assert_eq!(Candidate::Unknown.tcp_addr(), None);
        assert_eq!(dialable("example.com:80"), Err("is not an IP address and port"));
    }
}
