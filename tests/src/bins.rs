//! Locating the workspace binaries under test, building them once per test process.
//!
//! The first call to [`bin`] runs `cargo build --workspace --all-targets` (with the selected
//! profile and target directory) so the binaries are never stale. Running this nested
//! build from inside `cargo test` does not deadlock: cargo releases the build-directory lock
//! before it runs the test executables.
//!
//! Environment:
//! - `PCONNECT_E2E_PROFILE`: `debug` (default) or `release` (or any custom cargo profile name).
//! - `PCONNECT_E2E_NO_BUILD=1`: skip the build, only check that the binaries exist.
//! - `CARGO_TARGET_DIR`: honoured (relative paths are taken relative to the workspace root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Name of the agent CLI binary (package `pconnect`).
pub const CONNECT: &str = "connect";
/// Name of the relay binary (package `pconnect-hub`).
pub const HUB: &str = "pconnect-hub";

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` or `<workspace root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { workspace_root().join(dir) }
        }
        _ => workspace_root().join("target"),
    }
}

/// Cargo profile name selected by `PCONNECT_E2E_PROFILE` (default `dev`).
fn profile() -> String {
    match std::env::var("PCONNECT_E2E_PROFILE") {
        Ok(p) if !p.is_empty() && p != "debug" => p,
        _ => "dev".to_owned(),
    }
}

/// Directory under the target dir holding the binaries of `profile`.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

/// Path of workspace binary `name` (`connect` or `pconnect-hub`).
///
/// Builds the workspace binaries once per process first (see the module docs).
///
/// # Panics
/// If the build fails or the binary does not exist; the message says what to do.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(build_bins) {
        panic!("{e}");
    }
    let profile = profile();
    let path = target_dir().join(profile_dir(&profile)).join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "binary `{name}` not found at {}; run `cargo build --workspace --bins{}` first",
        path.display(),
        match profile.as_str() {
            "dev" => String::new(),
            "release" => " --release".to_owned(),
            other => format!(" --profile {other}"),
        }
    );
    path
}

fn build_bins() -> Result<(), String> {
    if std::env::var_os("PCONNECT_E2E_NO_BUILD").is_some_and(|v| !v.is_empty() && v != "0") {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    // Cargo sets these for the test binary (its own package); passed on, build scripts that watch
    // them (ring's) would see a different environment than `cargo test` gave them and rerun, and
    // every test binary would rebuild half the graph. The nested build gets the outer environment.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let per_package =
            ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_", "CARGO_TARGET_TMPDIR"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
        if per_package || name == "OUT_DIR" {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(workspace_root())
        .args([
            // The same units `cargo test --workspace` builds, so features unify identically and
            // this is a no-op after it (building only the bins would resolve features differently
            // and rebuild half the graph on every test run).
            "build",
            "--workspace",
            "--all-targets",
            "--target-dir",
        ])
        .arg(target_dir());
    match profile().as_str() {
        "dev" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().map_err(|e| format!("failed to run `{cmd:?}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the binaries under test failed ({}): `{cmd:?}`\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
