//! Redaction rules applied at capture time, before anything leaves the agent: credential headers,
//! token-like query parameters and JSON fields. Protocol parsers add their own (PostgreSQL
//! passwords, Redis AUTH) using [`MASK`].

/// What a secret is replaced with.
pub const MASK: &str = "[redacted]";

/// Headers whose values are always masked.
const SECRET_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"];

/// Name fragments that mark a field or parameter as secret.
const SECRET_NAMES: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "code",
    "sig",
    "authorization",
    "otp",
    "ssn",
    "card",
    "session",
    "credential",
    "auth",
];

/// Whether a header's value must be masked.
pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether a parameter or field name looks like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|s| lower.contains(s))
}

/// Masks secret-looking parameters of a query string in a path (`/cb?code=abc&x=1` -> `code=[redacted]`).
pub fn path(path: &str) -> String {
    let Some((base, query)) = path.split_once('?') else { return path.to_string() };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// Masks secret-looking fields anywhere in a JSON value.
pub fn json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, field) in map.iter_mut() {
                if is_secret_name(name) && !field.is_object() && !field.is_array() {
                    *field = serde_json::Value::String(MASK.to_string());
                } else {
                    json(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(json),
        _ => {}
    }
}

/// Masks secret-looking fields of a form body (`a=1&password=x`).
pub fn form(body: &str) -> String {
    path(&format!("?{body}")).trim_start_matches('?').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_everywhere() {
        assert!(is_secret_header("Authorization") && is_secret_header("set-cookie") && !is_secret_header("accept"));
        assert_eq!(path("/cb?code=abc&state=1&api_key=z"), "/cb?code=[redacted]&state=1&api_key=[redacted]");
        assert_eq!(path("/plain"), "/plain");
        let mut v = serde_json::json!({"user": "a", "password": "p", "nested": [{"accessToken": "t", "n": 1}]});
        json(&mut v);
        assert_eq!(v, serde_json::json!({"user": "a", "password": MASK, "nested": [{"accessToken": MASK, "n": 1}]}));
        assert_eq!(form("a=1&password=x"), "a=1&password=[redacted]");
    }
}
