//! Offline insights: rules over the captured exchanges that need no model. Error rates, the
//! slowest requests and queries, N+1 query patterns, repeated identical queries and dangerous
//! Redis commands; each insight cites the exchanges it is about.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use pconnect_proto::debug::{Captured, Insight, Severity};
use pconnect_proto::exchange::{Detail, PgExchange, Protocol};

/// Exchanges cited per insight at most.
const CITE_CAP: usize = 20;
/// Same statement shape this many times in a burst on one connection: N+1.
const N_PLUS_ONE_MIN: usize = 5;
/// Statements of a burst start within this long of the previous one (µs).
const BURST_GAP_US: u64 = 2_000_000;
/// Same statement with the same parameters this many times: repeated.
const REPEAT_MIN: usize = 3;
/// A query at least this slow is a warning (ms).
const SLOW_QUERY_MS: f64 = 500.0;
/// A request at least this slow is a warning (ms).
const SLOW_REQUEST_MS: f64 = 1000.0;
/// Slowest entries listed.
const TOP: usize = 3;

/// Every insight the rules find, most severe first.
pub(crate) fn compute(exchanges: &[Arc<Captured>]) -> Vec<Insight> {
    let mut out = Vec::new();
    out.extend(error_rates(exchanges));
    out.extend(dangerous_redis(exchanges));
    out.extend(n_plus_one(exchanges));
    out.extend(repeated(exchanges));
    out.extend(slowest(exchanges, Protocol::Http, "requests", SLOW_REQUEST_MS));
    out.extend(slowest(exchanges, Protocol::Postgres, "queries", SLOW_QUERY_MS));
    out.sort_by_key(|i| std::cmp::Reverse(i.severity));
    out
}

fn cite(ids: impl IntoIterator<Item = u64>) -> Vec<u64> {
    ids.into_iter().take(CITE_CAP).collect()
}

fn ids_text(ids: &[u64]) -> String {
    let shown: Vec<String> = ids.iter().take(8).map(|id| format!("#{id}")).collect();
    let more = if ids.len() > 8 { format!(" and {} more", ids.len() - 8) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Failed exchanges per protocol.
fn error_rates(exchanges: &[Arc<Captured>]) -> Vec<Insight> {
    let mut out = Vec::new();
    for (protocol, noun) in [
        (Protocol::Http, "HTTP requests"),
        (Protocol::Postgres, "PostgreSQL statements"),
        (Protocol::Redis, "Redis commands"),
    ] {
        let of_kind: Vec<&Arc<Captured>> = exchanges
            .iter()
            .filter(|c| c.exchange.protocol == protocol && !is_session_noise(&c.exchange.detail))
            .collect();
        let failed: Vec<&Arc<Captured>> = of_kind.iter().copied().filter(|c| c.exchange.is_error()).collect();
        if failed.is_empty() {
            continue;
        }
        let rate = failed.len() as f64 * 100.0 / of_kind.len() as f64;
        let mut by_outcome: BTreeMap<String, usize> = BTreeMap::new();
        for c in &failed {
            *by_outcome.entry(c.exchange.outcome()).or_default() += 1;
        }
        let mut common: Vec<(String, usize)> = by_outcome.into_iter().collect();
        common.sort_by_key(|c| std::cmp::Reverse(c.1));
        let examples: Vec<String> = common.iter().take(3).map(|(o, n)| format!("{o} ({n}x)")).collect();
        let ids: Vec<u64> = failed.iter().map(|c| c.id).collect();
        out.push(Insight {
            severity: if rate >= 20.0 { Severity::Error } else { Severity::Warn },
            title: format!("{} of {} {noun} failed ({rate:.0}%)", failed.len(), of_kind.len()),
            detail: format!("Most common: {}. See {}.", examples.join("; "), ids_text(&ids)),
            exchanges: cite(ids),
        });
    }
    out
}

/// Startup and auth exchanges are not statements.
fn is_session_noise(detail: &Detail) -> bool {
    matches!(detail, Detail::Postgres(p) if matches!(p.kind.as_str(), "startup" | "cancel" | "notice"))
}

/// FLUSHALL / FLUSHDB wipe data; KEYS scans the whole keyspace and blocks the server.
fn dangerous_redis(exchanges: &[Arc<Captured>]) -> Vec<Insight> {
    let mut flushes = Vec::new();
    let mut keys = Vec::new();
    for c in exchanges {
        let Detail::Redis(r) = &c.exchange.detail else { continue };
        match r.command.as_str() {
            "FLUSHALL" | "FLUSHDB" => flushes.push(c.id),
            "KEYS" => keys.push((c.id, r.args.first().cloned().unwrap_or_default())),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if !flushes.is_empty() {
        out.push(Insight {
            severity: Severity::Error,
            title: format!("Dangerous Redis command: FLUSHALL/FLUSHDB ran {} time(s)", flushes.len()),
            detail: format!("Every key of the database (or server) was deleted by {}.", ids_text(&flushes)),
            exchanges: cite(flushes),
        });
    }
    if !keys.is_empty() {
        let patterns: Vec<String> = keys.iter().map(|(_, p)| format!("KEYS {p}")).take(3).collect();
        let ids: Vec<u64> = keys.iter().map(|(id, _)| *id).collect();
        out.push(Insight {
            severity: Severity::Warn,
            title: format!("Dangerous Redis command: KEYS ran {} time(s)", ids.len()),
            detail: format!(
                "{} scans the whole keyspace and blocks Redis while it runs; use SCAN instead. See {}.",
                patterns.join(", "),
                ids_text(&ids)
            ),
            exchanges: cite(ids),
        });
    }
    out
}

/// A PostgreSQL statement with its shape and its exact text + values.
struct Stmt<'a> {
    captured: &'a Arc<Captured>,
    shape: String,
    variant: String,
}

/// The same statement shape run again and again with different values on one connection.
fn n_plus_one(exchanges: &[Arc<Captured>]) -> Vec<Insight> {
    let mut by_conn: BTreeMap<u64, Vec<Stmt<'_>>> = BTreeMap::new();
    for c in exchanges {
        if let Some(pg) = statement(c) {
            let shape = fingerprint(pg.sql.as_deref().unwrap_or_default());
            by_conn.entry(c.conn).or_default().push(Stmt { captured: c, shape, variant: variant(pg) });
        }
    }
    let mut out = Vec::new();
    for statements in by_conn.values() {
        let mut by_shape: BTreeMap<&str, Vec<&Stmt<'_>>> = BTreeMap::new();
        for s in statements {
            by_shape.entry(s.shape.as_str()).or_default().push(s);
        }
        for (shape, runs) in by_shape {
            for burst in bursts(&runs) {
                let variants: HashSet<&str> = burst.iter().map(|s| s.variant.as_str()).collect();
                if burst.len() < N_PLUS_ONE_MIN || variants.len() < 2 {
                    continue;
                }
                let ids: Vec<u64> = burst.iter().map(|s| s.captured.id).collect();
                let total: f64 = burst.iter().filter_map(|s| s.captured.exchange.duration_ms()).sum();
                out.push(Insight {
                    severity: Severity::Warn,
                    title: format!("N+1 queries: the same statement ran {} times with different values", burst.len()),
                    detail: format!(
                        "`{shape}` ran {} times in a row on one connection ({total:.1} ms in total): fetch them in \
                         one query (IN / JOIN). See {}.",
                        burst.len(),
                        ids_text(&ids)
                    ),
                    exchanges: cite(ids),
                });
            }
        }
    }
    out
}

/// Splits statements (in capture order) into bursts: each starts within [`BURST_GAP_US`] of the
/// previous one's end.
fn bursts<'s, 'a>(runs: &[&'s Stmt<'a>]) -> Vec<Vec<&'s Stmt<'a>>> {
    let mut out: Vec<Vec<&'s Stmt<'a>>> = Vec::new();
    let mut last: Option<u64> = None;
    for run in runs {
        let at = run.captured.exchange.started_at;
        match (last, out.last_mut()) {
            (Some(prev), Some(current)) if at.saturating_sub(prev) <= BURST_GAP_US => current.push(run),
            _ => out.push(vec![run]),
        }
        last = Some(run.captured.exchange.finished_at.unwrap_or(at));
    }
    out
}

/// The same statement with the same values run several times: a cache would serve it.
fn repeated(exchanges: &[Arc<Captured>]) -> Vec<Insight> {
    let mut groups: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in exchanges {
        let key = match &c.exchange.detail {
            Detail::Postgres(pg) if statement(c).is_some() => variant(pg),
            Detail::Redis(r)
                if matches!(r.command.as_str(), "GET" | "HGETALL" | "HGET" | "MGET" | "SMEMBERS" | "LRANGE") =>
            {
                format!("{} {}", r.command, r.args.join(" "))
            }
            _ => continue,
        };
        groups.entry(key).or_default().push(c.id);
    }
    let mut found: Vec<(String, Vec<u64>)> = groups.into_iter().filter(|(_, ids)| ids.len() >= REPEAT_MIN).collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.1.len()));
    found
        .into_iter()
        .take(5)
        .map(|(what, ids)| Insight {
            severity: Severity::Info,
            title: format!("Repeated identical query: ran {} times", ids.len()),
            detail: format!(
                "`{}` returned the same question {} times; consider caching it. See {}.",
                short(&what),
                ids.len(),
                ids_text(&ids)
            ),
            exchanges: cite(ids),
        })
        .collect()
}

/// The slowest exchanges of one protocol.
fn slowest(exchanges: &[Arc<Captured>], protocol: Protocol, noun: &str, slow_ms: f64) -> Option<Insight> {
    let mut timed: Vec<(&Arc<Captured>, f64)> = exchanges
        .iter()
        .filter(|c| c.exchange.protocol == protocol && !is_session_noise(&c.exchange.detail))
        .filter_map(|c| Some((c, c.exchange.duration_ms()?)))
        .collect();
    if timed.is_empty() {
        return None;
    }
    timed.sort_by(|a, b| b.1.total_cmp(&a.1));
    timed.truncate(TOP);
    let lines: Vec<String> =
        timed.iter().map(|(c, ms)| format!("#{} {} ({ms:.1} ms)", c.id, short(&c.exchange.request_line()))).collect();
    let slow = timed[0].1 >= slow_ms;
    Some(Insight {
        severity: if slow { Severity::Warn } else { Severity::Info },
        title: format!("Slowest {noun}: {:.1} ms at most", timed[0].1),
        detail: lines.join("; "),
        exchanges: timed.iter().map(|(c, _)| c.id).collect(),
    })
}

/// The PostgreSQL statement of an exchange (not startup, auth or notices).
fn statement(c: &Captured) -> Option<&PgExchange> {
    match &c.exchange.detail {
        Detail::Postgres(pg) if matches!(pg.kind.as_str(), "query" | "extended") && pg.sql.is_some() => Some(pg),
        _ => None,
    }
}

/// Statement text plus parameters: identical values give identical variants.
fn variant(pg: &PgExchange) -> String {
    let sql = pg.sql.as_deref().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    if pg.params.is_empty() {
        return sql;
    }
    let params: Vec<&str> = pg.params.iter().map(|p| p.as_deref().unwrap_or("NULL")).collect();
    format!("{sql} [{}]", params.join(", "))
}

/// The shape of a statement: literals and `$n` placeholders become `?`, whitespace and case folded,
/// `IN (?, ?, ?)` becomes `IN (?)`.
pub(crate) fn fingerprint(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut prev_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                while let Some(n) = chars.next() {
                    if n == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                out.push('?');
                prev_word = false;
            }
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push('?');
                prev_word = false;
            }
            c if c.is_ascii_digit() && !prev_word => {
                while chars.peek().is_some_and(|n| n.is_ascii_digit() || *n == '.') {
                    chars.next();
                }
                out.push('?');
            }
            c if c.is_whitespace() => {
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
                prev_word = false;
            }
            c => {
                prev_word = c.is_alphanumeric() || c == '_';
                out.extend(c.to_lowercase());
            }
        }
    }
    let mut shape = out.trim().trim_end_matches(';').trim().to_string();
    while let Some(at) = shape.find("?, ?") {
        shape.replace_range(at..at + 4, "?");
    }
    shape.replace("?,?", "?")
}

fn short(text: &str) -> String {
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= 120 { text } else { format!("{}…", text.chars().take(120).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pconnect_proto::exchange::{Exchange, RedisExchange};

    fn pg(id: u64, conn: u64, sql: &str, at: u64) -> Arc<Captured> {
        let detail = Detail::Postgres(PgExchange {
            kind: "query".into(),
            sql: Some(sql.into()),
            params: vec![],
            command_tag: Some("SELECT 1".into()),
            rows: 1,
            columns: vec![],
            sample_rows: vec![],
            error: None,
            notices: vec![],
            tx_status: Some('I'),
            startup: vec![],
        });
        let exchange =
            Exchange { seq: id, protocol: Protocol::Postgres, started_at: at, finished_at: Some(at + 900), detail };
        Arc::new(Captured { id, conn, replay_of: None, exchange })
    }

    fn redis(id: u64, command: &str, args: &[&str]) -> Arc<Captured> {
        let detail = Detail::Redis(RedisExchange {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            reply: Some("OK".into()),
            error: None,
            context: None,
        });
        let exchange = Exchange { seq: id, protocol: Protocol::Redis, started_at: 0, finished_at: Some(10), detail };
        Arc::new(Captured { id, conn: 9, replay_of: None, exchange })
    }

    #[test]
    fn shapes_ignore_literals() {
        assert_eq!(fingerprint("SELECT * FROM users WHERE id = 42;"), "select * from users where id = ?");
        assert_eq!(
            fingerprint("select name from t where a='x''y' and b = $2"),
            "select name from t where a=? and b = ?"
        );
        assert_eq!(fingerprint("SELECT 1 FROM t2 WHERE id IN (1, 2, 3)"), "select ? from t2 where id in (?)");
    }

    #[test]
    fn n_plus_one_repeats_and_dangerous_commands_are_found() {
        let mut all: Vec<Arc<Captured>> =
            (1..=6).map(|i| pg(i, 1, &format!("SELECT * FROM users WHERE id = {i}"), i * 1000)).collect();
        all.extend((7..=9).map(|i| pg(i, 2, "SELECT count(*) FROM orders", i * 1000)));
        all.push(redis(10, "KEYS", &["*"]));
        all.push(redis(11, "FLUSHALL", &[]));
        let found = compute(&all);
        let titled = |needle: &str| {
            found.iter().find(|i| i.title.contains(needle)).unwrap_or_else(|| panic!("{needle}: {found:#?}"))
        };
        assert_eq!(titled("N+1").exchanges, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(titled("Repeated identical").exchanges, vec![7, 8, 9]);
        assert_eq!(titled("KEYS").exchanges, vec![10]);
        assert_eq!(titled("FLUSHALL").exchanges, vec![11]);
        assert_eq!(titled("FLUSHALL").severity, Severity::Error);
        assert!(titled("Slowest queries").detail.contains("#"));
    }
}
