//! The peer relays (rathole, bore), installed on demand with `cargo install --root <dir>` into a
//! directory next to the benchmark's own build (`<target>/bench-peers`) and reused afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report;

/// One relay to install.
struct Peer {
    /// Its name in the report.
    name: &'static str,
    /// The crate on crates.io.
    krate: &'static str,
    /// The executable it installs.
    bin: &'static str,
    /// Cargo features (without the defaults), when the defaults do not fit.
    features: Option<&'static str>,
}

/// rathole's tcp and noise transports, without the TLS and websocket ones that need OpenSSL.
const RATHOLE: Peer = Peer { name: "rathole", krate: "rathole", bin: "rathole", features: Some("server,client,noise") };
const BORE: Peer = Peer { name: "bore", krate: "bore-cli", bin: "bore", features: None };

/// The installed peers; `None` for each that could not be installed.
#[derive(Debug, Clone)]
pub(crate) struct PeerBins {
    pub(crate) dir: PathBuf,
    pub(crate) rathole: Option<PathBuf>,
    pub(crate) bore: Option<PathBuf>,
    /// `<crate> <version>` of each installed peer, as cargo recorded it.
    pub(crate) versions: Vec<String>,
    /// One line per peer that is missing, saying why.
    pub(crate) skipped: Vec<String>,
}

/// Finds or installs every peer. Installing needs the network, so the process re-executed in the
/// private network namespace passes `may_install = false` and only reuses what is there.
pub(crate) fn ensure(may_install: bool) -> PeerBins {
    let dir = dir();
    let mut skipped = Vec::new();
    let mut find = |peer: &Peer| match locate_or_install(peer, &dir, may_install) {
        Ok(bin) => Some(bin),
        Err(why) => {
            let line = format!("{}: {why}; skipped", peer.name);
            if may_install {
                report::line(&line);
            }
            skipped.push(line);
            None
        }
    };
    let rathole = find(&RATHOLE);
    let bore = find(&BORE);
    let record = std::fs::read_to_string(dir.join(".crates.toml")).unwrap_or_default();
    let installed = [(&RATHOLE, &rathole), (&BORE, &bore)];
    let versions = installed
        .into_iter()
        .filter(|(_, bin)| bin.is_some())
        .map(|(peer, _)| version(&record, peer.krate).unwrap_or_else(|| peer.krate.to_owned()))
        .collect();
    PeerBins { dir, rathole, bore, versions, skipped }
}

/// `<crate> <version>` from cargo's install record (`"rathole 0.5.0 (registry+…)" = ["rathole"]`).
fn version(crates_toml: &str, krate: &str) -> Option<String> {
    crates_toml.lines().find_map(|line| {
        let rest = line.strip_prefix('"')?.strip_prefix(krate)?.strip_prefix(' ')?;
        Some(format!("{krate} {}", rest.split_whitespace().next()?))
    })
}

/// `<target>/bench-peers`: this executable lives in `<target>/release`.
fn dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|target| target.join("bench-peers")))
        .unwrap_or_else(|| PathBuf::from("target/bench-peers"))
}

fn locate_or_install(peer: &Peer, dir: &Path, may_install: bool) -> Result<PathBuf, String> {
    let bin = dir.join("bin").join(peer.bin);
    // Why the last install failed, for the process re-executed in the namespace to report.
    let failure = dir.join(format!("{}.install-failed", peer.bin));
    if bin.is_file() {
        return Ok(bin);
    }
    if !may_install {
        let why = std::fs::read_to_string(&failure).unwrap_or_else(|_| "not installed".to_owned());
        return Err(why.trim().to_owned());
    }
    report::progress(&format!(
        "{}: installing into {} (cargo install {}; takes minutes, once)",
        peer.name,
        dir.display(),
        peer.krate
    ));
    // `--locked` first; the lock file of an older release can pin a dependency today's compiler
    // rejects (rathole 0.5.0 pins `time` 0.3.29), so then once more with fresh dependencies.
    let outcome = install(peer, dir, true).or_else(|_| install(peer, dir, false));
    let outcome = match outcome {
        Ok(()) if bin.is_file() => return Ok(bin),
        Ok(()) => format!("could not install ({} is missing after cargo install)", bin.display()),
        Err(why) => format!("could not install ({why})"),
    };
    // Best effort: without it the namespace's process only says "not installed".
    let _ = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&failure, &outcome));
    Err(outcome)
}

fn install(peer: &Peer, dir: &Path, locked: bool) -> Result<(), String> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("install").arg("--root").arg(dir);
    if locked {
        cmd.arg("--locked");
    }
    if let Some(features) = peer.features {
        cmd.args(["--no-default-features", "--features", features]);
    }
    cmd.arg(peer.krate);
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(failure_reason(&String::from_utf8_lossy(&out.stderr)))
}

/// The first `error` line cargo printed, else its last line.
fn failure_reason(stderr: &str) -> String {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.starts_with("error"))
        .or_else(|| lines().next_back())
        .unwrap_or("cargo install failed without a message")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::{failure_reason, version};

    #[test]
    fn reads_installed_versions() {
        let record = "[v1]\n\"bore-cli 0.6.0 (registry+https://github.com/rust-lang/crates.io-index)\" = [\"bore\"]\n\
                      \"rathole 0.5.0 (registry+https://github.com/rust-lang/crates.io-index)\" = [\"rathole\"]\n";
        assert_eq!(version(record, "rathole").as_deref(), Some("rathole 0.5.0"));
        assert_eq!(version(record, "bore-cli").as_deref(), Some("bore-cli 0.6.0"));
        assert_eq!(version(record, "bore"), None);
    }

    #[test]
    fn keeps_the_first_error_line() {
        let stderr = "    Updating crates.io index\nerror: could not find `ratholez` in registry\n\nerror: x\n";
        assert_eq!(failure_reason(stderr), "error: could not find `ratholez` in registry");
        assert_eq!(failure_reason("warning: a\nsomething odd\n"), "something odd");
        assert_eq!(failure_reason(""), "cargo install failed without a message");
    }
}
