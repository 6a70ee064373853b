//! Reading `pconnect.yml`, end to end: the entry points ([`find`], [`load`], [`parse`], [`to_json`])
//! that run discovery, `${VAR}` interpolation, YAML parsing and the model's checks, each problem
//! located at `file:line:column`.
//!
//! The jobs live beside this file:
//!
//! - `find.rs`: discovery (the file in a directory or its nearest parent).
//! - `interpolate.rs`: `${VAR}` from the environment and a `.env` next to the file.
//! - `yaml.rs`: parsing with serde-saphyr; syntax and type errors carry its line and column and are
//!   named by their key path.
//! - `suggest.rs`: unknown keys, every one, against the JSON Schema's key lists, with "did you mean".
//! - `locate.rs`: a second, schema-less pass over the same text (a tree of nodes wrapped in
//!   serde-saphyr's `Spanned`), on which a semantic error's path (`/services/web/link/expires`,
//!   from `ProjectSpec::check`) is walked down to the key it names (or the item, for list indices;
//!   the nearest ancestor when the key is absent), and a type error's position back to its path.
//! - `problem.rs`: what is reported ([`Problem`], [`LoadError`]).

use std::fs;
use std::path::{Path, PathBuf};

use pconnect_proto::project::ProjectSpec;
use serde_json::Value;

pub use super::find::{FILE_NAMES, find};
pub use super::problem::{LoadError, Problem};
use super::yaml::Document;
use super::{interpolate, suggest};

/// A project file, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The file read.
    pub path: PathBuf,
    pub spec: ProjectSpec,
    /// The directory holding it (relative paths in the spec are relative to it).
    pub dir: PathBuf,
}

/// Reads, interpolates (environment, then `.env` next to the file), parses and checks a project file.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let origin = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|e| LoadError::whole(&origin, format!("cannot read: {e}")))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dotenv = interpolate::read_dotenv(&dir.join(".env"))?;
    let vars = |name: &str| std::env::var(name).ok().or_else(|| dotenv.get(name).cloned());
    let spec = parse(&text, &origin, &vars)?;
    Ok(Loaded { path: path.to_path_buf(), spec, dir })
}

/// Parses and checks a project file's text; `origin` names it in errors, `vars` resolves `${VAR}`.
pub fn parse(text: &str, origin: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<ProjectSpec, LoadError> {
    let doc = Document::read(text, origin, vars)?;
    let unknown = suggest::unknown_keys(&doc.tree, origin);
    if !unknown.is_empty() {
        return Err(LoadError { problems: unknown });
    }
    let spec: ProjectSpec = doc.deserialize()?;
    let problems: Vec<Problem> = spec.check().into_iter().map(|e| doc.semantic_problem(e)).collect();
    if problems.is_empty() { Ok(spec) } else { Err(LoadError { problems }) }
}

/// The interpolated document as JSON, without the model's checks (to validate it against the schema).
pub fn to_json(text: &str, origin: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<Value, LoadError> {
    Document::read(text, origin, vars)?.deserialize()
}

/// Helpers of the project file tests, here and in the modules beside this one.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    pub(in crate::project) fn no_vars(_: &str) -> Option<String> {
        None
    }

    pub(in crate::project) fn parse_ok(text: &str) -> ProjectSpec {
        parse(text, "pconnect.yml", &no_vars).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The problems of an invalid file, one line each.
    pub(in crate::project) fn problems(text: &str) -> Vec<String> {
        problems_with(text, &no_vars)
    }

    pub(in crate::project) fn problems_with(text: &str, vars: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        match parse(text, "pconnect.yml", vars) {
            Ok(spec) => panic!("expected errors, got {spec:?}"),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    pub(in crate::project) const VALID: &str = "\
# yaml-language-server: $schema=https://pconnect.dev/schemas/pconnect.schema.json
version: 1
project: shop
services:
  web:
    target: 3000
    kind: http
    link:
      expires: 2h
      methods: [GET, POST]
  db:
    target: localhost:5432
    kind: postgres
    env:
      DATABASE_URL: postgresql://postgres@{{ host }}:{{ port }}/shop
shares:
  team:
    services: [web, db]
reach:
  - teammate: alice
  - service: payments
    port: 9000
";
}

#[cfg(test)]
mod tests {
    use super::testing::{VALID, parse_ok};
    use super::*;

    #[test]
    fn a_valid_file_loads() {
        let spec = parse_ok(VALID);
        assert_eq!(spec.project.as_deref(), Some("shop"));
        assert_eq!(spec.services["web"].link.as_ref().unwrap().expires.as_deref(), Some("2h"));
        assert_eq!(spec.services["db"].env["DATABASE_URL"], "postgresql://postgres@{{ host }}:{{ port }}/shop");
        assert_eq!(spec.shares["team"].services, ["web", "db"]);
        assert_eq!(spec.reach[1].port, Some(9000));
    }

    #[test]
    fn an_unreadable_file_is_one_line() {
        let err = load(Path::new("/nonexistent/pconnect.yml")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/pconnect.yml: cannot read: "), "{err}");
    }
}
