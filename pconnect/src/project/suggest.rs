//! Unknown keys and "did you mean": the position tree checked against the key lists of the JSON
//! Schema that schemars derives from `ProjectSpec` (`super::schema`), so the lists, the suggestions
//! and the expected types named in hints cannot go stale. Every unknown key is reported, not only
//! the first.

use std::sync::LazyLock;

use serde_json::Value;
use serde_saphyr::Spanned;

use super::locate::{Node, non_root};
use super::problem::Problem;

/// Keys the schema does not allow where they are, each with a suggestion.
pub(super) fn unknown_keys(tree: &Spanned<Node>, origin: &str) -> Vec<Problem> {
    let root = schema_value();
    let mut problems = Vec::new();
    check_keys(tree, origin, "", &alternatives(root, root), &mut problems);
    problems
}

fn check_keys(node: &Spanned<Node>, origin: &str, path: &str, schemas: &[&Value], problems: &mut Vec<Problem>) {
    match &node.value {
        Node::Map(entries) => {
            let allowed = allowed_keys(schemas);
            for (key, value) in entries {
                let name = key.value.0.as_str();
                if let Some(allowed) = &allowed
                    && !allowed.contains(&name)
                {
                    let (message, hint) = unknown_key(name, allowed);
                    problems.push(Problem::at(origin, key.referenced, non_root(path), message, Some(hint)));
                    continue;
                }
                let children = child_schemas(schemas, Segment::Key(name));
                check_keys(value, origin, &format!("{path}/{name}"), &children, problems);
            }
        }
        Node::Seq(items) => {
            let children = child_schemas(schemas, Segment::Index);
            for (i, item) in items.iter().enumerate() {
                check_keys(item, origin, &format!("{path}/{i}"), &children, problems);
            }
        }
        Node::Scalar => {}
    }
}

/// "unknown key" with a "did you mean" (or the list of allowed keys).
pub(super) fn unknown_key(key: &str, allowed: &[&str]) -> (String, String) {
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
    static SCHEMA: LazyLock<Value> = LazyLock::new(|| super::schema::schema().to_value());
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
pub(super) fn expected_at(path: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use crate::project::load::testing::problems;

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
}
