//! How the agent trusts its hub: the certificate fingerprint pinned at login (trust on first use,
//! without prompting), or a real CA given with `--ca`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use pconnect_hub::tls::{fingerprint, provider};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// How to check the hub's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Accept any certificate and record its fingerprint (first login).
    FirstUse(Arc<Mutex<Option<String>>>),
    /// Accept only the certificate with this fingerprint.
    Pinned(String),
    /// Verify the chain against this CA certificate (PEM file).
    Ca(std::path::PathBuf),
}

/// A TLS client config for dialing the hub with `alpn`. `seen` receives the fingerprint the hub
/// presented, so a pin mismatch can be reported with both values.
pub fn client_config(trust: &Trust, alpn: &[u8], seen: Arc<Mutex<Option<String>>>) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let mut config = match trust {
        Trust::Ca(path) => builder.with_root_certificates(ca_roots(path)?).with_no_client_auth(),
        Trust::FirstUse(record) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier { pin: None, seen: record.clone(), provider }))
            .with_no_client_auth(),
        Trust::Pinned(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier { pin: Some(pin.clone()), seen, provider }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
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

/// Checks the leaf certificate's fingerprint (and the handshake signature made with its key).
#[derive(Debug)]
struct PinVerifier {
    pin: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let presented = fingerprint(end_entity);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(presented.clone());
        match &self.pin {
            Some(pin) if *pin != presented => Err(Error::General("hub certificate changed".into())),
            _ => Ok(ServerCertVerified::assertion()),
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
