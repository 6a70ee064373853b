//! Dialing the hub: TCP, TLS with the pinned certificate, the hello, and the hub's answer. Every
//! failure becomes a [`DialError`] that says what happened and what to do.

use std::sync::{Arc, Mutex};

use pconnect_link::frames::{read_frame, write_frame};
use pconnect_link::tuning::HANDSHAKE_TIMEOUT;
use pconnect_proto::handshake::{Hello, Refusal, Reply, Role, Welcome};
use pconnect_proto::wire::{ALPN_FORWARD, ALPN_REVERSE};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::{Seen, Trust, client_config};

/// Default agent port of a hub URL without one.
pub const DEFAULT_HUB_PORT: u16 = 7779;

/// Where the hub is: `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubAddr {
    pub host: String,
    pub port: u16,
}

impl HubAddr {
    /// Parses `https://host[:port]` (a bare `host:port` is accepted too).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("https://").unwrap_or(url);
        anyhow::ensure!(!rest.contains("://"), "hub URL '{url}' must start with https://");
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => {
                let port = port.parse::<u16>().ok().filter(|p| *p > 0);
                let port = port.ok_or_else(|| anyhow::anyhow!("hub URL '{url}' has an invalid port"))?;
                (host, port)
            }
            _ => (rest, DEFAULT_HUB_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        anyhow::ensure!(!host.is_empty() && !host.contains('/'), "hub URL '{url}' has no host: use https://HOST:PORT");
        Ok(Self { host: host.to_string(), port })
    }

    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// What the agent needs to dial: address, token, trust.
#[derive(Clone)]
pub struct Credentials {
    pub hub: HubAddr,
    pub token: String,
    pub trust: Trust,
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot reach the hub at {url}: {cause}. Is the hub running and the address right?")]
    Unreachable { url: String, cause: String },
    #[error(
        "the hub at {url} presented a different certificate ({seen}) than the one pinned at login ({pinned}). \
         If the hub was reinstalled on purpose, run `connect login` again; otherwise someone may be intercepting the connection"
    )]
    CertificateChanged { url: String, pinned: String, seen: String },
    #[error(
        "the hub at {url} has a certificate this system does not trust (key {seen}): \
         run `connect login --fingerprint <the key the hub printed at start>`"
    )]
    Untrusted { url: String, seen: String },
    #[error("TLS with the hub at {url} failed: {cause}")]
    Tls { url: String, cause: String },
    #[error("the hub at {url} did not answer within {}s", HANDSHAKE_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("{0}")]
    Refused(Refusal),
}

impl DialError {
    /// Whether retrying later can succeed without the user doing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            DialError::Unreachable { .. } | DialError::Timeout { .. } => true,
            DialError::Refused(refusal) => refusal.is_retryable(),
            DialError::CertificateChanged { .. } | DialError::Untrusted { .. } | DialError::Tls { .. } => false,
        }
    }
}

/// A TLS connection to the hub whose hello was accepted.
pub type HubStream = pconnect_link::sealed::Sealed<TcpStream>;

/// Dials the hub and exchanges the hello.
pub async fn dial(creds: &Credentials, hello: &Hello) -> Result<(HubStream, Welcome), DialError> {
    let url = creds.hub.url();
    tokio::time::timeout(HANDSHAKE_TIMEOUT, dial_inner(creds, hello, &url))
        .await
        .unwrap_or(Err(DialError::Timeout { url }))
}

async fn dial_inner(creds: &Credentials, hello: &Hello, url: &str) -> Result<(HubStream, Welcome), DialError> {
    let unreachable = |cause: String| DialError::Unreachable { url: url.to_string(), cause };
    let tcp =
        TcpStream::connect((creds.hub.host.as_str(), creds.hub.port)).await.map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let alpn = match hello.role {
        Role::Forward => ALPN_FORWARD,
        Role::Reverse => ALPN_REVERSE,
    };
    let seen = Arc::new(Mutex::new(None));
    let config = client_config(&creds.trust, alpn, seen.clone())
        .map_err(|e| DialError::Tls { url: url.to_string(), cause: e.to_string() })?;
    let name = ServerName::try_from(creds.hub.host.clone())
        .map_err(|e| DialError::Tls { url: url.to_string(), cause: e.to_string() })?;
    let mut stream = match pconnect_link::sealed::connect(config, name, tcp).await {
        Ok(stream) => stream,
        Err(e) => return Err(tls_error(creds, url, &seen, e)),
    };
    write_frame(&mut stream, hello).await.map_err(|e| unreachable(e.to_string()))?;
    match read_frame::<_, Reply>(&mut stream).await {
        Ok(Reply::Welcome(welcome)) => Ok((stream, welcome)),
        Ok(Reply::Refusal(refusal)) => Err(DialError::Refused(refusal)),
        Err(e) => Err(unreachable(format!("the hub closed the connection during the hello ({e})"))),
    }
}

/// Completes a TLS handshake with the hub and reports its certificate, sending nothing: a first
/// login shows the key (or finds it publicly trusted) before any token leaves the machine.
pub async fn probe_certificate(hub: &HubAddr) -> Result<Seen, DialError> {
    let url = hub.url();
    let probe = async {
        let unreachable = |cause: String| DialError::Unreachable { url: url.clone(), cause };
        let tcp = TcpStream::connect((hub.host.as_str(), hub.port)).await.map_err(|e| unreachable(e.to_string()))?;
        let seen = Arc::new(Mutex::new(None));
        let config = client_config(&Trust::Probe, ALPN_FORWARD, seen.clone())
            .map_err(|e| DialError::Tls { url: url.clone(), cause: e.to_string() })?;
        let name = ServerName::try_from(hub.host.clone())
            .map_err(|e| DialError::Tls { url: url.clone(), cause: e.to_string() })?;
        let stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| DialError::Tls { url: url.clone(), cause: e.to_string() })?;
        drop(stream);
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        seen.ok_or_else(|| DialError::Tls { url: url.clone(), cause: "the hub presented no certificate".into() })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, probe).await.unwrap_or(Err(DialError::Timeout { url: hub.url() }))
}

/// A TLS failure is final only when TLS itself refused (rustls reports those as `InvalidData`); a
/// connection reset or closed mid-handshake (a hub restarting, an overflowing accept queue) is
/// retried like any unreachable hub.
fn tls_error(creds: &Credentials, url: &str, seen: &Mutex<Option<Seen>>, e: std::io::Error) -> DialError {
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match (&creds.trust, seen) {
        (Trust::Pinned(pinned), Some(seen)) if *pinned != seen.key && !seen.publicly_trusted => {
            DialError::CertificateChanged { url: url.to_string(), pinned: pinned.clone(), seen: seen.key }
        }
        (Trust::System, Some(seen)) if !seen.publicly_trusted => {
            DialError::Untrusted { url: url.to_string(), seen: seen.key }
        }
        _ if e.kind() != std::io::ErrorKind::InvalidData => DialError::Unreachable {
            url: url.to_string(),
            cause: format!("the connection broke during the TLS handshake ({e})"),
        },
        _ => DialError::Tls { url: url.to_string(), cause: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_cut_during_the_tls_handshake_is_retried_but_a_tls_refusal_is_not() {
        let creds = Credentials {
            hub: HubAddr::parse("https://127.0.0.1:1").unwrap(),
            token: String::new(),
            trust: Trust::Pinned("SHA256:AA".into()),
        };
        let seen = Mutex::new(None);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(tls_error(&creds, "u", &seen, reset).is_retryable());
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert!(tls_error(&creds, "u", &seen, eof).is_retryable());
        let refused = std::io::Error::new(std::io::ErrorKind::InvalidData, "invalid peer certificate");
        assert!(!tls_error(&creds, "u", &seen, refused).is_retryable());
        let changed = Mutex::new(Some(Seen { key: "SHA256:BB".to_string(), publicly_trusted: false }));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(tls_error(&creds, "u", &changed, reset), DialError::CertificateChanged { .. }));
    }

    #[test]
    fn hub_urls_parse() {
        assert_eq!(
            HubAddr::parse("https://127.0.0.1:41000").unwrap(),
            HubAddr { host: "127.0.0.1".into(), port: 41000 }
        );
        assert_eq!(HubAddr::parse("https://hub.example.com").unwrap().port, DEFAULT_HUB_PORT);
        assert_eq!(HubAddr::parse("https://[::1]:7779/").unwrap().host, "::1");
        assert!(HubAddr::parse("http://hub:1").is_err());
        assert!(HubAddr::parse("https://hub:0").is_err());
        assert!(HubAddr::parse("https://:80").is_err());
    }
}
