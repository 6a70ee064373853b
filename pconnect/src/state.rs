//! The agent's login: which hub, which token, which certificate it pinned. Kept in
//! `$PCONNECT_HOME/agent.json`, mode 0600.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use pconnect_link::fsutil;
use serde::{Deserialize, Serialize};

const FILE: &str = "agent.json";

/// A saved login.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// `https://host:port` of the hub's agent port.
    pub hub: String,
    pub token: String,
    /// Pinned `SHA256:...` fingerprint of the hub's key (older logins: of its certificate); `None`
    /// with `ca` set, or for a hub whose certificate the system trusts.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// A CA certificate (PEM) to verify the hub with instead of pinning.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    pub member: String,
    pub workspace: String,
    /// The login is to the embedded local hub (its address is read from the hub's state file).
    #[serde(default)]
    pub embedded: bool,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("hub", &self.hub)
            .field("token", &"<redacted>")
            .field("fingerprint", &self.fingerprint)
            .field("member", &self.member)
            .field("embedded", &self.embedded)
            .finish()
    }
}

impl Login {
    /// The saved login in `home`, if any.
    pub fn load(home: &Path) -> Result<Option<Self>> {
        let path = home.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let login = serde_json::from_str(&text).with_context(|| {
            format!("{} is damaged: run `connect logout` and `connect login` again", path.display())
        })?;
        Ok(Some(login))
    }

    /// Saves the login in `home` (0600, atomically).
    pub fn save(&self, home: &Path) -> Result<()> {
        fsutil::create_private_dir(home)?;
        let json = serde_json::to_vec_pretty(self)?;
        fsutil::write_private(&home.join(FILE), &json)
    }

    /// Forgets the login in `home`; whether there was one.
    pub fn remove(home: &Path) -> Result<bool> {
        match std::fs::remove_file(home.join(FILE)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

const SHARE_CODES_FILE: &str = "shares.json";

/// Codes of the shares this agent created. The hub keeps only keyed hashes of codes, so the
/// creator's machine is the one place that can show a code again (`connect share --list`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ShareCodes {
    /// `"<hub url>#<share id>"` -> code.
    codes: std::collections::BTreeMap<String, String>,
}

impl ShareCodes {
    pub fn load(home: &Path) -> Self {
        std::fs::read(home.join(SHARE_CODES_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn get(&self, hub: &str, id: i64) -> Option<&str> {
        self.codes.get(&format!("{hub}#{id}")).map(String::as_str)
    }

    /// Remembers a code and saves the file (0600).
    pub fn remember(home: &Path, hub: &str, id: i64, code: &str) -> Result<()> {
        let mut codes = Self::load(home);
        codes.codes.insert(format!("{hub}#{id}"), code.to_string());
        fsutil::create_private_dir(home)?;
        fsutil::write_private(&home.join(SHARE_CODES_FILE), &serde_json::to_vec_pretty(&codes)?)
    }

    /// Forgets a code (after a revoke).
    pub fn forget(home: &Path, code: &str) -> Result<()> {
        let mut codes = Self::load(home);
        codes.codes.retain(|_, c| c != code);
        fsutil::write_private(&home.join(SHARE_CODES_FILE), &serde_json::to_vec_pretty(&codes)?)
    }
}
