//! GraphQL over HTTP: finds the operations of a request (JSON body with `query`, a batch array of
//! them, an `application/graphql` body, or `GET ?query=`), names the selected one with a small
//! tolerant lexer, redacts variables and inline secret arguments, and maps response `errors[]`.

use serde_json::Value;

use super::media::Media;
use crate::{GraphqlOperation, HEADER_VALUE_CAP, TEXT_CAP, redact};

/// Most operations reported per request (batch entries).
const OPS_CAP: usize = 64;
/// Most operation definitions looked at per document.
const DEFS_CAP: usize = 256;
/// Longest operation name kept.
const NAME_CAP: usize = 256;
/// Most error messages kept per operation.
const ERRORS_CAP: usize = 32;

/// Operations found in a request; `index` is the entry of a batch (0 for a single operation).
#[derive(Debug, Clone, Default)]
pub(super) struct Found {
    pub(super) ops: Vec<(usize, GraphqlOperation)>,
    pub(super) batch: bool,
}

/// Finds the GraphQL operations of a request. `body` is the whole decoded request body, when it is text.
pub(super) fn find(method: &str, target: &str, media: Media, body: Option<&str>) -> Found {
    let params = query_params(target);
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let mut found = Found::default();
    if method.eq_ignore_ascii_case("GET") {
        if let Some(doc) = param("query") {
            let variables = param("variables").and_then(|v| serde_json::from_str(v).ok());
            found.ops.extend(operation(doc, param("operationName"), variables.as_ref()).map(|op| (0, op)));
        }
        return found;
    }
    let Some(body) = body else { return found };
    match media {
        Media::Graphql => found.ops.extend(operation(body, param("operationName"), None).map(|op| (0, op))),
        Media::Json | Media::Other => match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(map)) => found.ops.extend(from_json(&map).map(|op| (0, op))),
            Ok(Value::Array(items)) => {
                found.batch = true;
                let entries = items.iter().enumerate().take(OPS_CAP);
                found.ops = entries.filter_map(|(i, item)| Some((i, from_json(item.as_object()?)?))).collect();
            }
            _ => {}
        },
        Media::Form => {}
    }
    found
}

/// One operation from a JSON request object (`query`, `operationName`, `variables`).
fn from_json(map: &serde_json::Map<String, Value>) -> Option<GraphqlOperation> {
    let doc = map.get("query")?.as_str()?;
    operation(doc, map.get("operationName").and_then(Value::as_str), map.get("variables"))
}

/// The selected operation of a document, or None when the document defines none.
fn operation(doc: &str, operation_name: Option<&str>, variables: Option<&Value>) -> Option<GraphqlOperation> {
    let defs = definitions(doc);
    let selected = match operation_name {
        Some(wanted) => defs.iter().find(|d| d.name.as_deref() == Some(wanted)),
        None => None,
    }
    .or(if defs.len() == 1 { defs.first() } else { None });
    let (operation_type, name) = match (selected, defs.first()) {
        (Some(def), _) => (def.kind, def.name.clone().or_else(|| operation_name.map(cap_name))),
        (None, Some(first)) => (first.kind, operation_name.map(cap_name)),
        (None, None) => return None,
    };
    let variables = match variables {
        None | Some(Value::Null) => None,
        Some(value) => {
            let mut value = value.clone();
            redact::json(&mut value);
            Some(shrink(value))
        }
    };
    Some(GraphqlOperation { operation_type: operation_type.to_string(), name, variables, errors: Vec::new() })
}

/// Fills each operation's `errors` from the response body text (a JSON object, or an array for batches).
pub(super) fn attach_errors(found: &mut Found, response: Option<&str>) {
    let Some(value) = response.and_then(|text| serde_json::from_str::<Value>(text).ok()) else { return };
    for (index, op) in &mut found.ops {
        let entry = match (&value, found.batch) {
            (Value::Array(items), true) => items.get(*index),
            (Value::Object(_), _) => Some(&value),
            _ => None,
        };
        op.errors = entry.map(messages).unwrap_or_default();
    }
}

/// The `message` strings of `errors[]` in one GraphQL response object.
fn messages(response: &Value) -> Vec<String> {
    let Some(Value::Array(errors)) = response.get("errors") else { return Vec::new() };
    errors
        .iter()
        .filter_map(|e| e.get("message").and_then(Value::as_str))
        .take(ERRORS_CAP)
        .map(|m| cap(m, HEADER_VALUE_CAP))
        .collect()
}

/// Keeps variables displayable: long strings and arrays are shortened when the whole is large.
fn shrink(value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::String(s) if s.len() > 256 => *s = format!("{}…", cap(s, 256)),
            Value::Array(items) => {
                items.truncate(50);
                items.iter_mut().for_each(walk);
            }
            Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    let size = |v: &Value| serde_json::to_string(v).map(|s| s.len()).unwrap_or(usize::MAX);
    if size(&value) <= TEXT_CAP {
        return value;
    }
    let mut value = value;
    walk(&mut value);
    let len = size(&value);
    if len <= TEXT_CAP { value } else { Value::String(format!("[{len} bytes of variables omitted]")) }
}

/// The prefix of `s` of at most `max` bytes, cut at a character boundary.
pub(super) fn cap(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn cap_name(name: &str) -> String {
    cap(name, NAME_CAP)
}

/// An operation definition found by the lexer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Definition {
    kind: &'static str,
    name: Option<String>,
}

/// The operation definitions of a document, in order (fragments and anything else skipped).
fn definitions(doc: &str) -> Vec<Definition> {
    let mut lex = Lexer::new(doc);
    let mut defs = Vec::new();
    while defs.len() < DEFS_CAP {
        let Some(tok) = lex.next() else { break };
        match tok.kind {
            Kind::Punct(b'{') => {
                defs.push(Definition { kind: "query", name: None });
                lex.skip_group();
            }
            Kind::Punct(b'(' | b'[') => lex.skip_group(),
            Kind::Name => {
                let word = tok.text(doc);
                let kind = match word {
                    "query" => "query",
                    "mutation" => "mutation",
                    "subscription" => "subscription",
                    "fragment" => {
                        lex.skip_to_selection();
                        continue;
                    }
                    _ => continue,
                };
                let mut peek = lex.clone();
                let name = match peek.next() {
                    Some(t) if t.kind == Kind::Name => {
                        lex = peek;
                        Some(cap_name(t.text(doc)))
                    }
                    _ => None,
                };
                defs.push(Definition { kind, name });
                lex.skip_to_selection();
            }
            _ => {}
        }
    }
    defs
}

/// Masks string and number literals given to secret-looking arguments or fields (`password: "x"`).
pub(super) fn redact_document(doc: &str) -> String {
    let mut lex = Lexer::new(doc);
    let mut spans = Vec::new();
    let (mut before, mut prev): (Option<Token>, Option<Token>) = (None, None);
    while let Some(tok) = lex.next() {
        if let (Some(name), Some(colon)) = (before, prev)
            && matches!(tok.kind, Kind::Str | Kind::Number)
            && colon.kind == Kind::Punct(b':')
            && name.kind == Kind::Name
            && redact::is_secret_name(name.text(doc))
        {
            spans.push((tok.start, tok.end));
        }
        (before, prev) = (prev, Some(tok));
    }
    let mut out = String::with_capacity(doc.len());
    let mut at = 0;
    for (start, end) in spans {
        out.push_str(&doc[at..start]);
        out.push('"');
        out.push_str(redact::MASK);
        out.push('"');
        at = end;
    }
    out.push_str(&doc[at..]);
    out
}

/// Redacts the `query` documents of a GraphQL JSON request (an object or a batch array).
pub(super) fn redact_json_queries(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(doc)) = map.get_mut("query") {
                *doc = redact_document(doc);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json_queries),
        _ => {}
    }
}

/// Redacts the `query` and `variables` parameters of a GraphQL GET path (re-encoded only when changed).
pub(super) fn redact_get_path(path: &str) -> String {
    let Some((base, query)) = path.split_once('?') else { return path.to_string() };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| {
            let Some((name, raw)) = pair.split_once('=') else { return pair.to_string() };
            let value = percent_decode(raw);
            let redacted = match name {
                "query" => redact_document(&value),
                "variables" => match serde_json::from_str::<Value>(&value) {
                    Ok(mut v) => {
                        redact::json(&mut v);
                        serde_json::to_string(&v).unwrap_or_default()
                    }
                    Err(_) => value.clone(),
                },
                _ => return pair.to_string(),
            };
            if redacted == value { pair.to_string() } else { format!("{name}={}", percent_encode(&redacted)) }
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// The decoded `name=value` parameters of a request target's query string.
fn query_params(target: &str) -> Vec<(String, String)> {
    let Some((_, query)) = target.split_once('?') else { return Vec::new() };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push(hex(b[i + 1]).unwrap_or(0) << 4 | hex(b[i + 2]).unwrap_or(0));
                i += 3;
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// A lexical token: its kind and byte span (always at ASCII boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

impl Token {
    fn text(self, doc: &str) -> &str {
        doc.get(self.start..self.end).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Punct(u8),
    Name,
    Str,
    Number,
}

/// A tolerant GraphQL lexer: skips whitespace, commas, comments and unknown bytes; strings (block
/// strings included) are single tokens, unterminated ones run to the end of the line or document.
#[derive(Debug, Clone)]
struct Lexer<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn new(doc: &'a str) -> Self {
        Lexer { b: doc.as_bytes(), i: 0 }
    }

    fn next(&mut self) -> Option<Token> {
        let b = self.b;
        loop {
            let start = self.i;
            let c = *b.get(start)?;
            self.i += 1;
            let kind = match c {
                b'#' => {
                    while self.i < b.len() && !matches!(b[self.i], b'\n' | b'\r') {
                        self.i += 1;
                    }
                    continue;
                }
                b'"' if b[start..].starts_with(b"\"\"\"") => {
                    self.i = start + 3;
                    while self.i < b.len() && !b[self.i..].starts_with(b"\"\"\"") {
                        self.i += if b[self.i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                    }
                    self.i = (self.i + 3).min(b.len());
                    Kind::Str
                }
                b'"' => {
                    while self.i < b.len() && !matches!(b[self.i], b'"' | b'\n' | b'\r') {
                        self.i += if b[self.i] == b'\\' { 2 } else { 1 };
                    }
                    self.i = (self.i + 1).min(b.len());
                    Kind::Str
                }
                b'.' if b[start..].starts_with(b"...") => {
                    self.i = start + 3;
                    Kind::Punct(b'.')
                }
                b'!' | b'$' | b'&' | b'(' | b')' | b':' | b'=' | b'@' | b'[' | b']' | b'{' | b'|' | b'}' => {
                    Kind::Punct(c)
                }
                b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                    while self.i < b.len() && (b[self.i] == b'_' || b[self.i].is_ascii_alphanumeric()) {
                        self.i += 1;
                    }
                    Kind::Name
                }
                b'-' | b'0'..=b'9' => {
                    while self.i < b.len()
                        && (b[self.i].is_ascii_alphanumeric() || matches!(b[self.i], b'.' | b'+' | b'-'))
                    {
                        self.i += 1;
                    }
                    Kind::Number
                }
                _ => continue,
            };
            self.i = self.i.min(b.len());
            return Some(Token { kind, start, end: self.i });
        }
    }

    /// Skips to the end of the group whose opener was just read (any of `(`, `[`, `{`).
    fn skip_group(&mut self) {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next().map(|t| t.kind) {
                Some(Kind::Punct(b'(' | b'[' | b'{')) => depth += 1,
                Some(Kind::Punct(b')' | b']' | b'}')) => depth -= 1,
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Skips variable definitions, type conditions and directives up to and through a selection set.
    fn skip_to_selection(&mut self) {
        while let Some(tok) = self.next() {
            match tok.kind {
                Kind::Punct(b'{') => return self.skip_group(),
                Kind::Punct(b'(' | b'[') => self.skip_group(),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(doc: &str) -> Vec<(&'static str, Option<String>)> {
        definitions(doc).into_iter().map(|d| (d.kind, d.name)).collect()
    }

    #[test]
    fn lexer_finds_operations_around_strings_comments_and_fragments() {
        assert_eq!(defs("{ me { id } }"), vec![("query", None)]);
        let doc = r#"
            # mutation Fake { x }
            fragment F on User @dir(a: "{") { id name(arg: "mutation X {") }
            query Q($a: In = {x: [1, 2]}, $b: String = """ block " { """) @cached { a(s: "}") { ...F } }
            mutation M { b }
            subscription { c }
        "#;
        assert_eq!(
            defs(doc),
            vec![("query", Some("Q".into())), ("mutation", Some("M".into())), ("subscription", None)]
        );
        assert_eq!(defs("query"), vec![("query", None)]);
        assert!(defs("search terms").is_empty());
        assert!(defs("\"unterminated { query").is_empty());
    }

    #[test]
    fn inline_secret_arguments_and_get_params_are_redacted() {
        assert_eq!(
            redact_document(r#"mutation { login(user: "a", password: "hunter2", otp: 1234) { token } }"#),
            r#"mutation { login(user: "a", password: "[redacted]", otp: "[redacted]") { token } }"#
        );
        assert_eq!(redact_get_path("/g?query=%7Bme%7D&x=1"), "/g?query=%7Bme%7D&x=1");
        assert_eq!(
            redact_get_path("/g?variables=%7B%22password%22%3A%22x%22%7D"),
            "/g?variables=%7B%22password%22%3A%22%5Bredacted%5D%22%7D"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }
}
