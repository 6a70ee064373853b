//! Rendering of Redis values as text (redis-cli style summaries, capped, binary as hex) and the
//! redaction of secrets in commands (AUTH, HELLO AUTH, MIGRATE AUTH/AUTH2, CONFIG SET requirepass,
//! ACL SETUSER passwords) and in the replies that echo them (CONFIG GET, ACL GETUSER, ACL LIST).

use std::fmt::Write as _;

use super::resp::{AggKind, Blob, Val};
use crate::redact::{MASK, is_secret_name};

/// Characters shown per argument.
pub(super) const ARG_CHARS: usize = 200;
/// Characters shown per string in a reply.
const REPLY_CHARS: usize = 100;
/// Characters of a whole reply summary.
const SUMMARY_CHARS: usize = 300;
/// Characters of an error message.
pub(super) const ERROR_CHARS: usize = 1024;
/// Aggregate levels whose items a summary lists.
const SUMMARY_DEPTH: usize = 2;

/// Text of a string: printable UTF-8 as is, anything else as `0x` hex, cut at `cap` characters with
/// `… (N bytes)`. `quoted` wraps text in quotes and escapes it like redis-cli.
pub(super) fn blob(b: &Blob, cap: usize, quoted: bool) -> String {
    let text = match std::str::from_utf8(&b.head) {
        Ok(text) => Some(text),
        // A prefix cut inside a character is still text.
        Err(e) if e.error_len().is_none() && b.truncated() => std::str::from_utf8(&b.head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    let text = text.filter(|t| !t.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')));
    let mut out = String::new();
    let mut cut = b.truncated();
    match text {
        Some(text) => {
            if quoted {
                out.push('"');
            }
            for (n, c) in text.chars().enumerate() {
                if n == cap {
                    cut = true;
                    break;
                }
                match c {
                    '"' | '\\' if quoted => {
                        out.push('\\');
                        out.push(c);
                    }
                    '\n' if quoted => out.push_str("\\n"),
                    '\r' if quoted => out.push_str("\\r"),
                    '\t' if quoted => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            if cut {
                out.push('…');
            }
            if quoted {
                out.push('"');
            }
        }
        None => {
            out.push_str("0x");
            let shown = b.head.len().min(cap / 2);
            for byte in &b.head[..shown] {
                let _ = write!(out, "{byte:02x}");
            }
            if shown < b.head.len() || b.truncated() {
                cut = true;
                out.push('…');
            }
        }
    }
    if cut {
        let _ = write!(out, " ({} bytes)", b.len);
    }
    out
}

/// An argument as shown.
pub(super) fn arg(b: &Blob) -> String {
    blob(b, ARG_CHARS, false)
}

/// The upper-cased command name.
pub(super) fn command_name(b: &Blob) -> String {
    String::from_utf8_lossy(&b.head).chars().take(64).collect::<String>().to_ascii_uppercase()
}

/// A short argument as an upper-case keyword (`None` when long or binary).
pub(super) fn keyword(b: Option<&Blob>) -> Option<String> {
    let b = b?;
    if b.len > 32 {
        return None;
    }
    std::str::from_utf8(&b.head).ok().map(str::to_ascii_uppercase)
}

/// A reply as redis-cli would summarise it: `OK`, `(integer) 3`, `"value"`, `(nil)`, `array(2) [...]`.
pub(super) fn summary(value: &Val) -> String {
    let mut out = String::new();
    write_val(&mut out, value, 0);
    cap_chars(out, SUMMARY_CHARS)
}

/// Cuts text at `cap` characters, marking the cut.
pub(super) fn cap_chars(text: String, cap: usize) -> String {
    match text.char_indices().nth(cap) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

fn write_val(out: &mut String, value: &Val, depth: usize) {
    match value {
        Val::Simple(b) => out.push_str(&blob(b, REPLY_CHARS, false)),
        Val::Error(b) => {
            out.push_str("(error) ");
            out.push_str(&blob(b, REPLY_CHARS, false));
        }
        Val::Int(n) => {
            let _ = write!(out, "(integer) {n}");
        }
        Val::Double(d) => {
            let _ = write!(out, "(double) {d}");
        }
        Val::Big(n) => {
            let _ = write!(out, "(big number) {n}");
        }
        Val::Bool(b) => out.push_str(if *b { "(true)" } else { "(false)" }),
        Val::Nil => out.push_str("(nil)"),
        Val::Bulk(b) => out.push_str(&blob(b, REPLY_CHARS, true)),
        Val::Verbatim(b) => {
            // `txt:` / `mkd:` format prefix.
            let text = match b.head.get(3) {
                Some(b':') => Blob { len: b.len - 4, head: b.head[4..].to_vec() },
                _ => b.clone(),
            };
            out.push_str(&blob(&text, REPLY_CHARS, true));
        }
        Val::Agg { kind, len, items } => {
            let name = match kind {
                AggKind::Array => "array",
                AggKind::Map => "map",
                AggKind::Set => "set",
                AggKind::Push => "push",
                AggKind::Attribute => "attribute",
            };
            if *len == 0 {
                let _ = write!(out, "(empty {name})");
                return;
            }
            let _ = write!(out, "{name}({len})");
            if depth >= SUMMARY_DEPTH || items.is_empty() {
                return;
            }
            let (open, close) = if kind.paired() { (" {", "}") } else { (" [", "]") };
            out.push_str(open);
            let step = if kind.paired() { 2 } else { 1 };
            let mut shown = 0;
            for (n, item) in items.chunks(step).enumerate() {
                if out.chars().count() > SUMMARY_CHARS {
                    break;
                }
                if n > 0 {
                    out.push_str(", ");
                }
                write_val(out, &item[0], depth + 1);
                if let Some(v) = item.get(1) {
                    out.push_str(": ");
                    write_val(out, v, depth + 1);
                }
                shown += 1;
            }
            if (shown as u64) < *len {
                out.push_str(", …");
            }
            out.push_str(close);
        }
    }
}

/// How an argument is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mask {
    Show,
    /// Replaced by [`MASK`].
    Hide,
    /// First character kept (`>` of an ACL password rule), the rest masked.
    HideAfterFirst,
}

/// Whether a configuration parameter (CONFIG SET, SENTINEL SET) holds a secret.
fn secret_param(name: Option<&Blob>) -> bool {
    let Some(name) = name else { return false };
    let name = String::from_utf8_lossy(&name.head).to_ascii_lowercase();
    is_secret_name(&name) || name.contains("pass")
}

/// Which arguments of `argv` (name first) are secrets.
fn masks(argv: &[Blob]) -> Vec<Mask> {
    let mut masks = vec![Mask::Show; argv.len()];
    let word = |i: usize| keyword(argv.get(i));
    let mut hide = |i: usize, how: Mask| {
        if let Some(m) = masks.get_mut(i) {
            *m = how;
        }
    };
    let name = word(0).unwrap_or_default();
    let sub = word(1).unwrap_or_default();
    match (name.as_str(), sub.as_str()) {
        ("AUTH", _) => (1..argv.len()).for_each(|i| hide(i, Mask::Hide)),
        ("HELLO", _) => {
            let mut i = 2;
            while i < argv.len() {
                match word(i).as_deref() {
                    Some("AUTH") => {
                        hide(i + 1, Mask::Hide);
                        hide(i + 2, Mask::Hide);
                        i += 3;
                    }
                    Some("SETNAME") => i += 2,
                    _ => i += 1,
                }
            }
        }
        ("MIGRATE", _) => {
            let mut i = 6;
            while i < argv.len() {
                match word(i).as_deref() {
                    Some("KEYS") => break,
                    Some("AUTH") => {
                        hide(i + 1, Mask::Hide);
                        i += 2;
                    }
                    Some("AUTH2") => {
                        hide(i + 1, Mask::Hide);
                        hide(i + 2, Mask::Hide);
                        i += 3;
                    }
                    _ => i += 1,
                }
            }
        }
        ("CONFIG", "SET") => {
            for i in (2..argv.len()).step_by(2) {
                if secret_param(argv.get(i)) {
                    hide(i + 1, Mask::Hide);
                }
            }
        }
        ("SENTINEL", "SET" | "CONFIG") => {
            // `SENTINEL SET <master> <option> <value>...`, `SENTINEL CONFIG SET <param> <value>...`
            for i in (3..argv.len()).step_by(2) {
                if secret_param(argv.get(i)) {
                    hide(i + 1, Mask::Hide);
                }
            }
        }
        ("ACL", "SETUSER") => {
            for (i, rule) in argv.iter().enumerate().skip(3) {
                if matches!(rule.head.first(), Some(b'>' | b'<' | b'#' | b'!')) {
                    hide(i, Mask::HideAfterFirst);
                }
            }
        }
        _ => {}
    }
    masks
}

/// The arguments after the name, as shown, with secrets masked.
pub(super) fn args(argv: &[Blob]) -> Vec<String> {
    argv.iter()
        .zip(masks(argv))
        .skip(1)
        .map(|(b, mask)| match mask {
            Mask::Show => arg(b),
            Mask::Hide => MASK.to_string(),
            Mask::HideAfterFirst => format!("{}{MASK}", b.head.first().map(|&c| char::from(c)).unwrap_or_default()),
        })
        .collect()
}

/// How a reply echoes secrets, by the command that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Echo {
    /// `CONFIG GET`: name/value pairs.
    ConfigGet,
    /// `ACL GETUSER`: a `passwords` field.
    AclGetUser,
    /// `ACL LIST`: rule lines with `#<hash>` / `>pass`.
    AclList,
}

impl Echo {
    pub(super) fn of(argv: &[Blob]) -> Option<Self> {
        match (keyword(argv.first())?.as_str(), keyword(argv.get(1))?.as_str()) {
            ("CONFIG", "GET") => Some(Self::ConfigGet),
            ("SENTINEL", "CONFIG") if keyword(argv.get(2)).as_deref() == Some("GET") => Some(Self::ConfigGet),
            ("ACL", "GETUSER") => Some(Self::AclGetUser),
            ("ACL", "LIST") => Some(Self::AclList),
            _ => None,
        }
    }
}

fn masked() -> Val {
    Val::Simple(Blob::from_bytes(MASK.as_bytes()))
}

/// Masks the secrets a reply echoes.
pub(super) fn redact_reply(echo: Echo, value: &mut Val) {
    let Val::Agg { items, .. } = value else { return };
    match echo {
        Echo::ConfigGet | Echo::AclGetUser => {
            for pair in items.chunks_mut(2) {
                let [name, value] = pair else { continue };
                let name = match name {
                    Val::Simple(b) | Val::Bulk(b) | Val::Verbatim(b) => Some(&*b),
                    _ => None,
                };
                let secret = match echo {
                    Echo::ConfigGet => secret_param(name),
                    _ => name.is_some_and(|n| n.head.eq_ignore_ascii_case(b"passwords")),
                };
                if secret {
                    *value = masked();
                }
            }
        }
        Echo::AclList => {
            for item in items {
                if let Val::Simple(b) | Val::Bulk(b) | Val::Verbatim(b) = item {
                    let rules: Vec<Vec<u8>> = b
                        .head
                        .split(|&c| c == b' ')
                        .map(|rule| match rule.first() {
                            Some(&c @ (b'>' | b'<' | b'#' | b'!')) => [&[c], MASK.as_bytes()].concat(),
                            _ => rule.to_vec(),
                        })
                        .collect();
                    let head = rules.join(&b' ');
                    let len = b.len + head.len() as u64 - b.head.len() as u64;
                    *b = Blob { len, head };
                }
            }
        }
    }
}

/// A MONITOR line (`1339518083.107412 [0 127.0.0.1:60866] "keys" "*"`): the source in brackets and the
/// monitored command's argv, or `None` when it is not one.
pub(super) fn monitor_line(line: &Blob) -> Option<(String, Vec<Blob>)> {
    let text = &line.head;
    if !text.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let open = text.iter().position(|&b| b == b'[')?;
    let close = open + text[open..].windows(2).position(|w| w == b"] ")?;
    let source = String::from_utf8_lossy(&text[open..=close]).into_owned();
    let argv = super::resp::split_args(&text[close + 2..], true)?;
    Some((source, argv.iter().map(|a| Blob::from_bytes(a)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<Blob> {
        words.iter().map(|w| Blob::from_bytes(w.as_bytes())).collect()
    }

    #[test]
    fn redis_text_blobs() {
        assert_eq!(blob(&Blob::from_bytes(b"va\"l"), 10, true), "\"va\\\"l\"");
        assert_eq!(blob(&Blob::from_bytes(b"\x00\xff"), 10, true), "0x00ff");
        assert_eq!(blob(&Blob::from_bytes(b"abcdef"), 3, false), "abc… (6 bytes)");
        assert_eq!(blob(&Blob::from_bytes(b""), 3, true), "\"\"");
        let long = Blob { len: 10_000, head: vec![b'x'; 512] };
        assert_eq!(blob(&long, 4, true), "\"xxxx…\" (10000 bytes)");
    }

    #[test]
    fn redis_text_masks() {
        assert_eq!(args(&argv(&["AUTH", "u", "p"])), [MASK, MASK]);
        assert_eq!(
            args(&argv(&["hello", "3", "auth", "u", "p", "SETNAME", "n"])),
            ["3", "auth", MASK, MASK, "SETNAME", "n"]
        );
        assert_eq!(
            args(&argv(&["MIGRATE", "h", "1", "", "0", "5", "AUTH2", "u", "p", "KEYS", "auth", "k"])),
            ["h", "1", "", "0", "5", "AUTH2", MASK, MASK, "KEYS", "auth", "k"]
        );
        assert_eq!(
            args(&argv(&["CONFIG", "SET", "maxmemory", "1", "masterauth", "s"])),
            ["SET", "maxmemory", "1", "masterauth", MASK]
        );
        assert_eq!(
            args(&argv(&["ACL", "SETUSER", "bob", "on", ">pw", "~*"])),
            ["SETUSER", "bob", "on", ">[redacted]", "~*"]
        );
    }

    #[test]
    fn redis_text_monitor_lines() {
        let (source, parsed) =
            monitor_line(&Blob::from_bytes(b"1.5 [0 127.0.0.1:1] \"set\" \"a\\x00\" \"b c\"")).unwrap();
        assert_eq!(source, "[0 127.0.0.1:1]");
        assert_eq!(parsed, argv(&["set", "a\0", "b c"]));
        assert!(monitor_line(&Blob::from_bytes(b"OK")).is_none());
    }
}
