//! Where the agent keeps its state: `PCONNECT_HOME` (default `~/.pconnect`) for the login, and the
//! embedded local hub's data dir.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The agent's state directory.
pub fn agent_home() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PCONNECT_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(user_home()?.join(".pconnect"))
}

/// The embedded local hub's data dir: inside `PCONNECT_HOME` when set (so separate homes get separate
/// hubs), else under the user's data directory.
pub fn embedded_hub_dir() -> Result<PathBuf> {
    if std::env::var_os("PCONNECT_HOME").is_some_and(|v| !v.is_empty()) {
        return Ok(agent_home()?.join("local-hub"));
    }
    let data = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => user_home()?.join(".local/share"),
    };
    Ok(data.join("pconnect/hub"))
}

fn user_home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set: set PCONNECT_HOME to the directory pconnect may keep its state in")
}

/// The OS user name, used as the member name on the embedded hub.
pub fn os_user() -> String {
    let raw = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "me".into());
    let clean: String =
        raw.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(64).collect();
    if clean.is_empty() { "me".into() } else { clean }
}
