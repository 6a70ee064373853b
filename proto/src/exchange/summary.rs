//! One-line descriptions of an exchange (what was asked, what came back, how long it took), shared
//! by the terminal tail, the hub's insights and the summary an assistant model reads.

use super::{Detail, Exchange, Protocol};

/// Longest request text in a one-line summary.
const LINE_CAP: usize = 160;

impl Exchange {
    /// `http`, `postgres`, `redis` or `raw`.
    pub fn label(&self) -> &'static str {
        match self.protocol {
            Protocol::Http => "http",
            Protocol::Postgres => "postgres",
            Protocol::Redis => "redis",
            Protocol::Unknown => "raw",
        }
    }

    /// What was asked: `GET /path`, the statement text, `SET key value`, or a byte count.
    pub fn request_line(&self) -> String {
        let line = match &self.detail {
            Detail::Http(h) => format!("{} {}", h.method, h.path),
            Detail::Postgres(p) => match &p.sql {
                Some(sql) => one_line(sql),
                None if p.kind == "startup" => {
                    let user = p.startup.iter().find(|(k, _)| k == "user").map(|(_, v)| v.as_str());
                    format!("startup {}", user.unwrap_or("?"))
                }
                None => p.kind.clone(),
            },
            Detail::Redis(r) if r.command.is_empty() => r.context.clone().unwrap_or_default(),
            Detail::Redis(r) => {
                let mut words = vec![r.command.clone()];
                words.extend(r.args.iter().cloned());
                one_line(&words.join(" "))
            }
            Detail::Raw { to_service, to_client, .. } => format!("{to_service} bytes up, {to_client} bytes down"),
        };
        cap(&line, LINE_CAP)
    }

    /// What came back: the HTTP status, the command tag / row count, the reply, or the error.
    pub fn outcome(&self) -> String {
        let text = match &self.detail {
            Detail::Http(h) => match h.status {
                Some(status) => {
                    let errors: usize = h.graphql.iter().map(|g| g.errors.len()).sum();
                    if errors > 0 { format!("{status} ({errors} GraphQL errors)") } else { status.to_string() }
                }
                None => "no response".to_string(),
            },
            Detail::Postgres(p) => match (&p.error, &p.command_tag) {
                (Some(e), _) => format!("ERROR {} {}", e.sqlstate, e.message),
                (None, Some(tag)) => tag.clone(),
                (None, None) if p.rows > 0 => format!("{} rows", p.rows),
                (None, None) => "ok".to_string(),
            },
            Detail::Redis(r) => match (&r.error, &r.reply) {
                (Some(e), _) => format!("(error) {e}"),
                (None, Some(reply)) => reply.clone(),
                (None, None) => r.context.clone().unwrap_or_else(|| "no reply".to_string()),
            },
            Detail::Raw { note, .. } => note.clone(),
        };
        cap(&one_line(&text), LINE_CAP)
    }

    /// Whether the exchange failed: HTTP 5xx or GraphQL errors, a PostgreSQL error, a Redis error.
    pub fn is_error(&self) -> bool {
        match &self.detail {
            Detail::Http(h) => h.status.is_some_and(|s| s >= 500) || h.graphql.iter().any(|g| !g.errors.is_empty()),
            Detail::Postgres(p) => p.error.is_some(),
            Detail::Redis(r) => r.error.is_some(),
            Detail::Raw { .. } => false,
        }
    }

    /// Milliseconds from the first request byte to the last response byte, when both were seen.
    pub fn duration_ms(&self) -> Option<f64> {
        let end = self.finished_at?;
        Some(end.saturating_sub(self.started_at) as f64 / 1000.0)
    }

    /// `GET /api/users -> 200 3.1ms` (without the id).
    pub fn one_line(&self) -> String {
        let took = self.duration_ms().map(|ms| format!(" {ms:.1}ms")).unwrap_or_default();
        format!("{} -> {}{took}", self.request_line(), self.outcome())
    }
}

/// Whitespace runs (newlines included) folded into single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_multi_line_text_is_cut_to_one_line() {
        assert_eq!(cap("ééé", 3), "é…");
        assert_eq!(one_line("SELECT 1\n  FROM t"), "SELECT 1 FROM t");
    }
}
