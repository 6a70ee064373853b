//! Viewer tokens: 128 random bits as 26 lowercase base32 characters (`[a-z2-7]`), looked up by
//! their SHA-256 so the registry never compares secrets byte by byte.

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters of a token (128 bits, 5 bits each).
pub(crate) const TOKEN_LEN: usize = 26;

/// A fresh token.
pub(crate) fn generate() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).expect("the OS random source works");
    base32(&bytes)
}

/// The lookup key of a well-formed token; `None` for anything that cannot be one.
pub(crate) fn hash(token: &str) -> Option<[u8; 32]> {
    if !is_token(token) {
        return None;
    }
    digest(&SHA256, token.as_bytes()).as_ref().try_into().ok()
}

/// Whether `text` has the shape of a token.
pub(crate) fn is_token(text: &str) -> bool {
    text.len() == TOKEN_LEN && text.bytes().all(|b| ALPHABET.contains(&b))
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_26_base32_chars_and_differ() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(is_token(&a) && a != b);
        assert!(hash(&a).is_some() && hash("short").is_none() && hash(&a.to_uppercase()).is_none());
        // RFC 4648 test vector, lowercased and unpadded.
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }
}
