//! The committed `schemas/pconnect.schema.json` matches `ProjectSpec`, and every example
//! `pconnect.yml` validates against it and loads. `PCONNECT_BLESS=1` rewrites the schema file.

use std::fs;
use std::path::{Path, PathBuf};

use pconnect::project;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

const BLESS: &str = "PCONNECT_BLESS=1 cargo test -p pconnect --test project_files";

#[test]
fn the_committed_schema_is_current() {
    let path = repo().join("schemas/pconnect.schema.json");
    let fresh = project::schema_json();
    if std::env::var("PCONNECT_BLESS").is_ok_and(|v| v == "1") {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == fresh, "{} is not the schema of ProjectSpec: regenerate with `{BLESS}`", path.display());
    let schema: Value = serde_json::from_str(&fresh).unwrap();
    assert_eq!(schema["$id"], project::SCHEMA_ID);
}

/// Every `pconnect.yml` under `dir`, sorted.
fn project_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            project_files(&path, out);
        } else if path.file_name().is_some_and(|n| n == "pconnect.yml") {
            out.push(path);
        }
    }
}

/// The variables an example documents, one comment line each: `# needs NAME: what it is`.
fn documented_vars(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# needs "))
        .filter_map(|rest| rest.split(':').next())
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn every_example_validates_against_the_schema_and_loads() {
    let schema: Value = serde_json::from_str(&project::schema_json()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let mut examples = Vec::new();
    project_files(&repo().join("examples"), &mut examples);
    assert!(examples.len() >= 2, "examples found: {examples:?}");
    for path in &examples {
        let text = fs::read_to_string(path).unwrap();
        let origin = path.display().to_string();
        assert!(
            text.starts_with(&format!("# yaml-language-server: $schema={}\n", project::SCHEMA_ID)),
            "{origin} does not start with the yaml-language-server schema comment"
        );
        // Undocumented variables stay unset, so using one fails here.
        let documented = documented_vars(&text);
        let vars = |name: &str| documented.iter().any(|d| d == name).then(|| "ci:example-secret".to_string());
        let value = project::load::to_json(&text, &origin, &vars).unwrap_or_else(|e| panic!("{e}"));
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{origin}: {}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        project::parse(&text, &origin, &vars).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn the_schema_refuses_what_the_loader_refuses() {
    let schema: Value = serde_json::from_str(&project::schema_json()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let no_vars = |_: &str| None;
    for text in ["version: 1\nservces: {}\n", "version: 1\nservices:\n  web:\n    kind: http\n"] {
        let value = project::load::to_json(text, "pconnect.yml", &no_vars).unwrap();
        assert!(!validator.is_valid(&value), "schema accepts {text:?}");
        assert!(project::parse(text, "pconnect.yml", &no_vars).is_err(), "loader accepts {text:?}");
    }
}

#[test]
fn the_ci_example_brings_the_project_up_and_down() {
    let workflow = fs::read_to_string(repo().join("examples/ci/preview-links.yml")).unwrap();
    assert!(workflow.contains("connect up --detach --json"));
    assert!(workflow.contains("connect down"));
}
