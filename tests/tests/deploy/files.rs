//! Readers for the deployment files as the tools read them: Dockerfile instructions and stages,
//! `.dockerignore` patterns, systemd unit keys, `${VAR:-default}` interpolation and durations.

use std::collections::BTreeMap;

/// One Dockerfile instruction: its keyword (upper case) and its arguments, continuations joined.
#[derive(Debug, Clone)]
pub(crate) struct Instruction {
    pub(crate) keyword: String,
    pub(crate) args: String,
}

/// One build stage: its base image, its `AS` name, and its instructions after `FROM`.
#[derive(Debug)]
pub(crate) struct Stage {
    pub(crate) image: String,
    pub(crate) name: Option<String>,
    pub(crate) steps: Vec<Instruction>,
}

impl Stage {
    /// The arguments of every `keyword` instruction of the stage, in order.
    pub(crate) fn all(&self, keyword: &str) -> Vec<&str> {
        self.steps.iter().filter(|s| s.keyword == keyword).map(|s| s.args.as_str()).collect()
    }

    /// The arguments of the stage's last `keyword` instruction (the one that counts).
    pub(crate) fn last(&self, keyword: &str) -> Option<&str> {
        self.all(keyword).pop()
    }
}

/// A Dockerfile's stages. Comments (parser directives included) and blank lines are skipped, also
/// inside a continued instruction, as Docker does.
pub(crate) fn dockerfile(text: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let (keyword, args) = logical.split_once(char::is_whitespace).unwrap_or((logical.as_str(), ""));
        let instruction = Instruction { keyword: keyword.to_ascii_uppercase(), args: squeeze(args) };
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                _ => None,
            };
            stages.push(Stage {
                image: words.first().copied().unwrap_or_default().to_owned(),
                name,
                steps: Vec::new(),
            });
        } else {
            let stage = stages.last_mut().unwrap_or_else(|| panic!("`{logical}` comes before any FROM"));
            stage.steps.push(instruction);
        }
        logical.clear();
    }
    assert!(logical.is_empty(), "the Dockerfile ends inside a continued instruction: {logical}");
    stages
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The exec form of CMD/ENTRYPOINT/HEALTHCHECK CMD: a JSON array of strings.
pub(crate) fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("`{args}` is not the exec (JSON array) form: {e}"))
}

/// The variables of an ENV instruction: `K=V K2="V2"` (values without spaces), or `K V`.
pub(crate) fn env(args: &str) -> Vec<(String, String)> {
    let Some(first) = args.split_whitespace().next() else { return Vec::new() };
    if !first.contains('=') {
        let value = args[first.len()..].trim();
        return vec![(first.to_owned(), value.to_owned())];
    }
    args.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {args}: `{pair}` is not K=V"));
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect()
}

/// A COPY or ADD instruction: its `--from` stage, its sources and its destination.
#[derive(Debug)]
pub(crate) struct Copy {
    pub(crate) from: Option<String>,
    pub(crate) sources: Vec<String>,
    pub(crate) dest: String,
}

pub(crate) fn copy(args: &str) -> Copy {
    let mut from = None;
    let mut paths = Vec::new();
    for word in args.split_whitespace() {
        match word.strip_prefix("--") {
            Some(flag) => {
                if let Some(stage) = flag.strip_prefix("from=") {
                    from = Some(stage.to_owned());
                }
            }
            None => paths.push(word.to_owned()),
        }
    }
    let dest = paths.pop().unwrap_or_else(|| panic!("COPY {args} has no destination"));
    assert!(!paths.is_empty(), "COPY {args} has no source");
    Copy { from, sources: paths, dest }
}

/// Whether `.dockerignore` patterns leave `path` (relative to the context) out of the context.
/// Handles what this repo's file uses: plain paths, `dir/`, `**/` prefixes, `*` in a name.
pub(crate) fn ignored(patterns: &[String], path: &str) -> bool {
    let path = path.trim_start_matches("./").trim_end_matches('/');
    if path.is_empty() || path == "." {
        return false;
    }
    // The path itself or any directory above it.
    let mut candidates: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
    candidates.push(path);
    patterns.iter().map(|p| p.trim_end_matches('/')).any(|pattern| match pattern.strip_prefix("**/") {
        Some(tail) => path.split('/').any(|segment| glob(tail, segment)),
        None => candidates.iter().any(|c| glob(pattern, c)),
    })
}

/// `*` matches any run of characters except `/`; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else { return false };
            (0..=rest.len())
                .take_while(|&i| !rest[..i].contains('/'))
                .any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

/// The patterns of a `.dockerignore` (comments and blank lines dropped).
pub(crate) fn dockerignore(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
}

/// A systemd unit: section -> key -> values (a key may repeat), continuation lines joined.
pub(crate) type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

pub(crate) fn unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if logical.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';')) {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(trimmed);
        let (key, value) = logical.split_once('=').unwrap_or_else(|| panic!("`{logical}` is not KEY=VALUE"));
        unit.entry(section.clone()).or_default().entry(key.trim().to_owned()).or_default().push(squeeze(value));
        logical.clear();
    }
    unit
}

/// Replaces compose's `${NAME:-default}` with its default (as with NAME unset) and `${NAME}` with
/// `vars[NAME]` (systemd's `Environment=`); any other `$` form is refused.
pub(crate) fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap_or_else(|| panic!("unclosed ${{ in `{text}`")) + start;
        let inner = &rest[start + 2..end];
        match inner.split_once(":-") {
            Some((_, default)) => out.push_str(default),
            None => out.push_str(vars.get(inner).unwrap_or_else(|| panic!("`{text}` uses ${{{inner}}}, never set"))),
        }
        rest = &rest[end + 1..];
    }
    assert!(!rest.contains('$'), "`{text}`: only ${{NAME}} and ${{NAME:-default}} are understood here");
    out.push_str(rest);
    out
}

/// Seconds in `30s`, `10`, `2min`, `1m30s`, `1h` (systemd, compose and the hub's flags alike).
pub(crate) fn seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().unwrap_or_else(|_| panic!("`{text}` is not a duration"));
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match rest[..unit_len].trim() {
            "" | "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            other => panic!("`{text}`: unknown unit `{other}`"),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    total
}

/// The value following `flag` in a command line (`--flag value`).
pub(crate) fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// The port of an `ADDR:PORT` argument.
pub(crate) fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("`{addr}` has no port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_understand_what_the_files_use() {
        let stages = dockerfile("# syntax=x\nFROM a:1 AS build\nRUN one \\\n  # note\n  two\nFROM b\nUSER u\n");
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].name.as_deref(), Some("build"));
        assert_eq!(stages[0].last("RUN"), Some("one two"));
        assert_eq!((stages[1].image.as_str(), stages[1].last("USER")), ("b", Some("u")));
        let c = copy("--from=build --chown=1:1 /src/a /b");
        assert_eq!((c.from.as_deref(), c.sources, c.dest.as_str()), (Some("build"), vec!["/src/a".to_owned()], "/b"));
        let ignore = dockerignore("# c\ntarget/\n**/*.debug\n.git/\n");
        assert!(ignored(&ignore, "target/release/x") && ignored(&ignore, "a/b.debug") && ignored(&ignore, ".git"));
        assert!(!ignored(&ignore, "deploy/healthcheck") && !ignored(&ignore, "targets") && !ignored(&ignore, "."));
        let u = unit("[Service]\nExecStart=/x a \\\n  b\nLimitNOFILE=9\n");
        assert_eq!(u["Service"]["ExecStart"], ["/x a b"]);
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
        assert_eq!(env("A=1 B=\"2\""), pairs(&[("A", "1"), ("B", "2")]));
        assert_eq!(env("A 1 2"), pairs(&[("A", "1 2")]));
        let vars = BTreeMap::from([("D".to_owned(), "d".to_owned())]);
        assert_eq!(interpolate("--domain ${D} ${X:-localhost}", &vars), "--domain d localhost");
        assert_eq!((seconds("30s"), seconds("10"), seconds("1m30s"), seconds("2min")), (30, 10, 90, 120));
    }
}
