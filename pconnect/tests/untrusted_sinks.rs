//! The repo-wide check of where outside data can land (docs/security.md, "Where teammate data
//! lands"): every place in the agent, the hub, the capture parsers and the viewer that writes a
//! file, runs a shell, evaluates a template or builds HTML is listed here with what guards it. A
//! new such place fails this test until it is reviewed, guarded and added to the list and the doc.

use std::path::{Path, PathBuf};

/// Calls that turn data into a file, a process, a template or markup.
const SINKS: &[&str] = &[
    "render_str(",
    "add_template(",
    "Command::new(",
    "fs::write(",
    "write_private(",
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "eval(",
    "new Function",
    "text/html",
];

/// Reviewed sinks: (file, sink) and what keeps outside data out of it or harmless in it.
const REVIEWED: &[(&str, &str, &str)] = &[
    (
        "pconnect/src/dev/envfile.rs",
        "add_template(",
        "the template is the embedded one or the project's own file; values are data, quoted by the dotenv filter",
    ),
    (
        "pconnect/src/commands/init.rs",
        "fs::write(",
        "writes the user's own starter file from probed ports and fixed names",
    ),
    (
        "pconnect/src/embedded.rs",
        "Command::new(",
        "starts the agent's own binary for the local hub; no outside input in argv",
    ),
    (
        "pconnect/src/commands/detach.rs",
        "Command::new(",
        "re-runs the agent's own binary with the user's own arguments",
    ),
    ("pconnect/src/home.rs", "fs::write(", "only its unit test, writing a fake old login into a temporary HOME"),
    (
        "link/src/cli_docs.rs",
        "fs::write(",
        "man pages rendered from the binary's own clap definition, into the directory the user names",
    ),
    ("pconnect/src/state.rs", "write_private(", "the agent's own state (login, share codes), serialized JSON"),
    ("pconnect/src/embedded.rs", "write_private(", "the local hub's addresses, serialized JSON"),
    ("hub/src/tls.rs", "write_private(", "the hub's generated key and certificate"),
    ("link/src/fsutil.rs", "write_private(", "its definition: 0600, atomic rename"),
    ("hub/src/ingress/pages.rs", "text/html", "fixed pages; titles and details are HTML-escaped"),
    ("hub/src/ingress/mod.rs", "text/html", "only read from the client's Accept header, never written"),
    (
        "hub/src/features/debug/http.rs",
        "text/html",
        "the embedded viewer page; the only substitution is the token, checked to be base32 before the lookup",
    ),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // `src/**/tests/` folders hold `#[cfg(test)]` modules: tests may write files.
            if path.file_name().is_some_and(|n| n != "tests") {
                files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs" || e == "js" || e == "html") {
            out.push(path);
        }
    }
}

/// The part of a Rust file before its `#[cfg(test)]` module (tests may write files and run shells).
fn non_test(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

#[test]
fn every_place_outside_data_could_land_is_reviewed() {
    let root = workspace();
    let mut all = Vec::new();
    for crate_dir in ["pconnect/src", "hub/src", "link/src", "capture/src", "proto/src"] {
        files(&root.join(crate_dir), &mut all);
    }
    let mut unreviewed = Vec::new();
    let mut used = vec![false; REVIEWED.len()];
    for path in &all {
        let rel = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let text = if rel.ends_with(".rs") { non_test(&text) } else { &text };
        for sink in SINKS {
            if !text.contains(sink) {
                continue;
            }
            match REVIEWED.iter().position(|(file, s, _)| *file == rel && s == sink) {
                Some(i) => used[i] = true,
                None => unreviewed.push(format!("{rel}: {sink}")),
            }
        }
    }
    assert!(
        unreviewed.is_empty(),
        "new places where outside data could land, not yet reviewed (guard them, then list them here and in docs/security.md):\n  {}",
        unreviewed.join("\n  ")
    );
    let stale: Vec<_> =
        REVIEWED.iter().zip(&used).filter(|(_, u)| !**u).map(|((f, s, _), _)| format!("{f}: {s}")).collect();
    assert!(
        stale.is_empty(),
        "reviewed sinks that no longer exist (drop them from the list):\n  {}",
        stale.join("\n  ")
    );
}
