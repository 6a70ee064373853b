//! Random identifiers from the OS source.

use ring::rand::{SecureRandom, SystemRandom};

/// `n` random bytes as lowercase hex.
pub fn hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    SystemRandom::new().fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
