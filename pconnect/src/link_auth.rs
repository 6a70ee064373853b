//! Basic-auth credentials of public links, on the agent: read from `PCONNECT_LINK_AUTH` or asked
//! for on the terminal (never taken from argv, where any local user's `ps` sees them), checked, and
//! hashed with a fresh random salt (argon2id) before anything leaves the machine. The hub stores
//! and verifies only the hash.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use pconnect_proto::link;
use ring::rand::{SecureRandom, SystemRandom};

/// The environment variable `--auth` reads `user:password` from.
pub(crate) const AUTH_ENV: &str = "PCONNECT_LINK_AUTH";

/// `user:password` for `--auth`: from [`AUTH_ENV`], else asked for on the terminal; refused when
/// neither is there.
pub(crate) fn credentials_for_flag() -> Result<String> {
    if let Ok(credentials) = std::env::var(AUTH_ENV) {
        link::check_credentials(&credentials).with_context(|| format!("{AUTH_ENV} is not user:password"))?;
        return Ok(credentials);
    }
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "--auth needs the credentials in {AUTH_ENV}=user:password (there is no terminal to ask on)"
    );
    let credentials = rpassword::prompt_password("Link credentials (user:password, not shown): ")
        .context("cannot read from the terminal")?;
    link::check_credentials(&credentials)?;
    Ok(credentials)
}

/// The salted argon2id hash the hub stores for `credentials`.
pub(crate) fn hash(credentials: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| anyhow::anyhow!("the OS random source failed"))?;
    Ok(link::hash_credentials(credentials, &salt)?)
}
