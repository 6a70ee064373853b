//! Positions in a project file: a schema-less tree of every mapping key, list item and value with
//! its location (serde-saphyr's [`Spanned`]), walked from a JSON-pointer path
//! (`/services/web/link/expires`, from `ProjectSpec::check`) to its `line:column`, and from a
//! position back to its path.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// A YAML node without its values: mappings (keys kept, with their positions), lists and scalars.
#[derive(Debug)]
pub(super) enum Node {
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// A mapping key as text (`3000:` is the key `3000`).
#[derive(Debug)]
pub(super) struct Key(pub(super) String);

/// What [`path_at`] looks for at a position.
#[derive(Clone, Copy)]
pub(super) enum Find {
    Key,
    Value,
}

/// The key a path names (the item, for a list index; the nearest ancestor present).
pub(super) fn locate(tree: &Spanned<Node>, path: &str) -> Location {
    let mut node = tree;
    let mut at = node.referenced;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let next = match &node.value {
            Node::Map(entries) => entries.iter().find(|(k, _)| k.value.0 == segment).map(|(k, v)| (k.referenced, v)),
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
pub(super) fn scalar_at(tree: &Spanned<Node>, at: Location) -> bool {
    let mut scalar = false;
    walk(tree, &mut |_, node| {
        if node.referenced.line() == at.line() && node.referenced.column() == at.column() {
            scalar = matches!(node.value, Node::Scalar);
        }
    });
    scalar
}

/// The path of the deepest key (or value) at a position.
pub(super) fn path_at(tree: &Spanned<Node>, at: Location, find: Find) -> Option<String> {
    let same = |l: &Location| l.line() == at.line() && l.column() == at.column();
    let mut found = None;
    walk_keys(tree, &mut |path, key, value| match find {
        Find::Key if key.is_some_and(same) => found = Some(path.to_string()),
        Find::Value if same(&value.referenced) => found = Some(path.to_string()),
        _ => {}
    });
    found
}

/// A path as reported: none for the whole document.
pub(super) fn non_root(path: &str) -> Option<String> {
    (!path.is_empty() && path != "/").then(|| path.to_string())
}

/// The path of the mapping or list holding `path`.
pub(super) fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |at| &path[..at])
}

/// Visits every node with its path, parents first.
pub(super) fn walk(tree: &Spanned<Node>, visit: &mut dyn FnMut(&str, &Spanned<Node>)) {
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
    use crate::project::load::testing::problems;

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
}
