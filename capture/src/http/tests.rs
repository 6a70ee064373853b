//! Tests of the HTTP parser: framing, pairing, decoding, redaction, GraphQL, and split/garbage fuzzing.

use std::io::Write;

use proptest::prelude::*;
use serde_json::json;

use super::HttpParser;
use crate::redact::{self, MASK};
use crate::{Detail, Direction, Exchange, GraphqlOperation, Header, HttpExchange, Protocol};

const IN: Direction = Direction::ToService;
const OUT: Direction = Direction::ToClient;

/// Feeds the segments in order at times 10, 20, 30..., then closes at the end; returns everything emitted.
fn run(segments: &[(Direction, &[u8])]) -> Vec<Exchange> {
    let mut parser = HttpParser::new();
    let mut all = Vec::new();
    for (i, (dir, bytes)) in segments.iter().enumerate() {
        all.extend(parser.feed(*dir, bytes, (i as u64 + 1) * 10));
    }
    assert!(!parser.is_desynced(), "desynced");
    all.extend(parser.close(9999));
    all
}

fn http(exchange: &Exchange) -> &HttpExchange {
    assert_eq!(exchange.protocol, Protocol::Http);
    match &exchange.detail {
        Detail::Http(http) => http,
        other => panic!("not http: {other:?}"),
    }
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name == name).map(|h| h.value.as_str())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A valid brotli stream made of one uncompressed meta-block (no brotli encoder is available).
fn brotli_stored(data: &[u8]) -> Vec<u8> {
    assert!(!data.is_empty() && data.len() <= 1 << 16);
    let header = ((data.len() as u32 - 1) << 4) | (1 << 20);
    let mut out = header.to_le_bytes()[..3].to_vec();
    out.extend_from_slice(data);
    out.push(0x03);
    out
}

fn response_with(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn graphql_post(body: &str) -> Vec<u8> {
    format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn json_response(body: &str) -> Vec<u8> {
    response_with("Content-Type: application/json\r\n", body.as_bytes())
}

fn ops(exchange: &Exchange) -> &[GraphqlOperation] {
    &http(exchange).graphql
}

#[test]
fn http_simple_get_with_content_length() {
    let mut parser = HttpParser::new();
    assert!(parser.feed(IN, b"GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n", 5).is_empty());
    assert!(
        parser
            .feed(OUT, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello", 7)
            .is_empty()
    );
    let done = parser.feed(OUT, b" world", 9);
    assert_eq!(done.len(), 1);
    let exchange = &done[0];
    assert_eq!((exchange.seq, exchange.started_at, exchange.finished_at), (0, 5, Some(9)));
    let h = http(exchange);
    assert_eq!((h.method.as_str(), h.path.as_str(), h.version.as_str()), ("GET", "/hello?x=1", "HTTP/1.1"));
    assert_eq!(header(&h.request_headers, "host"), Some("example.com"));
    assert_eq!((h.status, h.reason.as_deref()), (Some(200), Some("OK")));
    assert_eq!(h.response_body.text.as_deref(), Some("hello world"));
    assert_eq!((h.response_body.len, h.response_body.truncated, h.response_body.binary), (11, false, false));
    assert_eq!(h.request_body, crate::Body::default());
    assert!(h.graphql.is_empty() && h.upgraded.is_none());
    assert!(parser.close(10).is_empty());
}

#[test]
fn http_keep_alive_three_requests() {
    let mut segments: Vec<(Direction, Vec<u8>)> = Vec::new();
    for i in 0..3 {
        segments.push((IN, format!("GET /item/{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()));
        segments.push((OUT, response_with("", format!("body {i}").as_bytes())));
    }
    let segments: Vec<(Direction, &[u8])> = segments.iter().map(|(d, b)| (*d, b.as_slice())).collect();
    let all = run(&segments);
    assert_eq!(all.len(), 3);
    for (i, exchange) in all.iter().enumerate() {
        assert_eq!(exchange.seq, i as u64);
        assert_eq!(exchange.started_at, (2 * i as u64 + 1) * 10);
        assert_eq!(exchange.finished_at, Some((2 * i as u64 + 2) * 10));
        assert_eq!(http(exchange).path, format!("/item/{i}"));
        assert_eq!(http(exchange).response_body.text, Some(format!("body {i}")));
    }
}

#[test]
fn http_pipelining_three_requests_before_responses() {
    let requests = b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\n";
    let mut responses = response_with("", b"A");
    responses.extend(b"HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nB");
    responses.extend(b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nC");
    let mut parser = HttpParser::new();
    assert!(parser.feed(IN, requests, 1).is_empty());
    let all = parser.feed(OUT, &responses, 2);
    assert_eq!(all.len(), 3);
    let got: Vec<_> = all
        .iter()
        .map(|e| (e.seq, http(e).path.clone(), http(e).status, http(e).response_body.text.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "/a".to_string(), Some(200), "A".to_string()),
            (1, "/b".to_string(), Some(201), "B".to_string()),
            (2, "/c".to_string(), Some(404), "C".to_string()),
        ]
    );
    assert_eq!(http(&all[1]).request_body.text.as_deref(), Some("xyz"));
}

#[test]
fn http_chunked_request_and_response_with_extensions_and_trailers() {
    let request = b"POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 999\r\n\r\n\
        5;ext=1\r\nhello\r\n6 ; a=\"b;c\"\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
        3;x\r\nabc\r\nA\r\n0123456789\r\n0;last=yes\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n";
    let all =
        run(&[(IN, request), (OUT, response), (IN, b"GET /next HTTP/1.1\r\n\r\n"), (OUT, &response_with("", b"n"))]);
    assert_eq!(all.len(), 2);
    let h = http(&all[0]);
    assert_eq!((h.request_body.text.as_deref(), h.request_body.len), (Some("hello world"), 11));
    assert_eq!((h.response_body.text.as_deref(), h.response_body.len), (Some("abc0123456789"), 13));
    assert_eq!(http(&all[1]).path, "/next");
}

#[test]
fn http_head_response_has_content_length_but_no_body() {
    let all = run(&[
        (IN, b"HEAD /big HTTP/1.1\r\n\r\n"),
        (OUT, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"),
        (IN, b"GET /small HTTP/1.1\r\n\r\n"),
        (OUT, &response_with("", b"ok")),
    ]);
    assert_eq!(all.len(), 2);
    assert_eq!((http(&all[0]).status, http(&all[0]).response_body.len), (Some(200), 0));
    assert_eq!(header(&http(&all[0]).response_headers, "content-length"), Some("100000"));
    assert_eq!(all[0].finished_at, Some(20));
    assert_eq!(http(&all[1]).response_body.text.as_deref(), Some("ok"));
}

#[test]
fn http_204_and_304_have_no_body() {
    let all = run(&[
        (IN, b"DELETE /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\nIf-None-Match: \"e\"\r\n\r\nGET /z HTTP/1.1\r\n\r\n"),
        (OUT, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"e\"\r\n\r\n"),
        (OUT, &response_with("", b"z")),
    ]);
    let statuses: Vec<_> = all.iter().map(|e| (http(e).status, http(e).response_body.len)).collect();
    assert_eq!(statuses, vec![(Some(204), 0), (Some(304), 0), (Some(200), 1)]);
}

#[test]
fn http_100_continue_then_200() {
    let all = run(&[
        (IN, b"PUT /file HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
        (OUT, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (IN, b"data"),
        (OUT, b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]);
    assert_eq!(all.len(), 1);
    let h = http(&all[0]);
    assert_eq!((h.status, h.reason.as_deref(), h.request_body.text.as_deref()), (Some(200), Some("OK"), Some("data")));
    assert_eq!(h.response_body.text.as_deref(), Some("ok"));
    assert_eq!(all[0].finished_at, Some(40));
}

#[test]
fn http_101_websocket_upgrade_then_garbage_ignored() {
    let mut parser = HttpParser::new();
    let request =
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
    assert!(parser.feed(IN, request, 1).is_empty());
    // The client's first frame may be fed before the 101 is seen: it must not parse as HTTP.
    assert!(parser.feed(IN, b"\x81\x85\x00\x00\x00\x00hello", 2).is_empty());
    let done = parser.feed(
        OUT,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi",
        3,
    );
    assert_eq!(done.len(), 1);
    let h = http(&done[0]);
    assert_eq!((h.status, h.upgraded.as_deref()), (Some(101), Some("websocket")));
    assert_eq!(done[0].finished_at, Some(3));
    assert!(parser.feed(IN, b"\x00\xffnot http at all\r\n\r\n", 4).is_empty());
    assert!(parser.feed(OUT, b"HTTP/1.1 200 OK\r\n\r\n", 5).is_empty());
    assert!(!parser.is_desynced());
    assert!(parser.close(6).is_empty());
}

#[test]
fn http_declined_upgrade_keeps_parsing() {
    let all = run(&[
        (IN, b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nGET /two HTTP/1.1\r\n\r\n"),
        (OUT, &response_with("", b"one")),
        (OUT, &response_with("", b"two")),
    ]);
    assert_eq!(all.len(), 2);
    assert!(http(&all[0]).upgraded.is_none());
    assert_eq!(http(&all[1]).response_body.text.as_deref(), Some("two"));
}

#[test]
fn http_connect_tunnel() {
    let mut parser = HttpParser::new();
    assert!(
        parser
            .feed(IN, b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n\x16\x03\x01", 1)
            .is_empty()
    );
    let done = parser.feed(OUT, b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03", 2);
    assert_eq!(done.len(), 1);
    assert_eq!(
        (http(&done[0]).path.as_str(), http(&done[0]).upgraded.as_deref()),
        ("db.internal:5432", Some("tunnel"))
    );
    assert!(parser.feed(IN, b"GET / HTTP/1.1\r\n\r\n", 3).is_empty());
    assert!(!parser.is_desynced() && parser.close(4).is_empty());
}

#[test]
fn http_close_delimited_response_finished_by_close() {
    let mut parser = HttpParser::new();
    assert!(parser.feed(IN, b"GET /stream HTTP/1.1\r\n\r\n", 1).is_empty());
    assert!(parser.feed(OUT, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ", 2).is_empty());
    assert!(parser.feed(OUT, b"part two", 3).is_empty());
    let done = parser.close(50);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].finished_at, Some(3));
    let h = http(&done[0]);
    assert_eq!((h.response_body.text.as_deref(), h.response_body.len), (Some("part one, part two"), 18));
    assert!(parser.close(60).is_empty());
}

#[test]
fn http_requests_without_response_are_emitted_at_close() {
    let mut parser = HttpParser::new();
    assert!(parser.feed(IN, b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 1).is_empty());
    let done = parser.close(2);
    assert_eq!(done.len(), 2);
    assert_eq!((done[0].seq, done[1].seq), (0, 1));
    assert!(done.iter().all(|e| http(e).status.is_none() && e.finished_at.is_none()));
    assert_eq!(http(&done[1]).request_body.len, 3);
}

#[test]
fn http_gzip_json_response_is_decoded_pretty_and_redacted() {
    let json = br#"{"user":{"name":"ada","accessToken":"t0k"},"items":[1,2]}"#;
    let all = run(&[
        (IN, b"GET /me HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n"),
        (
            OUT,
            &response_with("Content-Type: application/json; charset=utf-8\r\nContent-Encoding: gzip\r\n", &gzip(json)),
        ),
    ]);
    let body = &http(&all[0]).response_body;
    assert_eq!(body.encoding.as_deref(), Some("gzip"));
    let expected = json!({"user": {"name": "ada", "accessToken": MASK}, "items": [1, 2]});
    assert_eq!(body.json.as_ref(), Some(&expected));
    assert_eq!(body.text, Some(serde_json::to_string_pretty(&expected).unwrap()));
    assert!(body.text.as_deref().unwrap().contains("\n  \"items\""));
    assert!(!body.binary && !body.truncated);
}

#[test]
fn http_br_json_response_is_decoded() {
    let json = br#"{"ok":true,"password":"p"}"#;
    let all = run(&[
        (IN, b"GET /status HTTP/1.1\r\n\r\n"),
        (OUT, &response_with("Content-Type: application/json\r\nContent-Encoding: br\r\n", &brotli_stored(json))),
    ]);
    let body = &http(&all[0]).response_body;
    assert_eq!(body.encoding.as_deref(), Some("br"));
    assert_eq!(body.json, Some(json!({"ok": true, "password": MASK})));
    assert!(body.text.as_deref().unwrap().starts_with("{\n  \""));
}

#[test]
fn http_bad_or_unknown_encoding_shows_nothing() {
    let all = run(&[
        (IN, b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
        (OUT, &response_with("Content-Encoding: gzip\r\n", b"not gzip at all")),
        (OUT, &response_with("Content-Encoding: zstd\r\n", b"\x28\xb5\x2f\xfd")),
    ]);
    for exchange in &all {
        let body = &http(exchange).response_body;
        assert!(body.text.is_none() && body.json.is_none() && body.binary && body.encoding.is_none());
    }
}

#[test]
fn http_deflate_zlib_and_raw_and_truncated_gzip() {
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(b"zlib text").unwrap();
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    raw.write_all(b"raw text").unwrap();
    let all = run(&[
        (IN, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
        (OUT, &response_with("Content-Encoding: deflate\r\n", &zlib.finish().unwrap())),
        (OUT, &response_with("Content-Encoding: deflate\r\n", &raw.finish().unwrap())),
    ]);
    assert_eq!(http(&all[0]).response_body.text.as_deref(), Some("zlib text"));
    assert_eq!(http(&all[1]).response_body.text.as_deref(), Some("raw text"));

    // A big gzip body: only the captured prefix is decoded, and the body is marked truncated.
    let mut pseudo = Vec::new();
    let mut state = 1u32;
    for _ in 0..200_000 {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        pseudo.push(b'a' + (state >> 16) as u8 % 26);
    }
    let compressed = gzip(&pseudo);
    assert!(compressed.len() > crate::BODY_CAP);
    let all =
        run(&[(IN, b"GET /big HTTP/1.1\r\n\r\n"), (OUT, &response_with("Content-Encoding: gzip\r\n", &compressed))]);
    let body = &http(&all[0]).response_body;
    assert!(body.truncated && !body.binary);
    assert_eq!(body.len, compressed.len() as u64);
    let text = body.text.as_deref().unwrap();
    assert!(text.len() > crate::BODY_CAP && pseudo.starts_with(text.as_bytes()));
}

#[test]
fn http_graphql_named_query_with_secret_variables() {
    let body = concat!(
        r#"{"query":"query GetUser($id: ID!, $password: String) { user(id: $id) { name } }","#,
        r#""operationName":"GetUser","variables":{"id":"7","password":"hunter2"}}"#
    );
    let all = run(&[(IN, &graphql_post(body)), (OUT, &json_response(r#"{"data":{"user":{"name":"ada"}}}"#))]);
    let ops = ops(&all[0]);
    assert_eq!(
        ops,
        [GraphqlOperation {
            operation_type: "query".into(),
            name: Some("GetUser".into()),
            variables: Some(json!({"id": "7", "password": MASK})),
            errors: vec![],
        }]
    );
    let request_body = &http(&all[0]).request_body;
    assert_eq!(request_body.json.as_ref().unwrap()["variables"]["password"], json!(MASK));
    assert!(!request_body.text.as_deref().unwrap().contains("hunter2"));
}

#[test]
fn http_graphql_shorthand_query() {
    let all = run(&[(IN, &graphql_post(r#"{"query":"{ me { id } }"}"#)), (OUT, &json_response(r#"{"data":{}}"#))]);
    assert_eq!(ops(&all[0]).len(), 1);
    assert_eq!((ops(&all[0])[0].operation_type.as_str(), ops(&all[0])[0].name.as_deref()), ("query", None));
    assert!(ops(&all[0])[0].variables.is_none());
}

#[test]
fn http_graphql_operation_name_selects_mutation_among_two() {
    let doc = "query List { items { id } }\\n# mutation Fake { x }\\n\
        mutation Login($password: String) { login(password: \\\"inline\\\", pass: $password) { ok } }";
    let body = format!(r#"{{"query":"{doc}","operationName":"Login","variables":{{"password":"s3cret","n":1}}}}"#);
    let all = run(&[(IN, &graphql_post(&body)), (OUT, &json_response(r#"{"data":{"login":{"ok":true}}}"#))]);
    let op = &ops(&all[0])[0];
    assert_eq!((op.operation_type.as_str(), op.name.as_deref()), ("mutation", Some("Login")));
    assert_eq!(op.variables, Some(json!({"password": MASK, "n": 1})));
    let text = http(&all[0]).request_body.text.clone().unwrap();
    assert!(!text.contains("inline") && !text.contains("s3cret"), "{text}");
}

#[test]
fn http_graphql_batch_errors_map_by_index() {
    let body = r#"[{"query":"query A { a }"},{"query":"mutation B { b }","variables":{"token":"x"}}]"#;
    let response = r#"[{"data":{"a":1}},{"data":null,"errors":[{"message":"denied"},{"message":"also bad"}]}]"#;
    let all = run(&[(IN, &graphql_post(body)), (OUT, &json_response(response))]);
    let got: Vec<_> =
        ops(&all[0]).iter().map(|o| (o.operation_type.as_str(), o.name.as_deref(), o.errors.clone())).collect();
    assert_eq!(
        got,
        vec![("query", Some("A"), vec![]), ("mutation", Some("B"), vec!["denied".to_string(), "also bad".to_string()])]
    );
    assert_eq!(ops(&all[0])[1].variables, Some(json!({"token": MASK})));
}

#[test]
fn http_graphql_get_query_string() {
    let request = b"GET /graphql?query=query%20Viewer(%24v%3A%20Int)%20%7B%20viewer%20%7B%20login%20%7D%20%7D\
        &operationName=Viewer&variables=%7B%22v%22%3A1%2C%22apiKey%22%3A%22k%22%7D HTTP/1.1\r\n\r\n";
    let all = run(&[(IN, request), (OUT, &json_response(r#"{"data":{"viewer":{"login":"x"}}}"#))]);
    let op = &ops(&all[0])[0];
    assert_eq!((op.operation_type.as_str(), op.name.as_deref()), ("query", Some("Viewer")));
    assert_eq!(op.variables, Some(json!({"v": 1, "apiKey": MASK})));
    assert!(http(&all[0]).path.contains("%5Bredacted%5D"), "{}", http(&all[0]).path);
}

#[test]
fn http_graphql_errors_with_status_200_and_graphql_body() {
    let response = r#"{"data":null,"errors":[{"message":"Cannot query field \"x\""}]}"#;
    let all = run(&[
        (IN, &graphql_post(r#"{"query":"query Q { x }"}"#)),
        (OUT, &json_response(response)),
        (
            IN,
            b"POST /graphql?operationName=S HTTP/1.1\r\nContent-Type: application/graphql\r\n\
            Content-Length: 25\r\n\r\nsubscription S { ticks }\n",
        ),
        (OUT, &json_response(r#"{"errors":[{"message":"no subscriptions over POST"}]}"#)),
    ]);
    assert_eq!(http(&all[0]).status, Some(200));
    assert_eq!(ops(&all[0])[0].errors, vec!["Cannot query field \"x\"".to_string()]);
    let op = &ops(&all[1])[0];
    assert_eq!((op.operation_type.as_str(), op.name.as_deref()), ("subscription", Some("S")));
    assert_eq!(op.errors, vec!["no subscriptions over POST".to_string()]);
}

#[test]
fn http_non_graphql_json_with_query_field_is_not_graphql() {
    let all = run(&[(IN, &graphql_post(r#"{"query":"cheap flights"}"#)), (OUT, &json_response("{}"))]);
    assert!(ops(&all[0]).is_empty());
}

#[test]
fn http_redacts_credentials_headers_and_query_tokens() {
    let long = "v".repeat(5000);
    let request = format!(
        "GET /cb?token=abc&state=1 HTTP/1.1\r\nAuthorization: Bearer xyz\r\nCookie: sid=1\r\n\
         X-Long: {long}\r\nX-Api-Key: k\r\n\r\n"
    );
    let all = run(&[
        (IN, request.as_bytes()),
        (
            OUT,
            &response_with(
                "Set-Cookie: sid=2; HttpOnly\r\nContent-Type: application/x-www-form-urlencoded\r\n",
                b"a=1&password=x",
            ),
        ),
    ]);
    let h = http(&all[0]);
    assert_eq!(h.path, "/cb?token=[redacted]&state=1");
    assert_eq!(header(&h.request_headers, "authorization"), Some(MASK));
    assert_eq!(header(&h.request_headers, "cookie"), Some(MASK));
    assert_eq!(header(&h.request_headers, "x-api-key"), Some(MASK));
    assert_eq!(header(&h.request_headers, "x-long").map(str::len), Some(crate::HEADER_VALUE_CAP));
    assert_eq!(header(&h.response_headers, "set-cookie"), Some(MASK));
    assert_eq!(h.response_body.text.as_deref(), Some(redact::form("a=1&password=x").as_str()));
    assert!(h.request_headers.iter().all(|h| h.name == h.name.to_ascii_lowercase()));
}

#[test]
fn http_echoed_json_and_form_without_content_type_are_redacted() {
    let body = r#"{"a":1,"password":"p"}"#;
    let request = format!(
        "POST /echo HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let form = "user=a&password=p2&token=t3";
    let form_request = format!("POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n{form}", form.len());
    let all = run(&[
        (IN, request.as_bytes()),
        (OUT, &response_with("", body.as_bytes())),
        (IN, form_request.as_bytes()),
        (OUT, &response_with("", form.as_bytes())),
    ]);
    let masked = json!({"a": 1, "password": MASK});
    let h = http(&all[0]);
    assert_eq!((h.request_body.json.as_ref(), h.response_body.json.as_ref()), (Some(&masked), Some(&masked)));
    assert!(!h.response_body.text.as_deref().unwrap().contains("\"p\""), "{:?}", h.response_body);
    let h = http(&all[1]);
    let masked = "user=a&password=[redacted]&token=[redacted]";
    assert_eq!((h.request_body.text.as_deref(), h.response_body.text.as_deref()), (Some(masked), Some(masked)));
}

#[test]
fn http_body_prefix_is_capped_and_binary_detected() {
    let big = vec![b'x'; crate::BODY_CAP + 100];
    let all = run(&[
        (IN, b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
        (OUT, &response_with("", &big)),
        (OUT, &response_with("", b"\xff\xfe\x00bin")),
    ]);
    let body = &http(&all[0]).response_body;
    assert_eq!(
        (body.len, body.truncated, body.text.as_ref().map(String::len)),
        (big.len() as u64, true, Some(crate::BODY_CAP))
    );
    let body = &http(&all[1]).response_body;
    assert!(body.binary && body.text.is_none() && !body.truncated);
}

#[test]
fn http_malformed_heads_desync() {
    for (dir, bytes, pending) in [
        (IN, &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..], 1),
        (IN, b"GET / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", 1),
        (IN, b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 1),
        (IN, b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 1),
        (IN, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 2),
        (OUT, b"HTTP/1.1 abc\r\n\r\n", 1),
    ] {
        let mut parser = HttpParser::new();
        parser.feed(IN, b"GET /first HTTP/1.1\r\n\r\n", 1);
        parser.feed(dir, bytes, 2);
        assert!(parser.is_desynced(), "{:?}", String::from_utf8_lossy(bytes));
        assert!(parser.feed(IN, b"GET / HTTP/1.1\r\n\r\n", 3).is_empty());
        assert_eq!(parser.close(4).len(), pending);
    }
    let mut parser = HttpParser::new();
    parser.feed(IN, b"GET / HTTP/1.1\r\n", 1);
    for _ in 0..100 {
        parser.feed(IN, &[b'a'; 1024], 2);
    }
    assert!(parser.is_desynced());
}

/// A conversation exercising most framings, as (direction, bytes) segments in the order seen.
fn conversation() -> Vec<(Direction, Vec<u8>)> {
    let gz = gzip(br#"{"hello":"world","secret":"s"}"#);
    vec![
        (IN, b"\r\nGET /a?token=1 HTTP/1.1\r\nHost: x\r\nCookie: c=1\r\n\r\n".to_vec()),
        (OUT, response_with("Content-Type: text/plain\r\n", b"alpha")),
        (IN, b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n".to_vec()),
        (IN, b"PUT /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n".to_vec()),
        (OUT, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbeta\r\n0\r\n\r\n".to_vec()),
        (OUT, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
        (IN, b"data".to_vec()),
        (OUT, response_with("Content-Type: application/json\r\nContent-Encoding: gzip\r\n", &gz)),
        (IN, b"HEAD /d HTTP/1.1\r\n\r\n".to_vec()),
        (OUT, b"HTTP/1.1 200 OK\r\nContent-Length: 77\r\n\r\n".to_vec()),
        (IN, graphql_post(r#"[{"query":"query A { a }"},{"query":"{ b }"}]"#)),
        (OUT, json_response(r#"[{"data":1},{"errors":[{"message":"m"}]}]"#)),
        (IN, b"GET /e HTTP/1.1\r\n\r\nGET /f HTTP/1.1\r\n\r\n".to_vec()),
        (OUT, b"HTTP/1.1 304 Not Modified\r\n\r\n".to_vec()),
        (OUT, b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec()),
    ]
}

/// Feeds segments (each with its own time) whole, or cut at `cuts` (offsets into the whole stream).
fn feed_cut(segments: &[(Direction, Vec<u8>)], cuts: &[usize]) -> (Vec<Exchange>, bool) {
    let mut parser = HttpParser::new();
    let mut all = Vec::new();
    let mut offset = 0;
    for (i, (dir, bytes)) in segments.iter().enumerate() {
        let mut points: Vec<usize> =
            cuts.iter().filter(|&&c| c > offset && c < offset + bytes.len()).map(|c| c - offset).collect();
        points.sort_unstable();
        points.dedup();
        let mut start = 0;
        for end in points.into_iter().chain([bytes.len()]) {
            all.extend(parser.feed(*dir, &bytes[start..end], i as u64 * 100));
            start = end;
        }
        offset += bytes.len();
    }
    all.extend(parser.close(1_000_000));
    (all, parser.is_desynced())
}

#[test]
fn http_conversation_is_parsed_whole() {
    let (all, desynced) = feed_cut(&conversation(), &[]);
    assert!(!desynced);
    let got: Vec<_> = all.iter().map(|e| (e.seq, http(e).method.as_str(), http(e).status)).collect();
    assert_eq!(
        got,
        vec![
            (0, "GET", Some(200)),
            (1, "POST", Some(200)),
            (2, "PUT", Some(200)),
            (3, "HEAD", Some(200)),
            (4, "POST", Some(200)),
            (5, "GET", Some(304)),
            (6, "GET", Some(200)),
        ]
    );
    assert_eq!(http(&all[2]).response_body.json, Some(json!({"hello": "world", "secret": MASK})));
    assert_eq!(ops(&all[4])[1].errors, vec!["m".to_string()]);
    assert_eq!(http(&all[6]).response_body.text.as_deref(), Some("until close"));
}

proptest! {
    #[test]
    fn http_split_points_do_not_change_exchanges(
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..48)
    ) {
        let segments = conversation();
        let total: usize = segments.iter().map(|(_, bytes)| bytes.len()).sum();
        let cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(total)).collect();
        let whole = feed_cut(&segments, &[]);
        let split = feed_cut(&segments, &cuts);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn http_random_bytes_never_panic(
        chunks in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)
    ) {
        let mut parser = HttpParser::new();
        for (i, (to_service, bytes)) in chunks.iter().enumerate() {
            parser.feed(if *to_service { IN } else { OUT }, bytes, i as u64);
        }
        parser.close(99);
    }

    #[test]
    fn http_random_http_like_tokens_never_panic(
        chunks in proptest::collection::vec((any::<bool>(), proptest::collection::vec(0..TOKENS.len(), 0..24)), 0..16)
    ) {
        let mut parser = HttpParser::new();
        for (i, (to_service, picks)) in chunks.iter().enumerate() {
            let bytes: Vec<u8> = picks.iter().flat_map(|&p| TOKENS[p].iter().copied()).collect();
            parser.feed(if *to_service { IN } else { OUT }, &bytes, i as u64);
        }
        let _ = parser.close(99);
        prop_assert!(parser.close(100).is_empty());
    }
}

/// Pieces of HTTP that random sequences are built from, to reach deeper parser states.
const TOKENS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"HEAD /h HTTP/1.1\r\n",
    b"CONNECT a:1 HTTP/1.1\r\n",
    b"POST /graphql HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 101 Switching\r\n",
    b"HTTP/1.1 204 No\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Encoding: gzip\r\n",
    b"Content-Encoding: br\r\n",
    b"Content-Type: application/json\r\n",
    b"Upgrade: websocket\r\n",
    b"\r\n",
    b"3\r\nabc\r\n",
    b"0\r\n\r\n",
    b"ffffffff;x\r\n",
    b"{\"query\":\"query Q { a }\",\"variables\":{\"password\":1}}",
    b"[{\"query\":\"{ a }\"}]",
    b"{\"errors\":[{\"message\":\"e\"}]}",
    b"\x1f\x8b\x08\x00",
    b"x",
];
