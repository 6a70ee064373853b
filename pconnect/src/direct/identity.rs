//! This agent's identity on the direct path: an Ed25519 key it makes itself (never sent
//! anywhere) and the short-lived certificate the hub's workspace CA issued for it, renewed at
//! half-life. Both the direct listener (server) and the direct dialer (client) present it, and
//! both trust only the workspace CA.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pconnect_proto::direct::{ALPN_DIRECT, DirectCert, DirectCertRequest};
use pconnect_proto::rpc;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::link::forward::ForwardLink;

/// What the workspace CA said about this agent, and the TLS configs built from it.
pub(crate) struct Issued {
    pub(crate) cert: DirectCert,
    pub(crate) server: Arc<ServerConfig>,
    pub(crate) client: Arc<ClientConfig>,
    /// The CA's ticket key (Ed25519, raw).
    pub(crate) ca_key: Vec<u8>,
    /// How long the hub's certificates live (this one's, counted when it arrived).
    pub(crate) lifetime: Duration,
}

/// The key and the current certificate.
pub(crate) struct Identity {
    pkcs8: Vec<u8>,
    current: Mutex<Arc<Issued>>,
}

impl Identity {
    /// Makes a key and gets it certified through `link`; keeps the certificate renewed until
    /// `cancel`.
    pub(crate) async fn obtain(link: ForwardLink, cancel: CancellationToken) -> Result<Arc<Identity>> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot make a key"))?
            .as_ref()
            .to_vec();
        let issued = certify(&link, &pkcs8).await?;
        let identity = Arc::new(Identity { pkcs8, current: Mutex::new(Arc::new(issued)) });
        tokio::spawn(renew(identity.clone(), link, cancel));
        Ok(identity)
    }

    /// An identity that is never renewed (tests).
    #[cfg(test)]
    pub(crate) fn fixed(pkcs8: Vec<u8>, issued: Issued) -> Identity {
        Identity { pkcs8, current: Mutex::new(Arc::new(issued)) }
    }

    pub(crate) fn current(&self) -> Arc<Issued> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Least wait between renewals (a hub may issue certificates of a few seconds).
const MIN_RENEW_WAIT: Duration = Duration::from_secs(1);
/// Least wait before trying again after a renewal failed (the hub is away, say).
const RENEW_RETRY: Duration = Duration::from_secs(5);

async fn renew(identity: Arc<Identity>, link: ForwardLink, cancel: CancellationToken) {
    let mut failed = false;
    loop {
        let left = identity.current().cert.expires_at - pconnect_proto::clock::now();
        let floor = if failed { RENEW_RETRY } else { MIN_RENEW_WAIT };
        let wait = Duration::from_secs(u64::try_from(left / 2).unwrap_or(0)).max(floor);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match certify(&link, &identity.pkcs8).await {
            Ok(issued) => {
                *identity.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(issued);
                failed = false;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not renew the direct-path certificate");
                failed = true;
            }
        }
    }
}

async fn certify(link: &ForwardLink, pkcs8: &[u8]) -> Result<Issued> {
    let key = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| anyhow::anyhow!("our own key is unreadable"))?;
    let request = DirectCertRequest { public_key: STANDARD.encode(key.public_key().as_ref()) };
    let cert = link.call::<rpc::DirectCertCall>(&request).await.context("getting a direct-path certificate")?;
    issued(cert, pkcs8)
}

/// The TLS configs of a certificate the hub issued for the key `pkcs8`.
pub(crate) fn issued(cert: DirectCert, pkcs8: &[u8]) -> Result<Issued> {
    let leaf = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).context("the issued certificate")?;
    let ca_der = CertificateDer::from_pem_slice(cert.ca_pem.as_bytes()).context("the workspace CA")?;
    let ca_key = STANDARD.decode(&cert.ca_key).map_err(|e| anyhow::anyhow!("the workspace CA key: {e}"))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca_der.clone()).context("the workspace CA as a root")?;
    let roots = Arc::new(roots);
    let chain = vec![leaf, ca_der];
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec()));
    let provider = pconnect_link::tls::provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key())?;
    server.alpn_protocols = vec![ALPN_DIRECT.to_vec()];
    pconnect_link::sealed::prepare_server(&mut server);
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key())?;
    client.alpn_protocols = vec![ALPN_DIRECT.to_vec()];
    pconnect_link::sealed::prepare_client(&mut client);
    let lifetime = Duration::from_secs(u64::try_from(cert.expires_at - pconnect_proto::clock::now()).unwrap_or(0));
    Ok(Issued { cert, server: Arc::new(server), client: Arc::new(client), ca_key, lifetime })
}
