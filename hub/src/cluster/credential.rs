//! The cluster credential: one certificate and key, made by the first replica and kept in the
//! store, that every replica presents to the others and demands from them (mutual TLS, TLS 1.3).
//!
//! Whoever can read the store can already do anything a replica can, so the store is the right
//! place for it; nothing of it is ever passed in a flag. A peer is accepted only if it presents
//! exactly this certificate and proves it holds the key.

use std::sync::Arc;

use anyhow::{Context, Result};
use pconnect_link::tls::provider;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig, SignatureScheme};

use crate::tls::{Identity, self_signed_pem};

/// ALPN of the replica-to-replica link.
pub(crate) const ALPN_PEER: &[u8] = b"pconnect-peer/1";
/// The name replicas' certificate is made for and checked against.
pub(crate) const PEER_NAME: &str = "pconnect-cluster";

/// The certificate and key every replica of one cluster shares.
pub(crate) struct ClusterCredential {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl ClusterCredential {
    /// A fresh credential, as PEM (certificate, then key): what the first replica stores.
    pub(crate) fn generate_pem() -> Result<String> {
        let (cert, key) = self_signed_pem(vec![PEER_NAME.to_string()])?;
        Ok(format!("{cert}{key}"))
    }

    /// Reads a stored credential.
    pub(crate) fn from_pem(pem: &str) -> Result<ClusterCredential> {
        let identity = Identity::from_pem_text(pem, "the stored cluster credential")?;
        Ok(ClusterCredential { cert: identity.chain[0].clone(), key: identity.key().clone_key() })
    }

    /// What the peer port serves with: this credential, and only this credential from clients.
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let verifier = Arc::new(SameCertificate::new(self.cert.clone()));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .context("the cluster certificate and key do not match")?;
        config.alpn_protocols = vec![ALPN_PEER.to_vec()];
        pconnect_link::sealed::prepare_server(&mut config);
        Ok(Arc::new(config))
    }

    /// What a replica dials its peers with.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let verifier = Arc::new(SameCertificate::new(self.cert.clone()));
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())
            .context("the cluster certificate and key do not match")?;
        config.alpn_protocols = vec![ALPN_PEER.to_vec()];
        pconnect_link::sealed::prepare_client(&mut config);
        Ok(Arc::new(config))
    }
}

/// Accepts exactly one certificate (byte for byte), on either end of the handshake; the handshake
/// signature proves the peer holds its key.
#[derive(Debug)]
struct SameCertificate {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl SameCertificate {
    fn new(cert: CertificateDer<'static>) -> SameCertificate {
        SameCertificate { cert, provider: provider() }
    }

    fn check(&self, presented: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Result<(), Error> {
        if intermediates.is_empty() && presented.as_ref() == self.cert.as_ref() {
            Ok(())
        } else {
            Err(Error::General("not this cluster's certificate".into()))
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for SameCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity, intermediates).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for SameCertificate {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity, intermediates).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

#[cfg(test)]
mod tests {
    use pconnect_link::sealed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    async fn handshake(server: &ClusterCredential, client: &ClusterCredential) -> bool {
        let (near, far) = duplex(64 * 1024);
        let (server_config, client_config) = (server.server_config().unwrap(), client.client_config().unwrap());
        let name = ServerName::try_from(PEER_NAME).unwrap();
        let serve = async move {
            let mut tls = sealed::accept(server_config, far).await.ok()?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.ok()?;
            Some(byte[0])
        };
        let dial = async move {
            let mut tls = sealed::connect(client_config, name, near).await.ok()?;
            tls.write_all(b"x").await.ok()?;
            tls.flush().await.ok()?;
            Some(tls)
        };
        let (served, _dialed) = tokio::join!(serve, dial);
        served == Some(b'x')
    }

    #[tokio::test]
    async fn replicas_sharing_the_credential_connect_and_a_stranger_is_refused_both_ways() {
        let ours = ClusterCredential::from_pem(&ClusterCredential::generate_pem().unwrap()).unwrap();
        let same = ClusterCredential::from_pem(&ClusterCredential::generate_pem().unwrap()).unwrap();
        let stored = ClusterCredential::generate_pem().unwrap();
        let (a, b) = (ClusterCredential::from_pem(&stored).unwrap(), ClusterCredential::from_pem(&stored).unwrap());
        assert!(handshake(&a, &b).await, "two replicas with the stored credential could not connect");
        assert!(!handshake(&ours, &same).await, "a server accepted another cluster's certificate");
        assert!(!handshake(&a, &ours).await, "a stranger's client certificate was accepted");
        assert!(!handshake(&ours, &a).await, "a replica accepted a stranger posing as a peer");
    }

    #[test]
    fn a_damaged_credential_is_refused_with_a_reason() {
        let error = ClusterCredential::from_pem("not pem").err().unwrap();
        assert!(error.to_string().contains("cluster credential"), "{error}");
    }
}
