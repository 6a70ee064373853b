//! How the agent trusts its hub, checked before any secret is sent:
//!
//! - a certificate valid for the hub's name under the system's trust store needs no pin at all;
//! - otherwise the hub's public key (SPKI) must match the pin saved at login (`SHA256:…`, as the
//!   hub prints at start), so a renewed certificate with the same key keeps working;
//! - or the chain must verify against a CA file given with `--ca`.
//!
//! First login pins only what the user confirmed: `connect login --fingerprint`, a yes on the
//! terminal, or `--trust-on-first-use`; a probe handshake shows the key before any token is sent.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};
use pconnect_link::tls::{fingerprint, provider, spki_fingerprint};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// How to check the hub's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Login probe: accept any certificate and report what it was. The caller closes the
    /// connection without sending anything.
    Probe,
    /// A certificate valid under the system's trust store, or else one with this public key
    /// (`SHA256:` of the SPKI; a pin of the whole certificate from older logins also matches).
    Pinned(String),
    /// Only a certificate valid under the system's trust store.
    System,
    /// Verify the chain against this CA certificate (PEM file).
    Ca(std::path::PathBuf),
}

/// What the hub presented in a handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// `SHA256:` of the certificate's public key: what the hub prints and what is pinned.
    pub key: String,
    /// Whether the certificate is valid for the hub's name under the system's trust store.
    pub publicly_trusted: bool,
}

/// A TLS client config for dialing the hub with `alpn` (TLS 1.3, records sealed by
/// `pconnect_link::sealed`). `seen` receives what the hub presented, so a pin mismatch (or a first
/// login) can show the key.
pub fn client_config(trust: &Trust, alpn: &[u8], seen: Arc<Mutex<Option<Seen>>>) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut config = match trust {
        Trust::Ca(path) => builder.with_root_certificates(ca_roots(path)?).with_no_client_auth(),
        Trust::Probe | Trust::Pinned(_) | Trust::System => {
            let pin = match trust {
                Trust::Pinned(pin) => Pin::Key(pin.clone()),
                Trust::Probe => Pin::AcceptAny,
                _ => Pin::None,
            };
            let verifier = HubVerifier { pin, seen, public: system_verifier(&provider), provider };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    pconnect_link::sealed::prepare_client(&mut config);
    Ok(Arc::new(config))
}

fn ca_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read CA certificate {}: expected a PEM file", path.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    anyhow::ensure!(added > 0, "no usable CA certificate in {}", path.display());
    Ok(roots)
}

/// The platform's trust store (loaded once: the OS store, or `SSL_CERT_FILE`/`SSL_CERT_DIR`);
/// `None` when it holds nothing.
pub(crate) fn system_roots() -> Option<Arc<RootCertStore>> {
    static ROOTS: OnceLock<Option<Arc<RootCertStore>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            (!roots.is_empty()).then(|| Arc::new(roots))
        })
        .clone()
}

/// The system's trust store as a verifier; `None` when the system has none.
fn system_verifier(provider: &Arc<CryptoProvider>) -> Option<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(system_roots()?, provider.clone()).build().ok()
}

#[derive(Debug)]
enum Pin {
    /// Probe: anything goes (nothing is sent on this connection).
    AcceptAny,
    /// Publicly trusted certificates only.
    None,
    /// Publicly trusted, or this key.
    Key(String),
}

/// Checks the hub's certificate: publicly trusted for its name, or pinned by key (and the handshake
/// signature made with that key, in both cases).
#[derive(Debug)]
struct HubVerifier {
    pin: Pin,
    seen: Arc<Mutex<Option<Seen>>>,
    public: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for HubVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let key = spki_fingerprint(end_entity).map_err(|e| Error::General(format!("unreadable certificate: {e}")))?;
        let publicly_trusted = self
            .public
            .as_ref()
            .is_some_and(|v| v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now).is_ok());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen { key: key.clone(), publicly_trusted });
        let pinned = |pin: &str| pin == key || pin == fingerprint(end_entity);
        match &self.pin {
            Pin::AcceptAny => Ok(ServerCertVerified::assertion()),
            _ if publicly_trusted => Ok(ServerCertVerified::assertion()),
            Pin::Key(pin) if pinned(pin) => Ok(ServerCertVerified::assertion()),
            Pin::Key(_) => Err(Error::General("hub certificate changed".into())),
            Pin::None => Err(Error::General("hub certificate is not trusted by this system".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
