//! The hub's TLS identity: a self-signed certificate made once and kept in the data dir (or a provided
//! one), its key fingerprint (what agents pin), and the rustls server configs (agent port with both
//! ALPN roles; ingress with h2 and http/1.1). Provider and fingerprints are the link crate's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use pconnect_link::fsutil;
use pconnect_link::tls::{fingerprint, provider, spki_fingerprint};
use pconnect_proto::wire::{ALPN_FORWARD, ALPN_REVERSE};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Certificate chain and key the hub presents.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads a provided PEM certificate chain and key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read certificate {}: expected a PEM file", cert.display()))?;
        if chain.is_empty() {
            anyhow::bail!("no certificate found in {}: expected a PEM file", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("cannot read private key {}: expected a PEM file", key.display()))?;
        Ok(Self { chain, key })
    }

    /// Reads a PEM certificate chain followed by its key from one text (`what` names it in errors).
    pub fn from_pem_text(pem: &str, what: &str) -> Result<Self> {
        let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{what}: the certificate does not parse"))?;
        anyhow::ensure!(!chain.is_empty(), "{what}: no certificate found");
        let key =
            PrivateKeyDer::from_pem_slice(pem.as_bytes()).with_context(|| format!("{what}: the key does not parse"))?;
        Ok(Self { chain, key })
    }

    /// The self-signed identity of a cluster: the one kept in the store, or — when this replica
    /// is the first — the one in `data_dir` (a hub moved in from SQLite keeps the key its agents
    /// pinned), else a new one. Every replica then presents the same certificate.
    pub async fn shared(store: &dyn crate::store::ClusterStore, data_dir: &Path, domain: &str) -> Result<Self> {
        let (cert_path, key_path) = self_signed_paths(data_dir);
        let fresh = if cert_path.exists() && key_path.exists() {
            format!("{}{}", std::fs::read_to_string(&cert_path)?, std::fs::read_to_string(&key_path)?)
        } else {
            let (cert, key) = generate_pem(domain)?;
            format!("{cert}{key}")
        };
        let pem = store.shared_value(SHARED_IDENTITY, &fresh).await?;
        Self::from_pem_text(&pem, "the cluster's hub certificate in the store")
    }

    /// Loads the hub's self-signed certificate from `data_dir`, generating it on first start.
    pub fn self_signed(data_dir: &Path, domain: &str) -> Result<Self> {
        let (cert_path, key_path) = self_signed_paths(data_dir);
        if !cert_path.exists() || !key_path.exists() {
            generate(&cert_path, &key_path, domain)?;
        }
        Self::from_pem_files(&cert_path, &key_path)
    }

    /// The private key of the leaf certificate.
    pub(crate) fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// `SHA256:AB:CD:...` of the leaf certificate's public key (SPKI): what agents pin, so a
    /// renewed certificate with the same key keeps working.
    pub fn fingerprint(&self) -> String {
        spki_fingerprint(&self.chain[0]).unwrap_or_else(|_| fingerprint(&self.chain[0]))
    }

    /// The rustls server config of the agent port (TLS 1.3, records sealed by
    /// `pconnect_link::sealed`), offering both link roles by ALPN.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .context("the hub certificate and key do not match")?;
        config.alpn_protocols = vec![ALPN_FORWARD.to_vec(), ALPN_REVERSE.to_vec()];
        pconnect_link::sealed::prepare_server(&mut config);
        Ok(Arc::new(config))
    }
}

impl Identity {
    /// The rustls server config of the HTTPS ingress: HTTP/2 and HTTP/1.1 by ALPN.
    pub fn ingress_config(&self) -> Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .context("the hub certificate and key do not match")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("hub-cert.pem"), data_dir.join("hub-key.pem"))
}

/// The store setting holding a cluster's self-signed certificate and key (PEM).
const SHARED_IDENTITY: &str = "hub_identity";

fn generate(cert_path: &Path, key_path: &Path, domain: &str) -> Result<()> {
    let (cert, key) = generate_pem(domain)?;
    fsutil::write_private(key_path, key.as_bytes())?;
    fsutil::write_private(cert_path, cert.as_bytes())?;
    Ok(())
}

/// A new self-signed certificate for the hub's names, and its key, as PEM.
fn generate_pem(domain: &str) -> Result<(String, String)> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if domain != "localhost" {
        names.push(domain.to_string());
        names.push(format!("*.{domain}"));
    }
    self_signed_pem(names)
}

/// A new self-signed certificate for `names` and its key, as PEM.
pub(crate) fn self_signed_pem(names: Vec<String>) -> Result<(String, String)> {
    let certified = rcgen::generate_simple_self_signed(names).context("cannot generate a self-signed certificate")?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pconnect_link::tls::normalize_fingerprint;

    #[test]
    fn self_signed_identity_is_made_once_and_builds_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::self_signed(dir.path(), "localhost").unwrap();
        let again = Identity::self_signed(dir.path(), "localhost").unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert!(first.fingerprint().starts_with("SHA256:"));
        assert_ne!(first.fingerprint(), fingerprint(&first.chain[0]), "the pin is the key's, not the certificate's");
        let typed = first.fingerprint().to_lowercase().replace(':', "").replacen("sha256", "sha256:", 1);
        assert_eq!(normalize_fingerprint(&typed), Some(first.fingerprint()));
        assert_eq!(normalize_fingerprint("SHA256:AB"), None);
        let config = first.server_config().unwrap();
        assert_eq!(config.alpn_protocols.len(), 2);
    }
}
