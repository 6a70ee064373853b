//! No import cycles among each crate's modules (ARCHITECTURE.md, "Layers"). Every source file is
//! a module; a module depends on another when it names it (or an item re-exported from it) through
//! `crate::`, `super::`, `self::` or one of its own child modules, in a `use` (brace groups
//! expanded) or in code. Comments and `#[cfg(test)]` code do not count. A cycle fails the test
//! with the modules on it, so a layer that starts to lean back on the one above is seen at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates whose module graph must stay acyclic.
const CRATES: &[&str] = &["hub", "link", "proto", "capture", "pconnect"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// One module: its path (`""` for the crate root) and its source without comments or test code.
struct Module {
    path: String,
    code: String,
}

/// Every library module of the crate whose sources are in `src`.
fn modules(src: &Path) -> Vec<Module> {
    let mut out = Vec::new();
    walk(src, src, &mut out);
    out
}

fn walk(src: &Path, dir: &Path, out: &mut Vec<Module>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // `tests/` folders under `src` hold `#[cfg(test)]` modules.
            if path.file_name().is_some_and(|n| n != "tests" && n != "bin") {
                walk(src, &path, out);
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        match parts.last().map(String::as_str) {
            // A binary's root is another crate: it may use the library freely.
            Some("main") if parts.len() == 1 => continue,
            Some("lib") if parts.len() == 1 => parts.clear(),
            Some("mod") => {
                parts.pop();
            }
            _ => {}
        }
        let text = std::fs::read_to_string(&path).unwrap();
        out.push(Module { path: parts.join("::"), code: strip(&text) });
    }
}

/// The source without comments, string literals' contents, and anything from the first
/// `#[cfg(test)]` on (test modules sit at the end of a file here).
fn strip(text: &str) -> String {
    let text = text.find("#[cfg(test)]").map_or(text, |i| &text[..i]);
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if text[i..].starts_with("//") {
            i += text[i..].find('\n').unwrap_or(text.len() - i);
        } else if text[i..].starts_with("/*") {
            i += text[i..].find("*/").map_or(text.len() - i, |j| j + 2);
        } else if bytes[i] == b'"' && !text[..i].ends_with('\'') {
            // Skip the literal, honouring escapes (raw strings here hold no `"` worth worrying about).
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Paths (as segment lists) written in `code`, with `a::{b, c::{d}}` expanded into `a::b`, `a::c::d`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_ident = is_ident(chars[i]) && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':'));
        if starts_ident {
            let (found, end) = path_at(&chars, i, Vec::new());
            out.extend(found);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads a path starting at `i` (after `prefix`); returns every path it expands to and where it ended.
fn path_at(chars: &[char], mut i: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut segments = prefix;
    loop {
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        if i > start {
            segments.push(chars[start..i].iter().collect());
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        if rest != "::" {
            return (vec![segments], i);
        }
        i += 2;
        if chars.get(i) == Some(&'{') {
            i += 1;
            let mut all = Vec::new();
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    return (all, i + 1);
                }
                if chars[i] == '*' || !is_ident(chars[i]) && chars[i] != '{' {
                    i += 1;
                    continue;
                }
                let (found, end) = path_at(chars, i, segments.clone());
                all.extend(found);
                i = end;
                // Skip an `as alias`.
                while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                    i += 1;
                }
            }
        }
    }
}

/// The module graph of one crate: module -> modules it depends on.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(src);
    let known: BTreeSet<&str> = modules.iter().map(|m| m.path.as_str()).collect();
    // Re-exports: (module, name) -> the absolute path it stands for (`None`: another crate's item).
    // A module with `pub use other_crate::*` lends every name it does not define to that crate.
    let mut reexports: BTreeMap<(String, String), Option<Vec<String>>> = BTreeMap::new();
    let mut external_glob: BTreeSet<String> = BTreeSet::new();
    for m in &modules {
        for stmt in m.code.split(';') {
            let stmt = stmt.trim();
            let Some(rest) = stmt.strip_prefix("pub use ").or_else(|| stmt.strip_prefix("pub(crate) use ")) else {
                continue;
            };
            for path in paths(rest) {
                let abs = absolute(&m.path, &path, &known);
                if rest.trim_end().ends_with("::*") {
                    if abs.is_none() {
                        external_glob.insert(m.path.clone());
                    }
                    continue;
                }
                reexports.insert((m.path.clone(), path.last().unwrap().clone()), abs);
            }
        }
    }
    let defines = |module: &str, name: &str| {
        let code = &modules.iter().find(|m| m.path == module).unwrap().code;
        ["struct ", "enum ", "fn ", "const ", "static ", "type ", "trait ", "mod ", "macro_rules! "]
            .iter()
            .any(|kind| code.contains(&format!("{kind}{name}")))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &modules {
        let deps = edges.entry(m.path.clone()).or_default();
        for path in paths(&m.code) {
            let Some(mut abs) = absolute(&m.path, &path, &known) else { continue };
            // Follow re-exports until the path names the module that defines the item.
            let mut external = false;
            for _ in 0..8 {
                let (module, rest) = split_module(&abs, &known);
                let Some(name) = rest.first() else { break };
                match reexports.get(&(module.clone(), name.clone())) {
                    Some(None) => external = true,
                    Some(Some(target)) if *target != abs => {
                        let mut next = target.clone();
                        next.extend(rest[1..].iter().cloned());
                        abs = next;
                        continue;
                    }
                    Some(Some(_)) => {}
                    None => external = external_glob.contains(&module) && !defines(&module, name),
                }
                break;
            }
            let (module, _) = split_module(&abs, &known);
            if !external && module != m.path {
                deps.insert(module);
            }
        }
    }
    edges
}

/// The absolute segments `path` (written in module `from`) stands for, if it is crate-internal.
fn absolute(from: &str, path: &[String], known: &BTreeSet<&str>) -> Option<Vec<String>> {
    let mut base: Vec<String> = if from.is_empty() { Vec::new() } else { from.split("::").map(String::from).collect() };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        Some("self") => rest = &rest[1..],
        Some(first) => {
            // A child module of `from`, named without `self::`.
            let child = if from.is_empty() { first.to_string() } else { format!("{from}::{first}") };
            if !known.contains(child.as_str()) || path.len() < 2 {
                return None;
            }
        }
        None => return None,
    }
    if rest.is_empty() {
        return None;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Splits absolute segments into the longest known module prefix and the rest.
fn split_module(abs: &[String], known: &BTreeSet<&str>) -> (String, Vec<String>) {
    for n in (0..=abs.len()).rev() {
        let candidate = abs[..n].join("::");
        if known.contains(candidate.as_str()) {
            return (candidate, abs[n..].to_vec());
        }
    }
    (String::new(), abs.to_vec())
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.out
}

fn describe(edges: &BTreeMap<String, BTreeSet<String>>, cycle: &[String]) -> String {
    let name = |m: &str| if m.is_empty() { "(crate root)".to_string() } else { m.to_string() };
    let mut lines = vec![format!("cycle: {}", cycle.iter().map(|m| name(m)).collect::<Vec<_>>().join(", "))];
    for m in cycle {
        let inner: Vec<_> = edges[m].iter().filter(|d| cycle.contains(d)).map(|d| name(d)).collect();
        lines.push(format!("    {} -> {}", name(m), inner.join(", ")));
    }
    lines.join("\n")
}

#[test]
fn no_crate_has_an_import_cycle_among_its_modules() {
    let root = workspace();
    let mut problems = Vec::new();
    for krate in CRATES {
        let edges = graph(&root.join(krate).join("src"));
        assert!(edges.len() > 3, "{krate}: the walk found too few modules ({}) to be right", edges.len());
        for cycle in cycles(&edges) {
            problems.push(format!("{krate}: {}", describe(&edges, &cycle)));
        }
    }
    assert!(problems.is_empty(), "import cycles:\n{}", problems.join("\n"));
}

/// The analysis itself: a planted two-module cycle through a brace group and a re-export is found.
#[test]
fn a_cycle_through_braces_and_reexports_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "//! root\nmod a;\nmod b;\npub use a::Thing;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "// uses crate::b in a comment only\npub struct Thing;\npub mod c;\n")
        .unwrap();
    std::fs::write(src.join("a/c.rs"), "use crate::{b::{Other, More as M}};\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct Other; pub struct More;\nfn f() -> crate::Thing { todo!() }\n")
        .unwrap();
    let edges = graph(src);
    assert_eq!(edges["a::c"], BTreeSet::from(["b".to_string()]));
    assert_eq!(edges["b"], BTreeSet::from(["a".to_string()]));
    assert!(cycles(&edges).is_empty(), "a::c -> b -> a is not a cycle");
    std::fs::write(src.join("a/mod.rs"), "pub struct Thing;\npub mod c;\nuse self::c::*;\n").unwrap();
    let edges = graph(src);
    assert_eq!(cycles(&edges), vec![vec!["a".to_string(), "a::c".to_string(), "b".to_string()]]);
}
