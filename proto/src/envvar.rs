//! Environment variables a service declares for the people who reach it (`DATABASE_URL: …`): what a
//! valid key and value are, and the one substitution a value may ask for (`{{ host }}`, `{{ port }}`,
//! `{{ name }}`).
//!
//! These values travel from one member's agent, through the hub, into another member's
//! `.env.pconnect`, which people `source`. So they are data, never code: keys are shell identifiers,
//! values hold no control characters, and the only placeholders are the three above, replaced as
//! plain text. No template engine ever sees a teammate's value. The hub checks this at
//! registration ([`crate::control::ServiceSpec::check`]) and the agent checks it again where it
//! writes the file.

use std::collections::BTreeMap;

/// Longest variable name.
pub const MAX_KEY_LEN: usize = 128;
/// Longest value (before substitution).
pub const MAX_VALUE_LEN: usize = 2048;
/// Most variables one service may declare.
pub const MAX_VARS: usize = 32;

/// Why a variable is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvVarError {
    #[error("variable name {0:?} is not a shell identifier: use A-Z, 0-9 and '_', not starting with a digit")]
    BadKey(String),
    #[error("variable name {0:?} is longer than {MAX_KEY_LEN} characters")]
    KeyTooLong(String),
    #[error("the value of {0} is longer than {MAX_VALUE_LEN} characters")]
    ValueTooLong(String),
    #[error("the value of {0} holds a control character (newline, escape, ...)")]
    ControlCharacter(String),
    #[error(
        "the value of {key} uses {{{{ {found} }}}}: only {{{{ host }}}}, {{{{ port }}}} and {{{{ name }}}} are replaced"
    )]
    UnknownPlaceholder { key: String, found: String },
    #[error("a service declares at most {MAX_VARS} variables")]
    TooMany,
}

/// Checks a variable name: `[A-Z_][A-Z0-9_]*`, at most [`MAX_KEY_LEN`].
pub fn check_key(key: &str) -> Result<(), EnvVarError> {
    if key.len() > MAX_KEY_LEN {
        return Err(EnvVarError::KeyTooLong(key.chars().take(MAX_KEY_LEN).collect()));
    }
    let mut bytes = key.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_uppercase() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
        return Err(EnvVarError::BadKey(key.to_string()));
    }
    Ok(())
}

/// Checks a value (as declared, placeholders included): no control character, only known
/// placeholders, at most [`MAX_VALUE_LEN`].
pub fn check_value(key: &str, value: &str) -> Result<(), EnvVarError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(EnvVarError::ValueTooLong(key.to_string()));
    }
    if value.chars().any(char::is_control) {
        return Err(EnvVarError::ControlCharacter(key.to_string()));
    }
    for piece in pieces(value) {
        if let Piece::Placeholder(Err(found)) = piece {
            return Err(EnvVarError::UnknownPlaceholder { key: key.to_string(), found: found.to_string() });
        }
    }
    Ok(())
}

/// Checks every variable of a declaration.
pub fn check_all(vars: &BTreeMap<String, String>) -> Result<(), EnvVarError> {
    if vars.len() > MAX_VARS {
        return Err(EnvVarError::TooMany);
    }
    for (key, value) in vars {
        check_key(key)?;
        check_value(key, value)?;
    }
    Ok(())
}

/// What a value's placeholders are replaced with.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders<'a> {
    pub host: &'a str,
    pub port: u16,
    pub name: &'a str,
}

/// Replaces `{{ host }}`, `{{ port }}` and `{{ name }}` as plain text (after checking the value).
pub fn expand(key: &str, value: &str, with: Placeholders<'_>) -> Result<String, EnvVarError> {
    check_value(key, value)?;
    let mut out = String::with_capacity(value.len() + 16);
    for piece in pieces(value) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Placeholder(Ok(Known::Host)) => out.push_str(with.host),
            Piece::Placeholder(Ok(Known::Port)) => out.push_str(&with.port.to_string()),
            Piece::Placeholder(Ok(Known::Name)) => out.push_str(with.name),
            Piece::Placeholder(Err(found)) => {
                return Err(EnvVarError::UnknownPlaceholder { key: key.to_string(), found: found.to_string() });
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Host,
    Port,
    Name,
}

#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    /// `{{ … }}` (also any `{%`/`{#` block, which is never a known placeholder).
    Placeholder(Result<Known, &'a str>),
}

/// Splits a value into text and placeholders. Any `{{`, `{%` or `{#` starts a placeholder; one that
/// is not exactly a known name (spaces around it allowed) is reported as unknown.
fn pieces(value: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = ["{{", "{%", "{#"].iter().filter_map(|open| rest.find(open)).min() {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let is_var = rest[start..].starts_with("{{");
        match after.find(if is_var { "}}" } else { "}" }) {
            Some(end) if is_var => {
                let inner = after[..end].trim();
                let known = match inner {
                    "host" => Ok(Known::Host),
                    "port" => Ok(Known::Port),
                    "name" => Ok(Known::Name),
                    other => Err(other),
                };
                out.push(Piece::Placeholder(known));
                rest = &after[end + 2..];
            }
            _ => {
                out.push(Piece::Placeholder(Err(after.get(..after.len().min(20)).unwrap_or(after))));
                return out;
            }
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Placeholders<'static> = Placeholders { host: "127.0.0.1", port: 5432, name: "db" };

    #[test]
    fn keys_are_shell_identifiers() {
        for ok in ["DATABASE_URL", "_X", "A1", "X"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1X",
            "database_url",
            "DATABASE_URL=x; touch /tmp/p; echo Z",
            "A\nB",
            "A B",
            "A-B",
            "A$B",
            "Ä",
            "A\u{0}",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(check_key(&"A".repeat(129)), Err(EnvVarError::KeyTooLong(_))));
    }

    #[test]
    fn values_hold_no_control_characters() {
        for bad in ["a\nb", "a\rb", "\u{1b}[31m", "a\u{0}", "\u{9b}31m", "tab\there", "\u{7f}"] {
            assert!(matches!(check_value("K", bad), Err(EnvVarError::ControlCharacter(_))), "{bad:?}");
        }
        assert!(check_value("K", "it's $(not) `run` \\ \"quoted\" ${HOME}").is_ok());
        assert!(matches!(check_value("K", &"x".repeat(2049)), Err(EnvVarError::ValueTooLong(_))));
    }

    #[test]
    fn only_the_three_placeholders_are_replaced_as_text() {
        let url = expand("U", "postgresql://app@{{ host }}:{{port}}/{{ name }}", AT).unwrap();
        assert_eq!(url, "postgresql://app@127.0.0.1:5432/db");
        for bad in [
            "{{ range(99999999) }}",
            "{% for x in y %}",
            "{{ env.HOME }}",
            "{# c #}",
            "{{ host",
            "{{ host | upper }}",
            "{{ lookup('x') }}",
        ] {
            assert!(matches!(expand("U", bad, AT), Err(EnvVarError::UnknownPlaceholder { .. })), "{bad}");
        }
        // Text that merely looks like code is kept as text.
        assert_eq!(expand("U", "$(touch /tmp/p) {x}", AT).unwrap(), "$(touch /tmp/p) {x}");
        // A substituted value is not scanned again.
        let odd = Placeholders { host: "{{ port }}", port: 1, name: "n" };
        assert_eq!(expand("U", "{{ host }}", odd).unwrap(), "{{ port }}");
    }

    #[test]
    fn declarations_are_capped() {
        let many: BTreeMap<String, String> = (0..33).map(|i| (format!("K{i}"), "v".to_string())).collect();
        assert_eq!(check_all(&many), Err(EnvVarError::TooMany));
    }
}
