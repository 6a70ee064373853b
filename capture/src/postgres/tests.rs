//! Tests of the PostgreSQL parser against hand-built wire bytes.

use proptest::prelude::*;

use super::wire::ELLIPSIS;
use super::*;
use crate::{Detail, PgExchange, ROW_SAMPLE};
use Direction::{ToClient as S, ToService as C};

// ---- builders ----

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(s: &str) -> Vec<u8> {
    let mut out = s.as_bytes().to_vec();
    out.push(0);
    out
}

fn i16b(n: i16) -> [u8; 2] {
    n.to_be_bytes()
}

fn i32b(n: i32) -> [u8; 4] {
    n.to_be_bytes()
}

fn packet(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32 + 4).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn ssl_request() -> Vec<u8> {
    packet(&i32b(SSL_REQUEST))
}

fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = i32b(196_608).to_vec();
    for (k, v) in params {
        body.extend(cstr(k));
        body.extend(cstr(v));
    }
    body.push(0);
    packet(&body)
}

fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
    let mut body = i32b(code).to_vec();
    body.extend_from_slice(extra);
    msg(b'R', &body)
}

fn parameter_status(k: &str, v: &str) -> Vec<u8> {
    msg(b'S', &[cstr(k), cstr(v)].concat())
}

fn backend_key(pid: i32, key: i32) -> Vec<u8> {
    msg(b'K', &[i32b(pid), i32b(key)].concat())
}

fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstr(sql))
}

fn row_description(columns: &[&str]) -> Vec<u8> {
    let mut body = i16b(columns.len() as i16).to_vec();
    for name in columns {
        body.extend(cstr(name));
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&i16b(0));
    }
    msg(b'T', &body)
}

fn data_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut body = i16b(values.len() as i16).to_vec();
    for value in values {
        match value {
            Some(v) => {
                body.extend_from_slice(&i32b(v.len() as i32));
                body.extend_from_slice(v.as_bytes());
            }
            None => body.extend_from_slice(&i32b(-1)),
        }
    }
    msg(b'D', &body)
}

fn command_complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cstr(tag))
}

fn fields(fields: &[(u8, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (code, value) in fields {
        body.push(*code);
        body.extend(cstr(value));
    }
    body.push(0);
    body
}

fn error(code: &str, message: &str, position: Option<u32>) -> Vec<u8> {
    let position = position.map(|p| p.to_string());
    let mut f = vec![(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', message)];
    if let Some(p) = &position {
        f.push((b'P', p));
    }
    msg(b'E', &fields(&f))
}

fn notice(message: &str) -> Vec<u8> {
    msg(b'N', &fields(&[(b'S', "NOTICE"), (b'V', "NOTICE"), (b'C', "00000"), (b'M', message)]))
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    msg(b'P', &[cstr(name), cstr(sql), i16b(0).to_vec()].concat())
}

fn bind(portal: &str, statement: &str, params: &[Option<&[u8]>], binary: bool) -> Vec<u8> {
    let mut body = [cstr(portal), cstr(statement)].concat();
    body.extend_from_slice(&i16b(1));
    body.extend_from_slice(&i16b(i16::from(binary)));
    body.extend_from_slice(&i16b(params.len() as i16));
    for p in params {
        match p {
            Some(v) => {
                body.extend_from_slice(&i32b(v.len() as i32));
                body.extend_from_slice(v);
            }
            None => body.extend_from_slice(&i32b(-1)),
        }
    }
    body.extend_from_slice(&i16b(0));
    msg(b'B', &body)
}

fn describe_portal(name: &str) -> Vec<u8> {
    msg(b'D', &[vec![b'P'], cstr(name)].concat())
}

fn execute(portal: &str) -> Vec<u8> {
    msg(b'E', &[cstr(portal), i32b(0).to_vec()].concat())
}

fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

fn empty(tag: u8) -> Vec<u8> {
    msg(tag, &[])
}

/// A conversation: chunks in the order the tap saw them, each with its time.
type Script = Vec<(Direction, Vec<u8>, Micros)>;

fn run(script: &Script) -> (Vec<Exchange>, PostgresParser) {
    let mut parser = PostgresParser::new();
    let mut out = Vec::new();
    for (dir, bytes, at) in script {
        out.extend(parser.feed(*dir, bytes, *at));
    }
    let last = script.last().map_or(0, |s| s.2);
    out.extend(parser.close(last + 1));
    (out, parser)
}

fn pg(exchange: &Exchange) -> &PgExchange {
    match &exchange.detail {
        Detail::Postgres(pg) => pg,
        other => panic!("not postgres: {other:?}"),
    }
}

/// Trust-authenticated startup (no SSL), at times 0 and 1.
fn connected() -> Script {
    vec![
        (C, startup_message(&[("user", "app"), ("database", "shop")]), 0),
        (S, [auth(0, &[]), backend_key(7, 99), ready(b'I')].concat(), 1),
    ]
}

fn after_startup(script: &Script) -> Vec<Exchange> {
    let (out, parser) = run(script);
    assert!(!parser.is_desynced());
    assert_eq!(pg(&out[0]).kind, "startup");
    out.into_iter().skip(1).collect()
}

// ---- startup and authentication ----

#[test]
fn startup_after_declined_ssl() {
    let script = vec![
        (C, ssl_request(), 10),
        (S, b"N".to_vec(), 11),
        (C, startup_message(&[("user", "ann"), ("database", "shop"), ("application_name", "psql")]), 12),
        (
            S,
            [
                auth(0, &[]),
                parameter_status("server_version", "15.4"),
                parameter_status("TimeZone", "UTC"),
                backend_key(4242, 123_456),
                ready(b'I'),
            ]
            .concat(),
            13,
        ),
    ];
    let (out, parser) = run(&script);
    assert!(!parser.is_desynced());
    assert_eq!(out.len(), 1);
    let pg = pg(&out[0]);
    assert_eq!((out[0].seq, out[0].started_at, out[0].finished_at), (0, 10, Some(13)));
    assert_eq!(pg.kind, "startup");
    let startup: Vec<(&str, &str)> = pg.startup.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(startup, [("user", "ann"), ("database", "shop"), ("application_name", "psql")]);
    assert_eq!(pg.command_tag.as_deref(), Some("AUTH none"));
    assert_eq!(pg.tx_status, Some('I'));
    assert!(pg.error.is_none());
    assert!(!serde_json::to_string(&out).unwrap().contains("123456"), "the cancel key is not kept");
}

#[test]
fn ssl_accepted_makes_the_rest_opaque() {
    let script = vec![(C, ssl_request(), 1), (S, b"S\x16\x03\x01garbage".to_vec(), 2), (C, vec![0x16, 3, 1, 0, 5], 3)];
    let (out, parser) = run(&script);
    assert!(!parser.is_desynced());
    assert_eq!(out.len(), 1);
    assert_eq!(pg(&out[0]).kind, "tls");
    assert_eq!((out[0].started_at, out[0].finished_at), (1, Some(2)));
}

#[test]
fn direct_tls_is_opaque() {
    let (out, parser) = run(&vec![(C, vec![0x16, 3, 1, 0, 200, 1, 0], 5)]);
    assert!(!parser.is_desynced());
    assert_eq!(pg(&out[0]).kind, "tls");
}

#[test]
fn cancel_request_keeps_the_pid_not_the_key() {
    let script = vec![(C, packet(&[i32b(CANCEL_REQUEST), i32b(4242), i32b(987_654_321)].concat()), 3)];
    let (out, _) = run(&script);
    assert_eq!(out.len(), 1);
    let pg = pg(&out[0]);
    assert_eq!(pg.kind, "cancel");
    assert_eq!(pg.startup, [("process_id".to_string(), "4242".to_string())]);
    assert!(!serde_json::to_string(&out).unwrap().contains("987654321"));
}

#[test]
fn scram_auth_never_leaks_secrets() {
    let mut initial = cstr("SCRAM-SHA-256");
    let first = b"n,,n=,r=CLIENTNONCESECRET";
    initial.extend_from_slice(&i32b(first.len() as i32));
    initial.extend_from_slice(first);
    let mut offered = cstr("SCRAM-SHA-256-PLUS");
    offered.extend(cstr("SCRAM-SHA-256"));
    offered.push(0);
    let script = vec![
        (C, startup_message(&[("user", "ann"), ("database", "shop")]), 0),
        (S, auth(10, &offered), 1),
        (C, msg(b'p', &initial), 2),
        (S, auth(11, b"r=CLIENTNONCESECRETSERVERNONCE,s=SALTSECRET,i=4096"), 3),
        (C, msg(b'p', b"c=biws,r=CLIENTNONCESECRETSERVERNONCE,p=PROOFSECRET"), 4),
        (S, [auth(12, b"v=SIGNATURESECRET"), auth(0, &[]), backend_key(1, 2), ready(b'I')].concat(), 5),
        (C, query("SELECT 1"), 6),
        (
            S,
            [row_description(&["?column?"]), data_row(&[Some("1")]), command_complete("SELECT 1"), ready(b'I')]
                .concat(),
            7,
        ),
    ];
    let (out, _) = run(&script);
    assert_eq!(out.len(), 2);
    let startup = pg(&out[0]);
    assert_eq!(startup.command_tag.as_deref(), Some("AUTH SCRAM-SHA-256"));
    assert_eq!((out[0].started_at, out[0].finished_at), (0, Some(5)));
    let json = serde_json::to_string(&out).unwrap();
    for secret in ["SECRET", "biws", "4096", "n,,"] {
        assert!(!json.contains(secret), "{secret} leaked: {json}");
    }
}

#[test]
fn cleartext_and_md5_passwords_are_dropped() {
    for (code, extra) in [(3, &b""[..]), (5, &b"SALT"[..])] {
        let script = vec![
            (C, startup_message(&[("user", "ann")]), 0),
            (S, auth(code, extra), 1),
            (C, msg(b'p', &cstr("hunter2-md5deadbeef")), 2),
            (S, [auth(0, &[]), ready(b'I')].concat(), 3),
        ];
        let (out, _) = run(&script);
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains("hunter2") && !json.contains("SALT"), "{json}");
        let expected = if code == 3 { "AUTH cleartext" } else { "AUTH md5" };
        assert_eq!(pg(&out[0]).command_tag.as_deref(), Some(expected));
    }
}

#[test]
fn authentication_failure_goes_into_the_startup_exchange() {
    let script = vec![
        (C, startup_message(&[("user", "ann")]), 0),
        (S, auth(3, &[]), 1),
        (C, msg(b'p', &cstr("wrong")), 2),
        (
            S,
            msg(
                b'E',
                &fields(&[
                    (b'S', "FATAL"),
                    (b'V', "FATAL"),
                    (b'C', "28P01"),
                    (b'M', "password authentication failed for user \"ann\""),
                ]),
            ),
            3,
        ),
    ];
    let (out, _) = run(&script);
    assert_eq!(out.len(), 1);
    let pg = pg(&out[0]);
    assert_eq!(out[0].finished_at, Some(3));
    let error = pg.error.as_ref().unwrap();
    assert_eq!((error.severity.as_str(), error.sqlstate.as_str()), ("FATAL", "28P01"));
    assert!(!serde_json::to_string(&out).unwrap().contains("wrong"));
}

// ---- simple queries ----

#[test]
fn simple_query_with_rows() {
    let mut script = connected();
    script.push((C, query("SELECT id, name FROM users"), 10));
    script.push((S, [row_description(&["id", "name"]), data_row(&[Some("1"), Some("ann")])].concat(), 11));
    script.push((S, [data_row(&[Some("2"), None]), command_complete("SELECT 2"), ready(b'I')].concat(), 12));
    let out = after_startup(&script);
    assert_eq!(out.len(), 1);
    let pg = pg(&out[0]);
    assert_eq!((out[0].seq, out[0].started_at, out[0].finished_at), (1, 10, Some(12)));
    assert_eq!(pg.kind, "query");
    assert_eq!(pg.sql.as_deref(), Some("SELECT id, name FROM users"));
    assert_eq!(pg.columns, ["id", "name"]);
    assert_eq!(pg.rows, 2);
    assert_eq!(pg.sample_rows, vec![vec![Some("1".into()), Some("ann".into())], vec![Some("2".into()), None]]);
    assert_eq!(pg.command_tag.as_deref(), Some("SELECT 2"));
    assert_eq!(pg.tx_status, Some('I'));
}

#[test]
fn multi_statement_simple_query() {
    let mut script = connected();
    script.push((C, query("BEGIN; INSERT INTO t VALUES (1); SELECT a FROM t; SELECT b, c FROM u"), 10));
    script.push((
        S,
        [
            command_complete("BEGIN"),
            command_complete("INSERT 0 1"),
            row_description(&["a"]),
            data_row(&[Some("1")]),
            command_complete("SELECT 1"),
            row_description(&["b", "c"]),
            data_row(&[Some("x"), Some("y")]),
            data_row(&[Some("z"), Some("w")]),
            command_complete("SELECT 2"),
            ready(b'T'),
        ]
        .concat(),
        11,
    ));
    let out = after_startup(&script);
    let pg = pg(&out[0]);
    assert_eq!(pg.command_tag.as_deref(), Some("BEGIN; INSERT 0 1; SELECT 1; SELECT 2"));
    assert_eq!(pg.columns, ["a"]);
    assert_eq!(pg.rows, 3);
    assert_eq!(pg.sample_rows, vec![vec![Some("1".to_string())]]);
    assert_eq!(pg.tx_status, Some('T'));
}

#[test]
fn error_with_sqlstate_and_position() {
    let mut script = connected();
    script.push((C, query("SELECT * FROM nope"), 10));
    script.push((S, error("42P01", "relation \"nope\" does not exist", Some(15)), 11));
    script.push((S, ready(b'I'), 12));
    let out = after_startup(&script);
    let pg = pg(&out[0]);
    assert_eq!(
        pg.error,
        Some(PgError {
            severity: "ERROR".into(),
            sqlstate: "42P01".into(),
            message: "relation \"nope\" does not exist".into(),
            position: Some(15),
        })
    );
    assert_eq!((out[0].finished_at, pg.tx_status, pg.rows), (Some(12), Some('I'), 0));
}

#[test]
fn empty_query() {
    let mut script = connected();
    script.push((C, query(""), 10));
    script.push((S, [empty(b'I'), ready(b'I')].concat(), 11));
    let out = after_startup(&script);
    assert_eq!(out.len(), 1);
    let pg = pg(&out[0]);
    assert_eq!((pg.sql.as_deref(), pg.command_tag.as_deref(), pg.error.as_ref()), (Some(""), None, None));
    assert_eq!(out[0].finished_at, Some(11));
}

#[test]
fn notices_attach_to_the_current_exchange() {
    let mut script = connected();
    script.push((C, query("COMMIT"), 10));
    script.push((
        S,
        [notice("there is no transaction in progress"), command_complete("COMMIT"), ready(b'I')].concat(),
        11,
    ));
    script.push((S, notice("stray notice"), 12));
    script.push((S, msg(b'A', &[i32b(77).to_vec(), cstr("jobs"), cstr("{\"id\":1}")].concat()), 13));
    let out = after_startup(&script);
    assert_eq!(out.len(), 3);
    assert_eq!(pg(&out[0]).notices, ["there is no transaction in progress"]);
    assert_eq!(
        (pg(&out[1]).kind.as_str(), pg(&out[1]).notices.as_slice()),
        ("notice", &["stray notice".to_string()][..])
    );
    let notification = pg(&out[2]);
    assert_eq!(notification.kind, "notification");
    assert_eq!(notification.sample_rows, vec![vec![Some("77".into()), Some("jobs".into()), Some("{\"id\":1}".into())]]);
    assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn simple_query_literals_are_redacted() {
    let mut script = connected();
    script.push((C, query("ALTER ROLE ann PASSWORD 'hunter2'; SELECT 1 FROM users WHERE api_key = 'k3y'"), 10));
    script.push((S, [command_complete("ALTER ROLE"), ready(b'I')].concat(), 11));
    let out = after_startup(&script);
    assert_eq!(
        pg(&out[0]).sql.as_deref(),
        Some("ALTER ROLE ann PASSWORD '[redacted]'; SELECT 1 FROM users WHERE api_key = '[redacted]'")
    );
}

#[test]
fn sampled_secret_columns_are_masked() {
    let mut script = connected();
    script.push((C, query("SELECT name, password_hash FROM users"), 10));
    script.push((
        S,
        [
            row_description(&["name", "password_hash"]),
            data_row(&[Some("ann"), Some("$2b$hash")]),
            command_complete("SELECT 1"),
            ready(b'I'),
        ]
        .concat(),
        11,
    ));
    let out = after_startup(&script);
    assert_eq!(pg(&out[0]).sample_rows, vec![vec![Some("ann".into()), Some(MASK.into())]]);
}

#[test]
fn row_sample_is_bounded() {
    let mut script = connected();
    script.push((C, query("SELECT g FROM generate_series(1, 50) g"), 10));
    let long = "x".repeat(5000);
    let mut rows = row_description(&["g"]);
    for i in 0..50 {
        rows.extend(data_row(&[Some(if i == 0 { long.as_str() } else { "n" })]));
    }
    rows.extend([command_complete("SELECT 50"), ready(b'I')].concat());
    script.push((S, rows, 11));
    let out = after_startup(&script);
    let pg = pg(&out[0]);
    assert_eq!((pg.rows, pg.sample_rows.len()), (50, ROW_SAMPLE));
    let first = pg.sample_rows[0][0].as_deref().unwrap();
    assert!(first.len() <= VALUE_CAP + ELLIPSIS.len() && first.ends_with(ELLIPSIS));
}

// ---- extended protocol ----

#[test]
fn extended_pipeline_two_executes_one_sync() {
    let mut script = connected();
    script.push((
        C,
        [
            parse("", "SELECT id FROM users WHERE name = $1"),
            bind("", "", &[Some(b"ann")], false),
            describe_portal(""),
            execute(""),
        ]
        .concat(),
        10,
    ));
    script.push((
        C,
        [
            parse("", "UPDATE users SET seen = now() WHERE id = $1"),
            bind("", "", &[Some(&[0, 0, 0, 7])], true),
            describe_portal(""),
            execute(""),
            sync(),
        ]
        .concat(),
        11,
    ));
    script.push((
        S,
        [
            empty(b'1'),
            empty(b'2'),
            row_description(&["id"]),
            data_row(&[Some("7")]),
            command_complete("SELECT 1"),
            empty(b'1'),
            empty(b'2'),
            empty(b'n'),
        ]
        .concat(),
        20,
    ));
    script.push((S, [command_complete("UPDATE 1"), ready(b'I')].concat(), 21));
    let out = after_startup(&script);
    assert_eq!(out.len(), 2);
    let (first, second) = (pg(&out[0]), pg(&out[1]));
    assert_eq!((first.kind.as_str(), first.sql.as_deref()), ("extended", Some("SELECT id FROM users WHERE name = $1")));
    assert_eq!(first.params, [Some("ann".to_string())]);
    assert_eq!((first.columns.as_slice(), first.rows), (&["id".to_string()][..], 1));
    assert_eq!(first.command_tag.as_deref(), Some("SELECT 1"));
    assert_eq!((out[0].started_at, out[0].finished_at), (10, Some(20)));
    assert_eq!(second.sql.as_deref(), Some("UPDATE users SET seen = now() WHERE id = $1"));
    assert_eq!(second.params, [Some("\\x00000007".to_string())]);
    assert!(second.columns.is_empty());
    assert_eq!((second.command_tag.as_deref(), second.tx_status), (Some("UPDATE 1"), Some('I')));
    assert_eq!((out[1].started_at, out[1].finished_at), (11, Some(21)));
}

#[test]
fn error_mid_pipeline_skips_the_following_execute() {
    let mut script = connected();
    script.push((
        C,
        [
            parse("", "INSERT INTO t VALUES ($1)"),
            bind("", "", &[Some(b"1")], false),
            execute(""),
            parse("", "INSERT INTO t VALUES ($1)"),
            bind("", "", &[Some(b"2")], false),
            execute(""),
            sync(),
            query("SELECT 1"),
        ]
        .concat(),
        10,
    ));
    script.push((S, [empty(b'1'), empty(b'2'), error("23505", "duplicate key value", None), ready(b'E')].concat(), 11));
    script.push((
        S,
        [row_description(&["?column?"]), data_row(&[Some("1")]), command_complete("SELECT 1"), ready(b'E')].concat(),
        12,
    ));
    let out = after_startup(&script);
    assert_eq!(out.len(), 3);
    let failed = pg(&out[0]);
    assert_eq!(failed.error.as_ref().unwrap().sqlstate, "23505");
    assert_eq!((failed.params.as_slice(), out[0].finished_at), (&[Some("1".to_string())][..], Some(11)));
    let skipped = pg(&out[1]);
    assert_eq!(skipped.error.as_ref().unwrap().message, SKIPPED);
    assert_eq!((skipped.params.as_slice(), out[1].finished_at), (&[Some("2".to_string())][..], None));
    assert_eq!((pg(&out[2]).kind.as_str(), pg(&out[2]).rows), ("query", 1));
    assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn parse_error_goes_to_the_execute_it_led_to() {
    let mut script = connected();
    script.push((C, [parse("", "SELEC 1"), bind("", "", &[], false), execute(""), sync()].concat(), 10));
    script.push((S, [error("42601", "syntax error at or near \"SELEC\"", Some(1)), ready(b'I')].concat(), 11));
    script.push((C, [parse("s", "SELEC 2"), sync()].concat(), 12));
    script.push((S, [error("42601", "syntax error", Some(1)), ready(b'I')].concat(), 13));
    let out = after_startup(&script);
    assert_eq!(out.len(), 2);
    assert_eq!(pg(&out[0]).sql.as_deref(), Some("SELEC 1"));
    assert_eq!(pg(&out[0]).error.as_ref().unwrap().position, Some(1));
    assert_eq!(pg(&out[0]).tx_status, Some('I'));
    // A Parse without Execute that fails still shows up.
    assert_eq!((pg(&out[1]).sql.as_deref(), out[1].started_at), (Some("SELEC 2"), 12));
}

#[test]
fn named_statement_reused_by_two_binds() {
    let mut script = connected();
    script.push((
        C,
        [
            parse("get_user", "SELECT name FROM users WHERE id = $1"),
            msg(b'D', &[vec![b'S'], cstr("get_user")].concat()),
            sync(),
        ]
        .concat(),
        10,
    ));
    script.push((
        S,
        [
            empty(b'1'),
            msg(b't', &[i16b(1).to_vec(), i32b(23).to_vec()].concat()),
            row_description(&["name"]),
            ready(b'I'),
        ]
        .concat(),
        11,
    ));
    script.push((
        C,
        [
            bind("", "get_user", &[Some(b"1")], false),
            execute(""),
            bind("", "get_user", &[Some(b"2")], false),
            execute(""),
            sync(),
        ]
        .concat(),
        12,
    ));
    script.push((
        S,
        [
            empty(b'2'),
            data_row(&[Some("ann")]),
            command_complete("SELECT 1"),
            empty(b'2'),
            data_row(&[Some("bob")]),
            command_complete("SELECT 1"),
            ready(b'I'),
        ]
        .concat(),
        13,
    ));
    script.push((
        C,
        [msg(b'C', &[vec![b'S'], cstr("get_user")].concat()), bind("", "get_user", &[], false), sync()].concat(),
        14,
    ));
    let out = after_startup(&script);
    assert_eq!(out.len(), 2);
    for (ex, (param, name)) in out.iter().zip([("1", "ann"), ("2", "bob")]) {
        let pg = pg(ex);
        assert_eq!(pg.sql.as_deref(), Some("SELECT name FROM users WHERE id = $1"));
        assert_eq!(pg.params, [Some(param.to_string())]);
        assert_eq!(pg.columns, ["name"]);
        assert_eq!(pg.sample_rows, vec![vec![Some(name.to_string())]]);
    }
    assert_eq!((out[0].started_at, out[1].started_at), (12, 12));
}

#[test]
fn bind_params_redacted_by_column_name() {
    let mut script = connected();
    script.push((
        C,
        [
            parse("", "INSERT INTO users (name, api_key, age) VALUES ($1, $2, $3)"),
            bind("", "", &[Some(b"ann"), Some(b"sk_live_123"), None], false),
            execute(""),
            parse("", "UPDATE users SET password = $1 WHERE id = $2"),
            bind("", "", &[Some(b"hunter2"), Some(b"7")], false),
            execute(""),
            sync(),
        ]
        .concat(),
        10,
    ));
    script.push((
        S,
        [
            empty(b'1'),
            empty(b'2'),
            command_complete("INSERT 0 1"),
            empty(b'1'),
            empty(b'2'),
            command_complete("UPDATE 1"),
            ready(b'I'),
        ]
        .concat(),
        11,
    ));
    let out = after_startup(&script);
    assert_eq!(pg(&out[0]).params, [Some("ann".into()), Some(MASK.into()), None]);
    assert_eq!(pg(&out[1]).params, [Some(MASK.into()), Some("7".into())]);
    let json = serde_json::to_string(&out).unwrap();
    assert!(!json.contains("sk_live") && !json.contains("hunter2"));
}

// ---- COPY ----

#[test]
fn copy_out_summary() {
    let mut script = connected();
    script.push((C, query("COPY t TO STDOUT"), 10));
    let copy_out = msg(b'H', &[vec![0], i16b(1).to_vec(), i16b(0).to_vec()].concat());
    script.push((
        S,
        [
            copy_out,
            msg(b'd', b"1\tann\n"),
            msg(b'd', b"2\tbob\n"),
            empty(b'c'),
            command_complete("COPY 2"),
            ready(b'I'),
        ]
        .concat(),
        11,
    ));
    let out = after_startup(&script);
    let pg = pg(&out[0]);
    assert_eq!(pg.kind, "copy");
    assert_eq!(pg.command_tag.as_deref(), Some("COPY 2 (12 bytes out)"));
    assert_eq!(pg.rows, 2);
    assert!(pg.sample_rows.is_empty());
}

#[test]
fn copy_in_counts_client_bytes() {
    let mut script = connected();
    script.push((C, query("COPY t FROM STDIN"), 10));
    script.push((S, msg(b'G', &[vec![0], i16b(0).to_vec()].concat()), 11));
    script.push((C, [msg(b'd', b"1\tann\n2\tbob\n3\tcy\n"), empty(b'c')].concat(), 12));
    script.push((S, [command_complete("COPY 3"), ready(b'I')].concat(), 13));
    let out = after_startup(&script);
    assert_eq!(pg(&out[0]).command_tag.as_deref(), Some("COPY 3 (17 bytes in)"));
    assert_eq!((pg(&out[0]).rows, out[0].finished_at), (3, Some(13)));
}

// ---- robustness ----

#[test]
fn oversized_messages_are_counted_not_buffered() {
    let mut script = connected();
    let huge = "x".repeat(MAX_BUFFERED + 10);
    script.push((C, query(&format!("SELECT '{huge}'")), 10));
    let mut big_row = data_row(&[Some(huge.as_str())]);
    big_row.extend([command_complete("SELECT 1"), ready(b'I')].concat());
    script.push((S, row_description(&["c"]), 11));
    for chunk in big_row.chunks(1 << 20) {
        script.push((S, chunk.to_vec(), 12));
    }
    let out = after_startup(&script);
    let pg = pg(&out[0]);
    assert!(pg.sql.as_ref().unwrap().len() <= TEXT_CAP + ELLIPSIS.len());
    assert_eq!(pg.rows, 1);
    assert!(pg.sample_rows[0][0].as_ref().unwrap().ends_with(ELLIPSIS));
}

#[test]
fn malformed_length_desyncs_and_emits_what_is_open() {
    let mut script = connected();
    script.push((C, query("SELECT 1"), 10));
    script.push((S, vec![b'T', 0, 0, 0, 2], 11));
    let (out, parser) = run(&script);
    assert!(parser.is_desynced());
    assert_eq!(out.len(), 2);
    assert_eq!((pg(&out[1]).sql.as_deref(), out[1].finished_at), (Some("SELECT 1"), None));
    let mut parser = PostgresParser::new();
    assert!(parser.feed(C, b"\x00\x00\x00\x08\x00\x01\x00\x00", 0).is_empty());
    assert!(parser.is_desynced());
}

/// A realistic session touching most paths.
fn session() -> Script {
    let mut offered = cstr("SCRAM-SHA-256");
    offered.push(0);
    let mut initial = cstr("SCRAM-SHA-256");
    initial.extend_from_slice(&i32b(8));
    initial.extend_from_slice(b"n,,n=,r=");
    vec![
        (C, ssl_request(), 0),
        (S, b"N".to_vec(), 1),
        (C, startup_message(&[("user", "ann"), ("database", "shop")]), 2),
        (S, auth(10, &offered), 3),
        (C, msg(b'p', &initial), 4),
        (S, auth(11, b"r=xyz,s=salt,i=4096"), 5),
        (C, msg(b'p', b"c=biws,r=xyz,p=proof"), 6),
        (S, [auth(12, b"v=sig"), auth(0, &[]), parameter_status("a", "b"), backend_key(1, 2), ready(b'I')].concat(), 7),
        (C, query("SELECT id, name FROM users; SELECT 2"), 8),
        (
            S,
            [
                row_description(&["id", "name"]),
                data_row(&[Some("1"), Some("ann")]),
                data_row(&[Some("2"), None]),
                command_complete("SELECT 2"),
                notice("hello"),
                row_description(&["?column?"]),
                data_row(&[Some("2")]),
                command_complete("SELECT 1"),
                ready(b'I'),
            ]
            .concat(),
            9,
        ),
        (
            C,
            [
                parse("s1", "SELECT * FROM users WHERE token = $1 AND id = $2"),
                bind("", "s1", &[Some(b"tok"), Some(b"1")], false),
                describe_portal(""),
                execute(""),
                parse("", "SELECT 1/0"),
                bind("", "", &[], false),
                execute(""),
                bind("", "s1", &[Some(b"tok2"), None], true),
                execute(""),
                sync(),
            ]
            .concat(),
            10,
        ),
        (
            S,
            [
                empty(b'1'),
                empty(b'2'),
                row_description(&["id"]),
                data_row(&[Some("1")]),
                command_complete("SELECT 1"),
                empty(b'1'),
                empty(b'2'),
                error("22012", "division by zero", None),
                ready(b'I'),
            ]
            .concat(),
            11,
        ),
        (C, query("COPY t TO STDOUT"), 12),
        (
            S,
            [msg(b'H', &[0, 0, 0]), msg(b'd', b"1\n"), empty(b'c'), command_complete("COPY 1"), ready(b'I')].concat(),
            13,
        ),
        (S, msg(b'A', &[i32b(5).to_vec(), cstr("ch"), cstr("payload")].concat()), 14),
        (C, query("SELECT * FROM missing"), 15),
        (S, [error("42P01", "missing", Some(15)), ready(b'I')].concat(), 16),
        (C, empty(b'X'), 17),
    ]
}

#[test]
fn realistic_session_is_parsed_fully() {
    let (out, parser) = run(&session());
    assert!(!parser.is_desynced());
    let kinds: Vec<&str> = out.iter().map(|e| pg(e).kind.as_str()).collect();
    assert_eq!(kinds, ["startup", "query", "extended", "extended", "extended", "copy", "notification", "query"]);
    assert_eq!(pg(&out[2]).params, [Some(MASK.into()), Some("1".into())]);
    assert_eq!(pg(&out[3]).error.as_ref().unwrap().sqlstate, "22012");
    assert_eq!(pg(&out[4]).error.as_ref().unwrap().message, SKIPPED);
    assert_eq!(pg(&out[1]).notices, ["hello"]);
}

/// Cuts every chunk of a script at the given fractions.
fn split(script: &Script, cuts: &[u16]) -> Script {
    let mut out = Vec::new();
    let mut cuts = cuts.iter().cycle();
    for (dir, bytes, at) in script {
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let n = (usize::from(*cuts.next().unwrap_or(&1)) % rest.len()).max(1);
            out.push((*dir, rest[..n].to_vec(), *at));
            rest = &rest[n..];
        }
    }
    out
}

proptest! {
    #[test]
    fn splitting_the_stream_changes_nothing(cuts in proptest::collection::vec(1u16..64, 1..40)) {
        let whole = run(&session()).0;
        let pieces = run(&split(&session(), &cuts)).0;
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn random_bytes_never_panic(chunks in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..24)) {
        let mut parser = PostgresParser::new();
        let mut startup = connected();
        startup.truncate(1);
        for (dir, bytes, at) in &startup {
            parser.feed(*dir, bytes, *at);
        }
        for (i, (to_client, bytes)) in chunks.iter().enumerate() {
            parser.feed(if *to_client { S } else { C }, bytes, i as u64);
        }
        parser.close(99);
        let mut fresh = PostgresParser::new();
        for (i, (to_client, bytes)) in chunks.iter().enumerate() {
            fresh.feed(if *to_client { S } else { C }, bytes, i as u64);
        }
        fresh.close(99);
    }

    #[test]
    fn mutated_sessions_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut script = session();
        for (at, byte) in flips {
            let n = script.len();
            let chunk = &mut script[at % n].1;
            let j = (at / n) % chunk.len();
            chunk[j] = byte;
        }
        let _ = run(&script);
    }
}
