//! Where the agent keeps its state: `PCONNECT_HOME` when set; otherwise the platform's directories
//! (`$XDG_CONFIG_HOME/pconnect` for the login and `$XDG_DATA_HOME/pconnect/hub` for the embedded
//! hub on Linux, `~/Library/Application Support/pconnect` on macOS). A `~/.pconnect` left by an
//! older version is moved there once (a symlink stays behind for processes still using it).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Reads an environment variable (the process's, or a test's).
type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The agent's state directory.
pub fn agent_home() -> Result<PathBuf> {
    agent_home_in(&process_env)
}

/// The embedded local hub's data dir: inside `PCONNECT_HOME` when set (so separate homes get separate
/// hubs), else under the platform's data directory.
pub fn embedded_hub_dir() -> Result<PathBuf> {
    embedded_hub_dir_in(&process_env)
}

fn agent_home_in(env: Env<'_>) -> Result<PathBuf> {
    if let Some(dir) = env("PCONNECT_HOME") {
        return Ok(PathBuf::from(dir));
    }
    let home = user_home(env)?;
    let dir = platform_config(env, &home).join("pconnect");
    let legacy = home.join(".pconnect");
    if !dir.exists() && legacy.is_dir() && !legacy.is_symlink() {
        move_legacy(&legacy, &dir);
    }
    Ok(dir)
}

fn embedded_hub_dir_in(env: Env<'_>) -> Result<PathBuf> {
    if env("PCONNECT_HOME").is_some() {
        return Ok(agent_home_in(env)?.join("local-hub"));
    }
    let home = user_home(env)?;
    Ok(platform_data(env, &home).join("pconnect/hub"))
}

/// Moves `~/.pconnect` to its new place; on failure (another filesystem, permissions) the old
/// directory stays where it is and the new one starts empty but for what is moved later.
fn move_legacy(legacy: &Path, dir: &Path) {
    if let Some(parent) = dir.parent()
        && std::fs::create_dir_all(parent).is_err()
    {
        return;
    }
    match std::fs::rename(legacy, dir) {
        Ok(()) => {
            let _ = std::os::unix::fs::symlink(dir, legacy);
            tracing::info!(from = %legacy.display(), to = %dir.display(), "moved the agent's state");
        }
        Err(e) => tracing::warn!(from = %legacy.display(), error = %e, "could not move the agent's state"),
    }
}

fn platform_config(env: Env<'_>, home: &Path) -> PathBuf {
    if cfg!(target_os = "macos") {
        return home.join("Library/Application Support");
    }
    env("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).unwrap_or_else(|| home.join(".config"))
}

fn platform_data(env: Env<'_>, home: &Path) -> PathBuf {
    if cfg!(target_os = "macos") {
        return home.join("Library/Application Support");
    }
    env("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).unwrap_or_else(|| home.join(".local/share"))
}

fn user_home(env: Env<'_>) -> Result<PathBuf> {
    env("HOME")
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn env_of(vars: Vec<(&'static str, PathBuf)>) -> impl Fn(&str) -> Option<OsString> {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone().into_os_string())
    }

    #[test]
    fn xdg_directories_unless_pconnect_home_says_otherwise() {
        let home = tempfile::tempdir().unwrap();
        let env = env_of(vec![("HOME", home.path().to_path_buf())]);
        assert_eq!(agent_home_in(&env).unwrap(), home.path().join(".config/pconnect"));
        assert_eq!(embedded_hub_dir_in(&env).unwrap(), home.path().join(".local/share/pconnect/hub"));
        let xdg = env_of(vec![("HOME", home.path().to_path_buf()), ("XDG_CONFIG_HOME", home.path().join("cfg"))]);
        assert_eq!(agent_home_in(&xdg).unwrap(), home.path().join("cfg/pconnect"));
        let own = env_of(vec![("HOME", home.path().to_path_buf()), ("PCONNECT_HOME", home.path().join("mine"))]);
        assert_eq!(agent_home_in(&own).unwrap(), home.path().join("mine"));
        assert_eq!(embedded_hub_dir_in(&own).unwrap(), home.path().join("mine/local-hub"));
    }

    #[test]
    fn an_old_home_is_moved_once_and_left_as_a_symlink() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".pconnect")).unwrap();
        std::fs::write(home.path().join(".pconnect/login.json"), "{}").unwrap();
        let env = env_of(vec![("HOME", home.path().to_path_buf())]);
        let dir = agent_home_in(&env).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("login.json")).unwrap(), "{}");
        assert!(home.path().join(".pconnect").is_symlink());
        assert_eq!(std::fs::read_to_string(home.path().join(".pconnect/login.json")).unwrap(), "{}");
        // A second call finds the new place and moves nothing.
        assert_eq!(agent_home_in(&env).unwrap(), dir);
    }
}
