//! YAML parsing (serde-saphyr) with positions: a project file's text read once into the position
//! tree (after `${VAR}` interpolation) and once into the model, with syntax and type errors mapped
//! to `file:line:column` and the key path they concern. All of the agent's YAML input goes through
//! here.

use std::collections::HashMap;

use pconnect_proto::project::SpecError;
use serde::de::DeserializeOwned;
use serde_saphyr::{Error as YamlError, Location, MessageFormatter, Options, Spanned, UserMessageFormatter};

use super::interpolate;
use super::locate::{self, Find, Node, non_root, parent};
use super::problem::{LoadError, Problem};
use super::suggest::{expected_at, unknown_key};

/// The text, its variables and its position tree.
pub(super) struct Document<'a> {
    text: &'a str,
    origin: &'a str,
    vars: HashMap<String, String>,
    pub(super) tree: Spanned<Node>,
}

impl<'a> Document<'a> {
    /// Resolves variables and builds the position tree; fails on syntax errors, missing variables
    /// (all of them, each located) and variables inside quoted strings.
    pub(super) fn read(
        text: &'a str,
        origin: &'a str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, LoadError> {
        let vars = interpolate::resolve(text, lookup);
        let mut doc =
            Document { text, origin, vars, tree: Spanned::new(Node::Scalar, Location::UNKNOWN, Location::UNKNOWN) };
        let mut problems = Vec::new();
        loop {
            match serde_saphyr::from_str_with_options::<Spanned<Node>>(text, doc.options()) {
                Ok(tree) => {
                    doc.tree = tree;
                    break;
                }
                Err(e) => {
                    let at = e.location().unwrap_or(Location::UNKNOWN);
                    match interpolate::unset(original(&e)) {
                        // Look for the next one with a stand-in value, so all are reported at once.
                        Some(unset) if !doc.vars.contains_key(&unset.name) => {
                            problems.push(doc.problem(at, None, unset.message, unset.hint));
                            doc.vars.insert(unset.name, interpolate::PLACEHOLDER.into());
                        }
                        _ => {
                            problems.push(doc.syntax_problem(&e));
                            return Err(LoadError { problems });
                        }
                    }
                }
            }
        }
        problems.extend(interpolate::quoted_vars(text, origin, &doc.tree));
        if problems.is_empty() { Ok(doc) } else { Err(LoadError { problems }) }
    }

    /// The document deserialized into `T` (the model, or JSON), a type error located.
    pub(super) fn deserialize<T: DeserializeOwned>(&self) -> Result<T, LoadError> {
        serde_saphyr::from_str_with_options(self.text, self.options())
            .map_err(|e| LoadError { problems: vec![self.type_problem(&e)] })
    }

    /// A semantic error of the model, located at the key its path names.
    pub(super) fn semantic_problem(&self, e: SpecError) -> Problem {
        let at = locate::locate(&self.tree, &e.path);
        self.problem(at, non_root(&e.path), e.message, None)
    }

    fn options(&self) -> Options {
        Options::default().with_properties(self.vars.clone())
    }

    fn problem(&self, at: Location, path: Option<String>, message: String, hint: Option<String>) -> Problem {
        Problem::at(self.origin, at, path, message, hint)
    }

    /// The source text of a located node, when it is on one short line.
    fn source(&self, at: Location) -> Option<&'a str> {
        let span = at.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        self.text.get(start..start + len).filter(|s| !s.is_empty() && s.len() <= 60 && !s.contains('\n'))
    }

    fn syntax_problem(&self, e: &YamlError) -> Problem {
        let message = message_of(e);
        let hint = (message.contains("did not find expected key") || message.contains("not allowed in this context"))
            .then(|| "check the indentation".to_string());
        self.problem(e.location().unwrap_or(Location::UNKNOWN), None, format!("invalid YAML: {message}"), hint)
    }

    /// A deserialization error of the model (a wrong type, a missing key…), named by its path.
    fn type_problem(&self, e: &YamlError) -> Problem {
        let at = e.location().unwrap_or(Location::UNKNOWN);
        match original(e) {
            YamlError::SerdeUnknownField { field, expected, .. } => {
                let path = locate::path_at(&self.tree, at, Find::Key).and_then(|p| non_root(parent(&p)));
                let (message, hint) = unknown_key(field, expected);
                self.problem(at, path, message, Some(hint))
            }
            YamlError::SerdeMissingField { field, .. } => {
                // Located at the mapping's first key, or at the mapping itself when it is empty.
                let path = match locate::path_at(&self.tree, at, Find::Key) {
                    Some(key) => non_root(parent(&key)),
                    None => locate::path_at(&self.tree, at, Find::Value).and_then(|p| non_root(&p)),
                };
                self.problem(at, path, format!("missing key `{field}`"), None)
            }
            err => {
                let path = locate::path_at(&self.tree, at, Find::Value);
                let mut message = message_of(e);
                if message.contains("untagged enum") {
                    message = "wrong type".into();
                }
                if let Some(source) = self.source(at).filter(|_| locate::scalar_at(&self.tree, at)) {
                    message = format!("{message} `{source}`");
                }
                let expected = path.as_deref().and_then(expected_at);
                let hint = match (err, expected) {
                    (YamlError::SerdeUnknownVariant { .. }, _) | (_, None) => None,
                    (_, Some(expected)) => Some(format!("expected {expected}")),
                };
                self.problem(at, path.and_then(|p| non_root(&p)), message, hint)
            }
        }
    }
}

/// The error under alias and snippet wrappers.
fn original(mut err: &YamlError) -> &YamlError {
    while let YamlError::AliasError { error, .. } | YamlError::WithSnippet { error, .. } = err {
        err = error;
    }
    err
}

fn message_of(err: &YamlError) -> String {
    UserMessageFormatter.format_message(original(err)).into_owned()
}

#[cfg(test)]
mod tests {
    use crate::project::load::testing::problems;

    #[test]
    fn a_wrong_type_is_located() {
        let lines = problems("version: 1\nservices:\n  web:\n    target: 3000\n    debug: maybe\n");
        assert_eq!(lines, ["pconnect.yml:5:12: /services/web/debug: invalid boolean `maybe`; expected true or false"]);
        let lines = problems("version: 1\nservices:\n  web:\n    target: [3000]\n");
        assert_eq!(lines, ["pconnect.yml:4:13: /services/web/target: wrong type; expected a whole number or a string"]);
        let lines = problems("version: 1\nservices:\n  web:\n    kind: http\n");
        assert_eq!(lines, ["pconnect.yml:4:5: /services/web: missing key `target`"]);
    }

    #[test]
    fn malformed_yaml_is_located() {
        let lines = problems("version: 1\nservices:\n  web:\n    target: 3000\n   kind: http\n");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("pconnect.yml:5:4: invalid YAML: "), "{lines:?}");
        assert!(lines[0].ends_with("; check the indentation"), "{lines:?}");
        let lines = problems("version: 1\nproject: \"shop\n");
        assert!(lines[0].starts_with("pconnect.yml:2:10: invalid YAML: "), "{lines:?}");
    }
}
