//! Member tokens: generation (256 random bits), hashing for storage, and the hash compare.

/// Prefix that makes a pconnect token recognisable in a secret scanner.
pub const TOKEN_PREFIX: &str = "pc_";

/// A fresh member token: `pc_` + 64 hex characters.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", pconnect_link::random::hex(32))
}

/// What the store keeps of a token. Tokens carry 256 bits, so a plain SHA-256 cannot be searched.
pub fn token_hash(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 3 + 64);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
