//! Reading `pconnect.yml`: discovery, `${VAR}` interpolation, YAML parsing, and errors located at
//! `file:line:column`. All of the agent's YAML input goes through this module (serde-saphyr).
//!
//! How problems are located:
//!
//! - Syntax and type errors carry serde-saphyr's own line and column.
//! - Everything else uses a second, schema-less pass over the same text: the document is
//!   deserialized into a small tree of nodes wrapped in serde-saphyr's [`Spanned`] (its span
//!   support), so every mapping key, list item and value has its `Location`. A semantic error's
//!   path (`/services/web/link/expires`, from `ProjectSpec::check`) is walked down this tree to the
//!   key it names (or the item, for list indices; the nearest ancestor when the key is absent).
//!   A type error's position is walked the other way to name its path.
//! - Unknown keys are found on that tree against the key lists of the JSON Schema that schemars
//!   derives from `ProjectSpec` (`super::schema`), so the lists and the "did you mean" hints cannot
//!   go stale; every unknown key is reported, not only the first.
//!
//! `${VAR}` interpolation is serde-saphyr's `properties` feature: the parser applies it to plain
//! scalars only, so comments, keys and block scalars (`|`, `>`: templates) are never touched, the
//! reported positions stay those of the file, and interpolated values are redacted from its error
//! messages. `$${VAR}` is a literal `${VAR}`; `${VAR:-default}` and the other Compose forms work.
//! A `${VAR}` inside a quoted string would silently stay literal, so it is reported instead. Values
//! come from the `vars` lookup: for [`load`], the process environment first, then a `.env` file next
//! to `pconnect.yml` (read with dotenvy's iterator: the process environment is never changed).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use pconnect_proto::project::{ProjectSpec, SpecError};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Error as YamlError, Location, MessageFormatter, Options, Spanned, UserMessageFormatter};

/// The names `pconnect.yml` may have, in order of preference.
pub const FILE_NAMES: [&str; 2] = ["pconnect.yml", "pconnect.yaml"];

/// What a missing variable is replaced with while looking for further missing ones.
const PLACEHOLDER: &str = "0";

/// A project file, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The file read.
    pub path: PathBuf,
    pub spec: ProjectSpec,
    /// The directory holding it (relative paths in the spec are relative to it).
    pub dir: PathBuf,
}

/// One problem in a project file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as given to [`load`] or [`parse`].
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file (it cannot be read).
    pub line: u64,
    /// 1-based, in characters.
    pub column: u64,
    /// The key path (`/services/web/link/expires`), when it is known.
    pub path: Option<String>,
    pub message: String,
    /// A suggestion (`did you mean `services`?`).
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.column)?;
        }
        if let Some(path) = &self.path {
            write!(f, " {path}:")?;
        }
        write!(f, " {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a project file; displayed one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub problems: Vec<Problem>,
}

impl LoadError {
    fn whole(file: &str, message: String) -> Self {
        LoadError { problems: vec![Problem { file: file.into(), line: 0, column: 0, path: None, message, hint: None }] }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// `pconnect.yml` (or `pconnect.yaml`) in `start` or the nearest of its parents.
pub fn find(start: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    start.ancestors().flat_map(|dir| FILE_NAMES.iter().map(move |name| dir.join(name))).find(|path| path.is_file())
}

/// Reads, interpolates (environment, then `.env` next to the file), parses and checks a project file.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let origin = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|e| LoadError::whole(&origin, format!("cannot read: {e}")))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dotenv = read_dotenv(&dir.join(".env"))?;
    let vars = |name: &str| std::env::var(name).ok().or_else(|| dotenv.get(name).cloned());
    let spec = parse(&text, &origin, &vars)?;
    Ok(Loaded { path: path.to_path_buf(), spec, dir })
}

/// Parses and checks a project file's text; `origin` names it in errors, `vars` resolves `${VAR}`.
pub fn parse(text: &str, origin: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<ProjectSpec, LoadError> {
    let doc = Document::read(text, origin, vars)?;
    let unknown = doc.unknown_keys();
    if !unknown.is_empty() {
        return Err(LoadError { problems: unknown });
    }
    let spec: ProjectSpec =
        serde_saphyr::from_str_with_options(text, doc.options()).map_err(|e| doc.errors(vec![doc.type_problem(&e)]))?;
    let problems: Vec<Problem> = spec.check().into_iter().map(|e| doc.semantic_problem(e)).collect();
    if problems.is_empty() { Ok(spec) } else { Err(doc.errors(problems)) }
}

/// The interpolated document as JSON, without the model's checks (to validate it against the schema).
pub fn to_json(text: &str, origin: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<Value, LoadError> {
    let doc = Document::read(text, origin, vars)?;
    serde_saphyr::from_str_with_options(text, doc.options()).map_err(|e| doc.errors(vec![doc.type_problem(&e)]))
}

/// Variables of a `.env` file (none when there is no such file).
fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, LoadError> {
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

/// The text, its variables and its position tree.
struct Document<'a> {
    text: &'a str,
    origin: &'a str,
    vars: HashMap<String, String>,
    tree: Spanned<Node>,
}

impl<'a> Document<'a> {
    /// Resolves variables and builds the position tree; fails on syntax errors, missing variables
    /// (all of them, each located) and variables inside quoted strings.
    fn read(text: &'a str, origin: &'a str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, LoadError> {
        let vars: HashMap<String, String> =
            referenced_names(text).into_iter().filter_map(|name| lookup(&name).map(|value| (name, value))).collect();
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
                    let missing = match original(&e) {
                        YamlError::UnresolvedProperty { name, .. } => {
                            Some((name.clone(), format!("`${{{name}}}` is not set (environment or .env)"), None))
                        }
                        YamlError::PropertyRequiredButUnset { name, message, .. } => Some((
                            name.clone(),
                            format!("`${{{name}}}` is not set (environment or .env)"),
                            (!message.is_empty()).then(|| message.clone()),
                        )),
                        _ => None,
                    };
                    match missing {
                        // Look for the next one with a stand-in value, so all are reported at once.
                        Some((name, message, hint)) if !doc.vars.contains_key(&name) => {
                            problems.push(doc.problem(at, None, message, hint));
                            doc.vars.insert(name, PLACEHOLDER.into());
                        }
                        _ => {
                            problems.push(doc.syntax_problem(&e));
                            return Err(doc.errors(problems));
                        }
                    }
                }
            }
        }
        problems.extend(doc.quoted_vars());
        if problems.is_empty() { Ok(doc) } else { Err(doc.errors(problems)) }
    }

    fn options(&self) -> Options {
        Options::default().with_properties(self.vars.clone())
    }

    fn errors(&self, problems: Vec<Problem>) -> LoadError {
        LoadError { problems }
    }

    fn problem(&self, at: Location, path: Option<String>, message: String, hint: Option<String>) -> Problem {
        Problem { file: self.origin.to_string(), line: at.line(), column: at.column(), path, message, hint }
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

    /// `"${VAR}"` and `'${VAR}'` are not interpolated by the parser: say so rather than keep them.
    fn quoted_vars(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        walk(&self.tree, &mut |path, node| {
            if !matches!(node.value, Node::Scalar) {
                return;
            }
            let span = node.referenced.span();
            let (Some(start), Some(len)) = (span.byte_offset(), span.byte_len()) else { return };
            let Some(raw) = self.text.get(start as usize..(start + len) as usize) else { return };
            if !raw.starts_with(['"', '\'']) {
                return;
            }
            let unescaped = raw.match_indices("${").find(|&(at, _)| !raw[..at].ends_with('$'));
            if let Some((at, _)) = unescaped {
                let name = referenced_names(&raw[at..]).into_iter().next().unwrap_or_default();
                problems.push(self.problem(
                    node.referenced,
                    Some(path.to_string()),
                    format!("`${{{name}}}` is not replaced inside a quoted string"),
                    Some("write the value without quotes".into()),
                ));
            }
        });
        problems
    }

    /// Keys the schema does not allow where they are, each with a suggestion.
    fn unknown_keys(&self) -> Vec<Problem> {
        let root = schema_value();
        let mut problems = Vec::new();
        self.check_keys(&self.tree, "", &alternatives(root, root), &mut problems);
        problems
    }

    fn check_keys(&self, node: &Spanned<Node>, path: &str, schemas: &[&Value], problems: &mut Vec<Problem>) {
        match &node.value {
            Node::Map(entries) => {
                let allowed = allowed_keys(schemas);
                for (key, value) in entries {
                    let name = key.value.0.as_str();
                    if let Some(allowed) = &allowed
                        && !allowed.contains(&name)
                    {
                        let (message, hint) = unknown_key(name, allowed);
                        problems.push(self.problem(key.referenced, non_root(path), message, Some(hint)));
                        continue;
                    }
                    let children = child_schemas(schemas, Segment::Key(name));
                    self.check_keys(value, &format!("{path}/{name}"), &children, problems);
                }
            }
            Node::Seq(items) => {
                let children = child_schemas(schemas, Segment::Index);
                for (i, item) in items.iter().enumerate() {
                    self.check_keys(item, &format!("{path}/{i}"), &children, problems);
                }
            }
            Node::Scalar => {}
        }
    }

    /// A deserialization error of the model (a wrong type, a missing key…), named by its path.
    fn type_problem(&self, e: &YamlError) -> Problem {
        let at = e.location().unwrap_or(Location::UNKNOWN);
        match original(e) {
            YamlError::SerdeUnknownField { field, expected, .. } => {
                let path = self.path_at(at, Find::Key).and_then(|p| non_root(parent(&p)));
                let (message, hint) = unknown_key(field, expected);
                self.problem(at, path, message, Some(hint))
            }
            YamlError::SerdeMissingField { field, .. } => {
                // Located at the mapping's first key, or at the mapping itself when it is empty.
                let path = match self.path_at(at, Find::Key) {
                    Some(key) => non_root(parent(&key)),
                    None => self.path_at(at, Find::Value).and_then(|p| non_root(&p)),
                };
                self.problem(at, path, format!("missing key `{field}`"), None)
            }
            err => {
                let path = self.path_at(at, Find::Value);
                let mut message = message_of(e);
                if message.contains("untagged enum") {
                    message = "wrong type".into();
                }
                if let Some(source) = self.source(at).filter(|_| self.scalar_at(at)) {
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

    fn semantic_problem(&self, e: SpecError) -> Problem {
        let at = self.locate(&e.path);
        self.problem(at, non_root(&e.path), e.message, None)
    }

    /// The key a path names (the item, for a list index; the nearest ancestor present).
    fn locate(&self, path: &str) -> Location {
        let mut node = &self.tree;
        let mut at = node.referenced;
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            let next = match &node.value {
                Node::Map(entries) => {
                    entries.iter().find(|(k, _)| k.value.0 == segment).map(|(k, v)| (k.referenced, v))
                }
                Node::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)).map(|v| (v.referenced, v)),
                Node::Scalar => None,
            };
            let Some((found, child)) = next else { break };
            at = found;
            node = child;
        }
        at
    }

    /// Whether the value at a position is a scalar (whose source text can be quoted in a message).
    fn scalar_at(&self, at: Location) -> bool {
        let mut scalar = false;
        walk(&self.tree, &mut |_, node| {
            if node.referenced.line() == at.line() && node.referenced.column() == at.column() {
                scalar = matches!(node.value, Node::Scalar);
            }
        });
        scalar
    }

    /// The path of the deepest key (or value) at a position.
    fn path_at(&self, at: Location, find: Find) -> Option<String> {
        let same = |l: &Location| l.line() == at.line() && l.column() == at.column();
        let mut found = None;
        walk_keys(&self.tree, &mut |path, key, value| match find {
            Find::Key if key.is_some_and(same) => found = Some(path.to_string()),
            Find::Value if same(&value.referenced) => found = Some(path.to_string()),
            _ => {}
        });
        found
    }
}

#[derive(Clone, Copy)]
enum Find {
    Key,
    Value,
}

fn non_root(path: &str) -> Option<String> {
    (!path.is_empty() && path != "/").then(|| path.to_string())
}

fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |at| &path[..at])
}

/// "unknown key" with a "did you mean" (or the list of allowed keys).
fn unknown_key(key: &str, allowed: &[&str]) -> (String, String) {
    let best = allowed.iter().map(|candidate| (edit_distance(key, candidate), *candidate)).min();
    let hint = match best {
        Some((distance, candidate)) if distance <= 2.max(key.chars().count() / 3) && distance < key.chars().count() => {
            format!("did you mean `{candidate}`?")
        }
        _ => format!("expected one of {}", allowed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
    };
    (format!("unknown key `{key}`"), hint)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

// ---- The schema, as the source of key lists and expected types ----

fn schema_value() -> &'static Value {
    static SCHEMA: LazyLock<Value> = LazyLock::new(|| super::schema().to_value());
    &SCHEMA
}

#[derive(Clone, Copy)]
enum Segment<'s> {
    Key(&'s str),
    Index,
}

/// The alternatives a schema stands for, through `$ref`, `anyOf`, `oneOf` and `allOf`.
fn alternatives<'v>(root: &'v Value, schema: &'v Value) -> Vec<&'v Value> {
    fn collect<'v>(root: &'v Value, schema: &'v Value, out: &mut Vec<&'v Value>, depth: usize) {
        if depth > 32 {
            return;
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let target = reference.strip_prefix("#/$defs/").and_then(|name| root.get("$defs")?.get(name));
            if let Some(target) = target {
                collect(root, target, out, depth + 1);
            }
            return;
        }
        let mut composed = false;
        for keyword in ["anyOf", "oneOf", "allOf"] {
            for alternative in schema.get(keyword).and_then(Value::as_array).into_iter().flatten() {
                composed = true;
                collect(root, alternative, out, depth + 1);
            }
        }
        if !composed {
            out.push(schema);
        }
    }
    let mut out = Vec::new();
    collect(root, schema, &mut out, 0);
    out
}

fn child_schemas<'v>(schemas: &[&'v Value], segment: Segment<'_>) -> Vec<&'v Value> {
    let root = schema_value();
    let mut out = Vec::new();
    for schema in schemas {
        let child = match segment {
            Segment::Key(key) => schema
                .get("properties")
                .and_then(|p| p.get(key))
                .or_else(|| schema.get("additionalProperties").filter(|v| v.is_object())),
            Segment::Index => schema.get("items").filter(|v| v.is_object()),
        };
        // Schemas in `schemas` all come from `schema_value()`, so their children do too.
        if let Some(child) = child {
            out.extend(alternatives(root, child));
        }
    }
    out
}

fn has_type(schema: &Value, name: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == name,
        Some(Value::Array(types)) => types.iter().any(|t| t == name),
        _ => false,
    }
}

/// The keys allowed in a mapping, or `None` when any key is (or nothing is known).
fn allowed_keys<'v>(schemas: &[&'v Value]) -> Option<Vec<&'v str>> {
    let objects: Vec<&Value> = schemas
        .iter()
        .copied()
        .filter(|s| has_type(s, "object") || s.get("properties").is_some() || s.get("additionalProperties").is_some())
        .collect();
    if objects.is_empty() || objects.iter().any(|s| s.get("additionalProperties") != Some(&Value::Bool(false))) {
        return None;
    }
    let mut keys: Vec<&str> = Vec::new();
    for object in objects {
        for key in object.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.keys()) {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
    }
    Some(keys)
}

/// What the schema expects at a path, in words (`a whole number or a string`).
fn expected_at(path: &str) -> Option<String> {
    let root = schema_value();
    let mut schemas = alternatives(root, root);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let is_list = segment.bytes().all(|b| b.is_ascii_digit()) && schemas.iter().any(|s| has_type(s, "array"));
        schemas = child_schemas(&schemas, if is_list { Segment::Index } else { Segment::Key(segment) });
    }
    let mut words: Vec<String> = Vec::new();
    for schema in schemas {
        let mut add = |word: String| {
            if !words.contains(&word) {
                words.push(word);
            }
        };
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let values: Vec<String> = values.iter().map(|v| v.as_str().map_or(v.to_string(), str::to_string)).collect();
            add(format!("one of {}", values.join(", ")));
            continue;
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        for t in types {
            match t {
                "integer" => add("a whole number".into()),
                "number" => add("a number".into()),
                "string" => add("a string".into()),
                "boolean" => add("true or false".into()),
                "array" => add("a list".into()),
                "object" => add("a mapping".into()),
                _ => {}
            }
        }
    }
    (!words.is_empty()).then(|| words.join(" or "))
}

// ---- The position tree ----

/// A YAML node without its values: mappings (keys kept, with their positions), lists and scalars.
#[derive(Debug)]
enum Node {
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// A mapping key as text (`3000:` is the key `3000`).
#[derive(Debug)]
struct Key(String);

/// Visits every node with its path, parents first.
fn walk(tree: &Spanned<Node>, visit: &mut dyn FnMut(&str, &Spanned<Node>)) {
    walk_keys(tree, &mut |path, _, node| visit(path, node));
}

/// A visitor of `walk_keys`: path, position of the key (none for the root and list items), node.
type KeyVisitor<'v> = dyn FnMut(&str, Option<&Location>, &Spanned<Node>) + 'v;

/// Visits every node with its path and the position of its key, parents first.
fn walk_keys(tree: &Spanned<Node>, visit: &mut KeyVisitor<'_>) {
    fn go(node: &Spanned<Node>, key: Option<&Location>, path: &str, visit: &mut KeyVisitor<'_>) {
        visit(path, key, node);
        match &node.value {
            Node::Map(entries) => {
                for (k, v) in entries {
                    go(v, Some(&k.referenced), &format!("{path}/{}", k.value.0), visit);
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    go(item, None, &format!("{path}/{i}"), visit);
                }
            }
            Node::Scalar => {}
        }
    }
    go(tree, None, "", visit);
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".into()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".into()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
                Node::deserialize(deserializer)
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
                Node::deserialize(deserializer)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_vars(_: &str) -> Option<String> {
        None
    }

    fn parse_ok(text: &str) -> ProjectSpec {
        parse(text, "pconnect.yml", &no_vars).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(text: &str) -> Vec<String> {
        problems_with(text, &no_vars)
    }

    fn problems_with(text: &str, vars: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        match parse(text, "pconnect.yml", vars) {
            Ok(spec) => panic!("expected errors, got {spec:?}"),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    const VALID: &str = "\
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
    fn an_unknown_key_is_located_with_a_suggestion() {
        let lines = problems("version: 1\nservces:\n  web: {target: 3000}\n");
        assert_eq!(lines, ["pconnect.yml:2:1: unknown key `servces`; did you mean `services`?"]);
    }

    #[test]
    fn every_unknown_key_is_reported_at_its_level() {
        let text = "version: 1\nservices:\n  web:\n    target: 3000\n    link:\n      expirs: 2h\n    zzzzzz: 1\n";
        let lines = problems(text);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "pconnect.yml:6:7: /services/web/link: unknown key `expirs`; did you mean `expires`?");
        assert!(lines[1].starts_with("pconnect.yml:7:5: /services/web: unknown key `zzzzzz`; expected one of "));
        assert!(lines[1].contains("`target`"), "{lines:?}");
    }

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
    fn a_bad_duration_points_at_expires() {
        let text = "version: 1\nservices:\n  web:\n    target: 3000\n    link:\n      expires: 40d\n";
        assert_eq!(
            problems(text),
            ["pconnect.yml:6:7: /services/web/link/expires: '40d' is longer than the 30 days allowed"]
        );
    }

    #[test]
    fn ports_out_of_range_are_located() {
        let text =
            "version: 1\nservices:\n  web:\n    target: localhost:99999\nreach:\n  - service: api\n    port: 70000\n";
        let lines = problems(text);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("pconnect.yml:4:5: /services/web/target: "), "{lines:?}");
        assert_eq!(lines[1], "pconnect.yml:7:5: /reach/0/port: port 70000 is out of range (1-65535)");
        // Beyond u32 it is a type error, located all the same.
        let lines = problems("version: 1\nreach:\n  - service: api\n    port: 99999999999\n");
        assert_eq!(lines, ["pconnect.yml:4:11: /reach/0/port: invalid u32 `99999999999`; expected a whole number"]);
    }

    #[test]
    fn a_share_of_an_undeclared_service_is_located() {
        let text = "version: 1\nservices:\n  web: {target: 3000}\n\
                    shares:\n  team:\n    services:\n      - web\n      - ghost\n";
        assert_eq!(
            problems(text),
            ["pconnect.yml:8:9: /shares/team/services/1: 'ghost' is not declared under services"]
        );
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let text = "\
version: 2
services:
  db:
    target: 5432
    kind: postgres
    link:
      expires: banana
shares:
  team:
    services: [ghost]
";
        let lines = problems(text);
        assert!(lines.contains(&"pconnect.yml:1:1: /version: version must be 1, not 2".to_string()), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("pconnect.yml:3:3: /services/db: a database service")), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("pconnect.yml:7:7: /services/db/link/expires: ")), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("pconnect.yml:10:16: /shares/team/services/0: ")), "{lines:?}");
        assert_eq!(lines.len(), 4, "{lines:?}");
    }

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

    #[test]
    fn malformed_yaml_is_located() {
        let lines = problems("version: 1\nservices:\n  web:\n    target: 3000\n   kind: http\n");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("pconnect.yml:5:4: invalid YAML: "), "{lines:?}");
        assert!(lines[0].ends_with("; check the indentation"), "{lines:?}");
        let lines = problems("version: 1\nproject: \"shop\n");
        assert!(lines[0].starts_with("pconnect.yml:2:10: invalid YAML: "), "{lines:?}");
    }

    #[test]
    fn the_file_is_found_from_a_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("src/components");
        fs::create_dir_all(&sub).unwrap();
        fs::write(dir.path().join("pconnect.yaml"), VALID).unwrap();
        assert_eq!(find(&sub), Some(dir.path().join("pconnect.yaml")));
        fs::write(dir.path().join("pconnect.yml"), VALID).unwrap();
        assert_eq!(find(&sub), Some(dir.path().join("pconnect.yml")));
        let loaded = load(&find(&sub).unwrap()).unwrap();
        assert_eq!(loaded.spec, parse_ok(VALID));
    }

    #[test]
    fn an_unreadable_file_is_one_line() {
        let err = load(Path::new("/nonexistent/pconnect.yml")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/pconnect.yml: cannot read: "), "{err}");
    }
}
