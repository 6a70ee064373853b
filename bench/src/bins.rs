//! Locating the release binaries under test. The benchmark never builds them itself.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The command that builds what the benchmark runs.
pub(crate) const BUILD_COMMAND: &str = "cargo build --release --bins -p pconnect -p pconnect-hub";

/// Paths of the two product binaries.
#[derive(Debug, Clone)]
pub(crate) struct Bins {
    pub(crate) hub: PathBuf,
    pub(crate) connect: PathBuf,
}

/// Finds `connect` and `pconnect-hub` in `<target dir>/release` (`CARGO_TARGET_DIR`, relative to
/// the workspace root, or `<workspace>/target`), else next to this executable.
pub(crate) fn locate() -> Result<Bins> {
    let mut dirs = vec![target_dir().join("release")];
    if let Some(own) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf))
        && !dirs.contains(&own)
    {
        dirs.push(own);
    }
    for dir in &dirs {
        let bins = Bins { hub: dir.join("pconnect-hub"), connect: dir.join("connect") };
        if bins.hub.is_file() && bins.connect.is_file() {
            return Ok(bins);
        }
    }
    let tried: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "the release binaries `connect` and `pconnect-hub` were not found (looked in {}). \
         Build them first: cd {} && {BUILD_COMMAND}",
        tried.join(", "),
        workspace_root().display()
    )
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}
