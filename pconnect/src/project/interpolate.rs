//! `${VAR}` interpolation: which variables a file references and their values (from a lookup: for
//! [`load`](super::load::load), the process environment first, then a `.env` file next to
//! `pconnect.yml`, read with dotenvy's iterator so the process environment is never changed), how an
//! unset one is reported, and the refusal of `${VAR}` inside quoted strings.
//!
//! The substitution itself is serde-saphyr's `properties` feature: the parser applies it to plain
//! scalars only, so comments, keys and block scalars (`|`, `>`: templates) are never touched, the
//! reported positions stay those of the file, and interpolated values are redacted from its error
//! messages. `$${VAR}` is a literal `${VAR}`; `${VAR:-default}` and the other Compose forms work.
//! A `${VAR}` inside a quoted string would silently stay literal, so it is reported instead.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde_saphyr::{Error as YamlError, Spanned};

use super::locate::{Node, walk};
use super::problem::{LoadError, Problem};

/// What a missing variable is replaced with while looking for further missing ones.
pub(super) const PLACEHOLDER: &str = "0";

/// The value of every variable the text references that `lookup` knows.
pub(super) fn resolve(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> HashMap<String, String> {
    referenced_names(text).into_iter().filter_map(|name| lookup(&name).map(|value| (name, value))).collect()
}

/// Variables of a `.env` file (none when there is no such file).
pub(super) fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, LoadError> {
    if !path.is_file() {
        return Ok(HashMap::new());
    }
    let origin = path.display().to_string();
    let entries = dotenvy::from_path_iter(path).map_err(|e| LoadError::whole(&origin, e.to_string()))?;
    let mut vars = HashMap::new();
    for entry in entries {
        match entry {
            Ok((name, value)) => {
                vars.insert(name, value);
            }
            Err(dotenvy::Error::LineParse(line, index)) => {
                let text = fs::read_to_string(path).unwrap_or_default();
                let number = text.find(&line).map_or(0, |at| text[..at].matches('\n').count() as u64 + 1);
                let problem = Problem {
                    file: origin,
                    line: number,
                    column: index as u64 + 1,
                    path: None,
                    message: format!("cannot parse `{}`", line.trim_end()),
                    hint: Some("lines are NAME=value".into()),
                };
                return Err(LoadError { problems: vec![problem] });
            }
            Err(e) => return Err(LoadError::whole(&origin, e.to_string())),
        }
    }
    Ok(vars)
}

/// Every name written `${NAME…` in the text (comments included: they are only looked up).
fn referenced_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (at, _) in text.match_indices("${") {
        let rest = &text[at + 2..];
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let name = &rest[..len];
        if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// A variable the parser found unset, as reported.
pub(super) struct Unset {
    pub(super) name: String,
    pub(super) message: String,
    /// The message of a `${VAR:?message}`.
    pub(super) hint: Option<String>,
}

/// The unset variable a parser error (unwrapped from its alias and snippet wrappers) is about.
pub(super) fn unset(err: &YamlError) -> Option<Unset> {
    match err {
        YamlError::UnresolvedProperty { name, .. } => Some(Unset {
            name: name.clone(),
            message: format!("`${{{name}}}` is not set (environment or .env)"),
            hint: None,
        }),
        YamlError::PropertyRequiredButUnset { name, message, .. } => Some(Unset {
            name: name.clone(),
            message: format!("`${{{name}}}` is not set (environment or .env)"),
            hint: (!message.is_empty()).then(|| message.clone()),
        }),
        _ => None,
    }
}

/// `"${VAR}"` and `'${VAR}'` are not interpolated by the parser: say so rather than keep them.
pub(super) fn quoted_vars(text: &str, origin: &str, tree: &Spanned<Node>) -> Vec<Problem> {
    let mut problems = Vec::new();
    walk(tree, &mut |path, node| {
        if !matches!(node.value, Node::Scalar) {
            return;
        }
        let span = node.referenced.span();
        let (Some(start), Some(len)) = (span.byte_offset(), span.byte_len()) else { return };
        let Some(raw) = text.get(start as usize..(start + len) as usize) else { return };
        if !raw.starts_with(['"', '\'']) {
            return;
        }
        let unescaped = raw.match_indices("${").find(|&(at, _)| !raw[..at].ends_with('$'));
        if let Some((at, _)) = unescaped {
            let name = referenced_names(&raw[at..]).into_iter().next().unwrap_or_default();
            problems.push(Problem::at(
                origin,
                node.referenced,
                Some(path.to_string()),
                format!("`${{{name}}}` is not replaced inside a quoted string"),
                Some("write the value without quotes".into()),
            ));
        }
    });
    problems
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::project::load::testing::{problems, problems_with};
    use crate::project::load::{load, parse};

    #[test]
    fn a_missing_variable_is_located() {
        let text = "version: 1\nservices:\n  web:\n    target: 3000\n    link:\n\
                    \x20     auth: ${PREVIEW_AUTH}\n      rate_limit: ${RATE}\n";
        let lines = problems(text);
        assert_eq!(
            lines,
            [
                "pconnect.yml:6:13: `${PREVIEW_AUTH}` is not set (environment or .env)",
                "pconnect.yml:7:19: `${RATE}` is not set (environment or .env)",
            ]
        );
        let vars = |name: &str| {
            (name == "PREVIEW_AUTH" || name == "RATE")
                .then(|| if name == "RATE" { "60/min" } else { "u:p" }.to_string())
        };
        let spec = parse(text, "pconnect.yml", &vars).unwrap();
        let link = spec.services["web"].link.clone().unwrap();
        assert_eq!((link.auth.as_deref(), link.rate_limit), (Some("u:p"), Some(pconnect_proto::link::RateLimit(60))));
    }

    #[test]
    fn variables_skip_comments_and_escapes_and_refuse_quotes() {
        let text = "version: 1 # ${NOT_IN_COMMENTS}\nproject: $${LITERAL}\nhub: https://${HUB_HOST}:7779\n";
        let vars = |name: &str| (name == "HUB_HOST").then(|| "hub.example.com".to_string());
        let spec = parse(text, "pconnect.yml", &vars).unwrap();
        assert_eq!(spec.project.as_deref(), Some("${LITERAL}"));
        assert_eq!(spec.hub.as_deref(), Some("https://hub.example.com:7779"));
        let lines = problems_with("version: 1\nproject: \"${HUB_HOST}\"\n", &vars);
        assert_eq!(
            lines,
            ["pconnect.yml:2:10: /project: `${HUB_HOST}` is not replaced inside a quoted string; \
                 write the value without quotes"]
        );
    }

    #[test]
    fn a_dotenv_next_to_the_file_supplies_variables() {
        let dir = tempfile::tempdir().unwrap();
        let text = "version: 1\nservices:\n  web:\n    target: 3000\n    link:\n\
                    \x20     auth: ${PCONNECT_TEST_DOTENV_AUTH_7F3}\n";
        fs::write(dir.path().join("pconnect.yml"), text).unwrap();
        let err = load(&dir.path().join("pconnect.yml")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("pconnect.yml:6:13: `${PCONNECT_TEST_DOTENV_AUTH_7F3}` is not set (environment or .env)"),
            "{err}"
        );
        fs::write(dir.path().join(".env"), "# preview credentials\nPCONNECT_TEST_DOTENV_AUTH_7F3=preview:s3cret\n")
            .unwrap();
        let loaded = load(&dir.path().join("pconnect.yml")).unwrap();
        assert_eq!(loaded.spec.services["web"].link.as_ref().unwrap().auth.as_deref(), Some("preview:s3cret"));
        assert_eq!(loaded.dir, dir.path());
        assert!(std::env::var("PCONNECT_TEST_DOTENV_AUTH_7F3").is_err(), "the process environment is left alone");
    }
}
