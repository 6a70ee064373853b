//! The workspace certificate authority of the direct path. Its Ed25519 key is derived from the
//! hub's secret key (kept in the store, shared by every replica) and the workspace id, so it never
//! leaves the hub's store, every replica signs as the same CA, and nothing new is stored.
//!
//! The CA issues agents short-lived certificates for keys they made themselves (the name in each
//! says whose agent it is: `direct::agent_name`) and signs the tickets that authorize tunnels.

use std::time::Duration;

use pconnect_proto::direct::agent_name;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use ring::hkdf;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use crate::store::{MemberId, WorkspaceId};

/// Unix seconds as a certificate time (rcgen's, without naming the `time` crate).
macro_rules! time_at {
    ($unix:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(u64::try_from($unix).unwrap_or(0))
    };
}

/// The PKCS#8 v1 header of an Ed25519 private key; the 32-byte seed follows (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// One workspace's CA.
pub(crate) struct WorkspaceCa {
    workspace: WorkspaceId,
    /// Signs tickets.
    signer: Ed25519KeyPair,
    /// Signs certificates.
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM), the root every agent of the workspace trusts for direct links.
    pub(crate) cert_pem: String,
}

impl WorkspaceCa {
    /// The CA of `workspace`, from the hub's secret key.
    pub(crate) fn derive(secret: &[u8; 32], workspace: WorkspaceId) -> anyhow::Result<WorkspaceCa> {
        let seed = seed(secret, workspace);
        let signer = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| anyhow::anyhow!("bad CA seed"))?;
        let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
        pkcs8.extend_from_slice(&seed);
        let key = KeyPair::try_from(pkcs8.as_slice())?;
        let params = ca_params(workspace);
        let cert = params.self_signed(&key)?;
        Ok(WorkspaceCa { workspace, signer, issuer: Issuer::new(params, key), cert_pem: cert.pem() })
    }

    /// The key tickets are verified with (Ed25519, raw).
    pub(crate) fn public_key(&self) -> &[u8] {
        self.signer.public_key().as_ref()
    }

    pub(crate) fn ticket_signer(&self) -> &Ed25519KeyPair {
        &self.signer
    }

    /// A certificate for `member`'s agent key `public_key` (Ed25519, raw), valid for
    /// `lifetime` seconds from `now` (unix seconds); its PEM.
    pub(crate) fn issue(&self, member: MemberId, public_key: &[u8], now: i64, lifetime: i64) -> anyhow::Result<String> {
        anyhow::ensure!(public_key.len() == 32, "an Ed25519 public key is 32 bytes");
        let mut params = CertificateParams::new(vec![agent_name(self.workspace, member)])?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, agent_name(self.workspace, member));
        params.not_before = time_at!(now - 60);
        params.not_after = time_at!(now + lifetime);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params.signed_by(&AgentKey(public_key), &self.issuer)?;
        Ok(cert.pem())
    }
}

/// An agent's Ed25519 public key, as rcgen signs it into a certificate.
struct AgentKey<'a>(&'a [u8]);

impl PublicKeyData for AgentKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ED25519
    }
}

fn seed(secret: &[u8; 32], workspace: WorkspaceId) -> [u8; 32] {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"pconnect direct-path CA v1").extract(secret);
    let info = workspace.to_be_bytes();
    let info = [info.as_slice()];
    let okm = prk.expand(&info, Len).expect("32 bytes is a valid HKDF length");
    let mut seed = [0u8; 32];
    okm.fill(&mut seed).expect("32 bytes");
    seed
}

/// The CA certificate's fields: the same on every replica and every start.
fn ca_params(workspace: WorkspaceId) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("pconnect workspace {workspace} direct-path CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = time_at!(1_735_689_600_i64); // 2025-01-01
    params.not_after = time_at!(2_366_841_600_i64); // 2045-01-01
    params.serial_number = Some(SerialNumber::from_slice(&workspace.to_be_bytes()));
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_the_same_for_the_same_secret_and_workspace_and_differs_otherwise() {
        let a = WorkspaceCa::derive(&[7; 32], 1).unwrap();
        let b = WorkspaceCa::derive(&[7; 32], 1).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.cert_pem, b.cert_pem, "replicas present the same CA certificate");
        assert_ne!(a.public_key(), WorkspaceCa::derive(&[7; 32], 2).unwrap().public_key());
        assert_ne!(a.public_key(), WorkspaceCa::derive(&[8; 32], 1).unwrap().public_key());
    }

    #[test]
    fn a_certificate_is_issued_only_for_an_ed25519_key() {
        let ca = WorkspaceCa::derive(&[7; 32], 1).unwrap();
        let pem = ca.issue(5, &[9; 32], 1_800_000_000, 3600).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca.issue(5, &[9; 31], 1_800_000_000, 3600).is_err());
    }
}
