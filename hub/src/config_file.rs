//! `pconnect-hub serve --config hub.yml`: the same settings as the flags, in a file. One rule for
//! every setting: a flag beats its `PCONNECT_HUB_*` variable, which beats the file, which beats
//! the default. Keys are the flags' names in snake_case; unknown keys are refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

/// The file's settings (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HubFile {
    pub(crate) data: Option<PathBuf>,
    /// A `postgres://` URL (its password is better kept in PGPASSWORD or ~/.pgpass).
    pub(crate) store: Option<String>,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) http: Option<SocketAddr>,
    pub(crate) https: Option<SocketAddr>,
    pub(crate) metrics: Option<SocketAddr>,
    pub(crate) peer_listen: Option<SocketAddr>,
    pub(crate) advertise: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) header_timeout: Option<String>,
    pub(crate) grace: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_ip: Option<usize>,
    pub(crate) trust_proxy: Option<Vec<String>>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    /// `false`: agents never connect directly (`--no-direct`).
    pub(crate) direct: Option<bool>,
    /// Workspaces whose agents never connect directly (`--no-direct-in`).
    pub(crate) no_direct_in: Option<Vec<String>>,
    /// How long direct-path certificates are valid (`--direct-cert-lifetime`).
    pub(crate) direct_cert_lifetime: Option<String>,
}

impl HubFile {
    /// Reads and parses `path`; a syntax error or unknown key names its line and column.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the hub config file {}", path.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}. Keys are the `serve` flags in snake_case (listen, http, data, header_timeout, ...)",
                path.display()
            )
        })
    }
}

/// Whether the user set `id` on the command line or through its environment variable (then the
/// file must not override it).
pub(crate) fn set_explicitly(matches: Option<&ArgMatches>, id: &str) -> bool {
    matches
        .and_then(|m| m.value_source(id))
        .is_some_and(|source| matches!(source, ValueSource::CommandLine | ValueSource::EnvVariable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_parses_and_unknown_keys_are_refused_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("hub.yml");
        std::fs::write(
            &good,
            "data: /var/lib/pconnect-hub\nlisten: 0.0.0.0:7779\ngrace: 30s\ntrust_proxy: [10.0.0.0/8]\n\
             store: postgres://pconnect@db:5432/pconnect\npeer_listen: 10.0.0.5:7790\nadvertise: hub1:7790\n\
             direct_cert_lifetime: 30m\n",
        )
        .unwrap();
        let file = HubFile::load(&good).unwrap();
        assert_eq!(file.store.as_deref(), Some("postgres://pconnect@db:5432/pconnect"));
        assert_eq!(file.peer_listen, Some("10.0.0.5:7790".parse().unwrap()));
        assert_eq!(file.advertise.as_deref(), Some("hub1:7790"));
        assert_eq!(file.listen, Some("0.0.0.0:7779".parse().unwrap()));
        assert_eq!(file.grace.as_deref(), Some("30s"));
        assert_eq!(file.direct_cert_lifetime.as_deref(), Some("30m"));
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, "listen: 0.0.0.0:7779\nlsiten: 1.2.3.4:5\n").unwrap();
        let error = HubFile::load(&bad).unwrap_err().to_string();
        assert!(error.contains("lsiten") && error.contains("line 2"), "{error}");
    }
}
