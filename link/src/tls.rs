//! TLS both sides share: the one crypto provider (ring, passed explicitly, never a process default)
//! and the fingerprints agents pin: of a certificate's public key (what the hub prints and agents
//! pin, unchanged by a renewal that keeps the key) and, for old pins, of the whole certificate.

use std::sync::Arc;

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;

/// The crypto provider every TLS config of pconnect uses: ring's suites with AES-128-GCM first.
///
/// Every relayed byte is decrypted and encrypted again at the hub, so the suite is most of the
/// per-byte cost: AES-128-GCM runs about a third faster than ring's default first choice,
/// AES-256-GCM, with the same 128-bit security level against everything but a quantum search.
/// Clients list it first and rustls servers follow the client's order, so both links pick it.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| suite.suite() != CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// `SHA256:` followed by the colon-separated upper-case hex of the whole certificate's SHA-256
/// (what logins before key pinning saved).
pub fn fingerprint(cert: &[u8]) -> String {
    format_sha256(cert)
}

/// `SHA256:…` of a certificate's SubjectPublicKeyInfo: the key pin, unchanged by renewals that keep
/// the key.
pub fn spki_fingerprint(cert: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
    Ok(format_sha256(parsed.subject_public_key_info().as_ref()))
}

/// A fingerprint as people type it (`SHA256:ab:cd…`, `sha256:ABCD…`, bare hex) in the canonical
/// `SHA256:AB:CD:…` form, or `None` when it is not 32 bytes of hex.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let text = text.trim();
    let hex = match text.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &text[7..],
        _ => text,
    };
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<String> =
        digits.as_bytes().chunks(2).map(|pair| String::from_utf8_lossy(pair).to_uppercase()).collect();
    Some(format!("SHA256:{}", bytes.join(":")))
}

fn format_sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    format!("SHA256:{}", hex.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_128_gcm_comes_first_and_nothing_is_dropped() {
        let ours = provider();
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(ours.cipher_suites[0].suite(), CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut ours: Vec<_> = ours.cipher_suites.iter().map(|suite| suite.suite()).collect();
        let mut ring: Vec<_> = ring.cipher_suites.iter().map(|suite| suite.suite()).collect();
        ours.sort_by_key(|suite| u16::from(*suite));
        ring.sort_by_key(|suite| u16::from(*suite));
        assert_eq!(ours, ring);
    }

    #[test]
    fn typed_fingerprints_are_normalised() {
        let canonical = format!("SHA256:{}", ["AB"; 32].join(":"));
        assert_eq!(normalize_fingerprint(&canonical.to_lowercase()), Some(canonical.clone()));
        assert_eq!(normalize_fingerprint(&"ab".repeat(32)), Some(canonical));
        assert_eq!(normalize_fingerprint("SHA256:AB"), None);
        assert!(fingerprint(b"x").starts_with("SHA256:"));
    }
}
