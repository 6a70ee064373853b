//! Just enough SQL lexing to find values bound to secret-looking columns: `password = $1`,
//! `api_key = 'literal'`, `PASSWORD 'x'`, `crypt($1, ...)` compared to a secret column, and the
//! positions of `INSERT INTO t (cols) VALUES (...)`. A heuristic: it errs towards masking.
//! [`prepare`] gives the SQL text the parser keeps: capped, secret literals masked.

use std::ops::Range;
use std::sync::Arc;

use super::wire::{ELLIPSIS, text};
use crate::TEXT_CAP;
use crate::redact::{MASK, is_secret_name};

/// Tokens lexed per statement text before giving up (texts are capped anyway).
const MAX_TOKENS: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Keyword or identifier, lowercased; quoted identifiers without their quotes.
    Ident(String),
    /// `$n`.
    Param(u32),
    /// String literal (any quoting, prefix included) or number: its byte range.
    Literal {
        range: Range<usize>,
        quoted: bool,
    },
    Punct(u8),
}

impl Tok {
    fn is_value(&self) -> bool {
        matches!(self, Tok::Param(_) | Tok::Literal { .. })
    }

    fn ident(&self) -> Option<&str> {
        match self {
            Tok::Ident(name) => Some(name),
            _ => None,
        }
    }
}

/// Values that must be masked in one SQL text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Secrets {
    /// Parameter numbers (`$n`, 1-based), sorted.
    pub(super) params: Vec<u32>,
    /// Literals to replace in the text.
    literals: Vec<(Range<usize>, bool)>,
}

impl Secrets {
    /// The text with secret literals replaced by [`MASK`].
    pub(super) fn redact(&self, sql: &str) -> String {
        let mut out = String::with_capacity(sql.len());
        let mut at = 0;
        for (range, quoted) in &self.literals {
            if range.start < at || range.end > sql.len() {
                continue;
            }
            out.push_str(sql.get(at..range.start).unwrap_or_default());
            if *quoted {
                out.push('\'');
                out.push_str(MASK);
                out.push('\'');
            } else {
                out.push_str(MASK);
            }
            at = range.end;
        }
        out.push_str(sql.get(at..).unwrap_or_default());
        out
    }
}

/// Finds the parameters and literals of `sql` that look secret.
pub(super) fn scan(sql: &str) -> Secrets {
    let toks = lex(sql);
    let mut secret = vec![false; toks.len()];
    for (i, tok) in toks.iter().enumerate() {
        if tok.is_value() && (name_before(&toks, i, true).is_some_and(is_secret_name) || name_after(&toks, i)) {
            secret[i] = true;
        }
    }
    insert_positions(&toks, &mut secret);
    let mut found = Secrets::default();
    for (tok, _) in toks.into_iter().zip(secret).filter(|(_, s)| *s) {
        match tok {
            Tok::Param(n) => found.params.push(n),
            Tok::Literal { range, quoted } => found.literals.push((range, quoted)),
            _ => {}
        }
    }
    found.params.sort_unstable();
    found.params.dedup();
    found
}

/// The column a value at `i` is compared to or assigned: `name = v`, `name <> v`, `name := v`,
/// `name => v`, `name LIKE v`, `PASSWORD v` (when `keyword`), and through a call wrapper: `name = f(v, ...)`.
fn name_before(toks: &[Tok], i: usize, keyword: bool) -> Option<&str> {
    let at = |k: usize| i.checked_sub(k).and_then(|j| toks.get(j));
    match at(1)? {
        Tok::Punct(b'=') => match at(2)? {
            Tok::Punct(b':' | b'!' | b'<' | b'>') => at(3)?.ident(),
            tok => tok.ident(),
        },
        Tok::Punct(b'>') if matches!(at(2)?, Tok::Punct(b'=' | b'<')) => at(3)?.ident(),
        Tok::Punct(b'(') if matches!(at(2)?, Tok::Ident(_)) => name_before(toks, i - 2, false),
        Tok::Ident(word) if word == "like" || word == "ilike" => at(2)?.ident(),
        Tok::Ident(word) if keyword && word == "password" => Some(word),
        _ => None,
    }
}

/// `v = name` with a secret-looking name.
fn name_after(toks: &[Tok], i: usize) -> bool {
    matches!(toks.get(i + 1), Some(Tok::Punct(b'=')))
        && toks.get(i + 2).and_then(Tok::ident).is_some_and(is_secret_name)
}

/// `INSERT INTO t (a, secret, c) VALUES (x, y, z), (...)`: marks the values in secret columns' positions.
fn insert_positions(toks: &[Tok], secret: &mut [bool]) {
    let ident = |j: usize, word: &str| toks.get(j).and_then(Tok::ident) == Some(word);
    let punct = |j: usize, c: u8| toks.get(j) == Some(&Tok::Punct(c));
    let mut k = 0;
    while k < toks.len() {
        if !(ident(k, "insert") && ident(k + 1, "into")) {
            k += 1;
            continue;
        }
        let mut j = k + 2;
        // Table name, maybe qualified, maybe aliased.
        while matches!(toks.get(j), Some(Tok::Ident(w)) if !matches!(w.as_str(), "values" | "select" | "default" | "overriding"))
            || punct(j, b'.')
        {
            j += 1;
        }
        let mut columns = Vec::new();
        if punct(j, b'(') {
            j += 1;
            let mut expect_name = true;
            while let Some(tok) = toks.get(j) {
                j += 1;
                match tok {
                    Tok::Ident(name) if expect_name => {
                        columns.push(name.as_str());
                        expect_name = false;
                    }
                    Tok::Punct(b',') => expect_name = true,
                    Tok::Punct(b')') => break,
                    _ => {}
                }
            }
        }
        // `OVERRIDING SYSTEM VALUE` and the like.
        while matches!(toks.get(j), Some(Tok::Ident(w)) if w != "values" && w != "select") {
            j += 1;
        }
        if !columns.is_empty() && ident(j, "values") {
            j += 1;
            while punct(j, b'(') {
                j += 1;
                let (mut depth, mut column) = (0usize, 0usize);
                while let Some(tok) = toks.get(j) {
                    match tok {
                        Tok::Punct(b'(' | b'[') => depth += 1,
                        Tok::Punct(b')') if depth == 0 => break,
                        Tok::Punct(b')' | b']') => depth = depth.saturating_sub(1),
                        Tok::Punct(b',') if depth == 0 => column += 1,
                        tok if tok.is_value() && columns.get(column).is_some_and(|c| is_secret_name(c)) => {
                            secret[j] = true;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                j += 1;
                if punct(j, b',') {
                    j += 1;
                } else {
                    break;
                }
            }
        }
        k = j.max(k + 1);
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn lex(sql: &str) -> Vec<Tok> {
    let b = sql.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() && toks.len() < MAX_TOKENS {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if next == Some(b'-') => i = b[i..].iter().position(|&x| x == b'\n').map_or(b.len(), |p| i + p + 1),
            b'/' if next == Some(b'*') => i = find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2),
            b'\'' => {
                let end = quoted(b, i, false);
                toks.push(Tok::Literal { range: i..end, quoted: true });
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                let mut name = Vec::new();
                while j < b.len() {
                    if b[j] == b'"' {
                        if b.get(j + 1) == Some(&b'"') {
                            name.push(b'"');
                            j += 2;
                            continue;
                        }
                        j += 1;
                        break;
                    }
                    name.push(b[j]);
                    j += 1;
                }
                toks.push(Tok::Ident(String::from_utf8_lossy(&name).to_lowercase()));
                i = j.min(b.len());
            }
            b'$' if next.is_some_and(|d| d.is_ascii_digit()) => {
                let mut j = i + 1;
                let mut n: u32 = 0;
                while let Some(d) = b.get(j).filter(|d| d.is_ascii_digit()) {
                    n = n.saturating_mul(10).saturating_add(u32::from(d - b'0'));
                    j += 1;
                }
                toks.push(Tok::Param(n));
                i = j;
            }
            b'$' => match dollar_quote(b, i) {
                Some(end) => {
                    toks.push(Tok::Literal { range: i..end, quoted: true });
                    i = end;
                }
                None => {
                    toks.push(Tok::Punct(c));
                    i += 1;
                }
            },
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                    i += 1;
                }
                toks.push(Tok::Literal { range: start..i, quoted: false });
            }
            _ if is_ident_start(c) => {
                let start = i;
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
                let word = sql.get(start..i).unwrap_or_default();
                // E'..', B'..', X'..', N'..' literals.
                if b.get(i) == Some(&b'\'') && matches!(word, "e" | "E" | "b" | "B" | "x" | "X" | "n" | "N") {
                    let end = quoted(b, i, word.eq_ignore_ascii_case("e"));
                    toks.push(Tok::Literal { range: start..end, quoted: true });
                    i = end;
                } else {
                    toks.push(Tok::Ident(word.to_ascii_lowercase()));
                }
            }
            _ => {
                toks.push(Tok::Punct(c));
                i += 1;
            }
        }
    }
    toks
}

/// End (exclusive) of the `'...'` literal opening at `i`; `''` escapes a quote, and so does `\'` in E'' strings.
fn quoted(b: &[u8], i: usize, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if backslash => j += 2,
            b'\'' if b.get(j + 1) == Some(&b'\'') => j += 2,
            b'\'' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// End (exclusive) of the `$tag$...$tag$` literal opening at `i`, if `i` opens one.
fn dollar_quote(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &b[i..=j];
    Some(find(b, j + 1, tag).map_or(b.len(), |p| p + tag.len()))
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let rest = haystack.get(from..)?;
    rest.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

/// SQL text: capped, secret literals masked, and which `$n` look secret.
pub(super) fn prepare(raw: &[u8]) -> (Arc<str>, Vec<u32>) {
    let capped = raw.len() > TEXT_CAP;
    let sql = text(&raw[..raw.len().min(TEXT_CAP + 4)], TEXT_CAP);
    let body = if capped { sql.strip_suffix(ELLIPSIS).unwrap_or(&sql) } else { &sql };
    let secrets = scan(body);
    let mut redacted = secrets.redact(body);
    if capped {
        redacted.push_str(ELLIPSIS);
    }
    (Arc::from(redacted), secrets.params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sql: &str) -> Vec<u32> {
        scan(sql).params
    }

    fn redacted(sql: &str) -> String {
        scan(sql).redact(sql)
    }

    #[test]
    fn parameters_next_to_secret_columns() {
        assert_eq!(params("UPDATE users SET password = $1, name = $2 WHERE id = $3"), vec![1]);
        assert_eq!(params("SELECT * FROM users WHERE u.\"API_KEY\" = $2 AND id = $1"), vec![2]);
        assert_eq!(params("SELECT * FROM t WHERE $1 = session_token"), vec![1]);
        assert_eq!(params("UPDATE u SET pwd = crypt($1, gen_salt('bf')) WHERE id = $2"), vec![1]);
        assert_eq!(params("SELECT f(secret => $1, n => $2)"), vec![1]);
        assert_eq!(params("SELECT $1, $2"), Vec::<u32>::new());
        assert_eq!(
            params("INSERT INTO public.users AS u (id, name, password_hash) VALUES ($1, $2, $3), ($4, $5, $6::text)"),
            vec![3, 6]
        );
        assert_eq!(params("INSERT INTO t VALUES ($1)"), Vec::<u32>::new());
        assert_eq!(params("INSERT INTO auth_log VALUES ($1) RETURNING token"), Vec::<u32>::new());
        assert_eq!(params("SELECT '$1 = password' FROM t WHERE id = $1 -- token = $1"), Vec::<u32>::new());
    }

    #[test]
    fn literals_next_to_secret_columns() {
        assert_eq!(redacted("ALTER ROLE bob PASSWORD 'hunter2'"), "ALTER ROLE bob PASSWORD '[redacted]'");
        assert_eq!(
            redacted("SELECT 1 FROM t WHERE api_key = E'a\\'b' AND otp = 123456 AND name = 'x'"),
            "SELECT 1 FROM t WHERE api_key = '[redacted]' AND otp = [redacted] AND name = 'x'"
        );
        assert_eq!(
            redacted("INSERT INTO users (name, token) VALUES ('ann', $$t0k$$)"),
            "INSERT INTO users (name, token) VALUES ('ann', '[redacted]')"
        );
        assert_eq!(redacted("SELECT 'unterminated"), "SELECT 'unterminated");
        assert_eq!(redacted("SELECT password = 'unterminated"), "SELECT password = '[redacted]'");
    }

    #[test]
    fn odd_input_does_not_panic() {
        for sql in
            ["$", "$$", "$a", "\"", "'", "E'\\", "/*", "--", "é = 'x'", "insert into", "insert into t ( values ("]
        {
            let _ = redacted(sql);
        }
    }
}
