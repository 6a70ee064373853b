//! Exports: HAR 1.2 for the HTTP exchanges (our own fields `_`-prefixed, as the spec asks) and
//! JSON lines of `Captured` for PostgreSQL, Redis and raw connections. Both are built from the
//! redacted ring, so they are as sanitised as the viewer.

use std::sync::Arc;

use pconnect_proto::debug::Captured;
use pconnect_proto::exchange::{Body, Detail, Header, HttpExchange, Protocol};
use serde_json::{Value, json};

use super::session::Meta;
use pconnect_proto::timefmt::rfc3339_ms;

/// The HAR 1.2 document of the session's HTTP exchanges.
pub(crate) fn har(meta: &Meta, exchanges: &[Arc<Captured>]) -> Value {
    let entries: Vec<Value> = exchanges
        .iter()
        .filter_map(|c| match &c.exchange.detail {
            Detail::Http(http) => Some(entry(meta, c, http)),
            _ => None,
        })
        .collect();
    json!({
        "log": {
            "version": "1.2",
            "creator": {"name": "pconnect", "version": env!("CARGO_PKG_VERSION")},
            "pages": [],
            "entries": entries,
            "comment": format!("debug session {} of service {}", meta.id, meta.service),
        }
    })
}

fn entry(meta: &Meta, c: &Captured, http: &HttpExchange) -> Value {
    let started_ms = meta.started_unix_ms + (c.exchange.started_at / 1000) as i64;
    let total = c.exchange.duration_ms().unwrap_or(0.0);
    let host =
        http.request_headers.iter().find(|h| h.name == "host").map_or(meta.service.as_str(), |h| h.value.as_str());
    let mut request = json!({
        "method": http.method,
        "url": format!("http://{host}{}", http.path),
        "httpVersion": http.version,
        "cookies": [],
        "headers": headers(&http.request_headers),
        "queryString": query(&http.path),
        "headersSize": -1,
        "bodySize": http.request_body.len,
    });
    if http.request_body.len > 0 {
        request["postData"] = json!({
            "mimeType": header(&http.request_headers, "content-type").unwrap_or(""),
            "text": http.request_body.text.clone().unwrap_or_default(),
        });
    }
    let mut entry = json!({
        "startedDateTime": rfc3339_ms(started_ms),
        "time": total,
        "request": request,
        "response": {
            "status": http.status.unwrap_or(0),
            "statusText": http.reason.clone().unwrap_or_default(),
            "httpVersion": http.version,
            "cookies": [],
            "headers": headers(&http.response_headers),
            "content": content(&http.response_headers, &http.response_body),
            "redirectURL": header(&http.response_headers, "location").unwrap_or(""),
            "headersSize": -1,
            "bodySize": http.response_body.len,
        },
        "cache": {},
        "timings": {"send": 0, "wait": total, "receive": 0},
        "_id": c.id,
        "_conn": c.conn,
        "_truncated": http.request_body.truncated || http.response_body.truncated,
    });
    if let Some(of) = c.replay_of {
        entry["_replayOf"] = json!(of);
    }
    if !http.graphql.is_empty() {
        entry["_graphql"] = json!(http.graphql);
    }
    if let Some(upgraded) = &http.upgraded {
        entry["_upgraded"] = json!(upgraded);
    }
    entry
}

fn headers(list: &[Header]) -> Vec<Value> {
    list.iter().map(|h| json!({"name": h.name, "value": h.value})).collect()
}

fn header<'a>(list: &'a [Header], name: &str) -> Option<&'a str> {
    list.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

fn query(path: &str) -> Vec<Value> {
    let Some((_, query)) = path.split_once('?') else { return Vec::new() };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            json!({"name": name, "value": value})
        })
        .collect()
}

fn content(list: &[Header], body: &Body) -> Value {
    let mut content = json!({
        "size": body.len,
        "mimeType": header(list, "content-type").unwrap_or("x-unknown"),
    });
    if let Some(text) = &body.text {
        content["text"] = json!(text);
    }
    if body.binary {
        content["comment"] = json!("binary body not captured");
    }
    content
}

/// One JSON `Captured` per line for the non-HTTP exchanges.
pub(crate) fn jsonl(exchanges: &[Arc<Captured>]) -> String {
    let mut out = String::new();
    for c in exchanges.iter().filter(|c| c.exchange.protocol != Protocol::Http) {
        if let Ok(line) = serde_json::to_string(&**c) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pconnect_capture::{Direction, Tap};

    #[test]
    fn har_entries_have_the_required_fields() {
        let mut tap = Tap::default();
        tap.on_bytes(Direction::ToService, b"GET /a?b=1&token=x HTTP/1.1\r\nHost: h\r\n\r\n", 10);
        let out = tap.on_bytes(Direction::ToClient, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 2_010);
        let exchange = out.into_iter().next().unwrap();
        let meta = Meta::sample();
        let c = Arc::new(Captured { id: 7, conn: 1, replay_of: None, exchange });
        let har = har(&meta, std::slice::from_ref(&c));
        let entry = &har["log"]["entries"][0];
        assert_eq!(har["log"]["version"], "1.2");
        assert_eq!(entry["request"]["url"], "http://h/a?b=1&token=[redacted]");
        assert_eq!(entry["response"]["content"]["text"], "hi");
        assert_eq!(entry["time"], 2.0);
        assert_eq!(entry["startedDateTime"], "1970-01-01T00:00:00.000Z");
        assert_eq!(entry["_id"], 7);
        assert_eq!(jsonl(&[c]), "");
    }
}
