//! Tests of the Redis parser: pairing, RESP3, pub/sub, MULTI, redaction, bounds, split invariance.

use proptest::prelude::*;

use super::*;
use crate::redact::MASK;

use Direction::{ToClient as S, ToService as C};

/// A RESP array of bulk strings, as clients send commands.
fn cmd(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n{part}\r\n", part.len()).as_bytes());
    }
    out
}

fn bulk(text: &str) -> String {
    format!("${}\r\n{text}\r\n", text.len())
}

/// Feeds each step whole at time 10 * (index + 1), then closes.
fn run(steps: &[(Direction, Vec<u8>)]) -> (Vec<Exchange>, RedisParser) {
    let mut parser = RedisParser::new();
    let mut out = Vec::new();
    for (i, (dir, bytes)) in steps.iter().enumerate() {
        out.extend(parser.feed(*dir, bytes, 10 * (i as u64 + 1)));
    }
    out.extend(parser.close(10_000));
    (out, parser)
}

fn rx(e: &Exchange) -> &RedisExchange {
    match &e.detail {
        Detail::Redis(r) => r,
        other => panic!("not redis: {other:?}"),
    }
}

/// (command, args, reply, error, context) of an exchange, for compact assertions.
type Row = (String, Vec<String>, Option<String>, Option<String>, Option<String>);

fn table(out: &[Exchange]) -> Vec<Row> {
    out.iter()
        .map(rx)
        .map(|r| (r.command.clone(), r.args.clone(), r.reply.clone(), r.error.clone(), r.context.clone()))
        .collect()
}

fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn redis_get_set_pairs() {
    let (out, parser) = run(&[
        (C, cmd(&["SET", "a", "1"])),
        (S, b"+OK\r\n".to_vec()),
        (C, cmd(&["get", "a"])),
        (S, bulk("1").into_bytes()),
    ]);
    assert!(!parser.is_desynced());
    assert_eq!(
        table(&out),
        vec![
            ("SET".into(), strings(&["a", "1"]), s("OK"), None, None),
            ("GET".into(), strings(&["a"]), s("\"1\""), None, None),
        ]
    );
    assert_eq!(
        out.iter().map(|e| (e.seq, e.started_at, e.finished_at)).collect::<Vec<_>>(),
        [(0, 10, Some(20)), (1, 30, Some(40))]
    );
    assert!(out.iter().all(|e| e.protocol == Protocol::Redis));
}

#[test]
fn redis_pipelined_three_commands() {
    let commands = [cmd(&["INCR", "n"]), cmd(&["GET", "missing"]), cmd(&["PING"])].concat();
    let (out, _) = run(&[(C, commands), (S, b":1\r\n$-1".to_vec()), (S, b"\r\n+PONG\r\n".to_vec())]);
    assert_eq!(
        table(&out),
        vec![
            ("INCR".into(), strings(&["n"]), s("(integer) 1"), None, None),
            ("GET".into(), strings(&["missing"]), s("(nil)"), None, None),
            ("PING".into(), vec![], s("PONG"), None, None),
        ]
    );
    let times: Vec<_> = out.iter().map(|e| (e.seq, e.started_at, e.finished_at)).collect();
    assert_eq!(times, [(0, 10, Some(20)), (1, 10, Some(30)), (2, 10, Some(30))]);
}

#[test]
fn redis_inline_command_with_quotes() {
    let (out, parser) = run(&[
        (C, b"PING\r\n".to_vec()),
        (S, b"+PONG\r\n".to_vec()),
        (C, b"SET a \"b c\" 'd'\r\n\r\n".to_vec()),
        (S, b"+OK\r\n".to_vec()),
    ]);
    assert!(!parser.is_desynced());
    assert_eq!(
        table(&out),
        vec![
            ("PING".into(), vec![], s("PONG"), None, None),
            ("SET".into(), strings(&["a", "b c", "d"]), s("OK"), None, None)
        ]
    );
}

#[test]
fn redis_nil_integer_and_array_replies() {
    let (out, _) = run(&[
        (
            C,
            [cmd(&["GET", "x"]), cmd(&["INCRBY", "n", "3"]), cmd(&["LRANGE", "l", "0", "-1"]), cmd(&["KEYS", "z*"])]
                .concat(),
        ),
        (S, format!("$-1\r\n:3\r\n*3\r\n{}{}:7\r\n*0\r\n", bulk("a"), bulk("b c")).into_bytes()),
        (C, cmd(&["LRANGE", "big", "0", "-1"])),
        (
            S,
            [b"*40\r\n".to_vec(), (0..40).map(|i| bulk(&format!("item{i}"))).collect::<String>().into_bytes()].concat(),
        ),
    ]);
    let replies: Vec<_> = out.iter().map(|e| rx(e).reply.clone().unwrap()).collect();
    assert_eq!(replies[..4], ["(nil)", "(integer) 3", "array(3) [\"a\", \"b c\", (integer) 7]", "(empty array)"]);
    assert!(replies[4].starts_with("array(40) [\"item0\", \"item1\""), "{}", replies[4]);
    assert!(replies[4].ends_with(", …]") && replies[4].chars().count() < 320, "{}", replies[4]);
}

#[test]
fn redis_error_reply() {
    let (out, parser) = run(&[(C, cmd(&["FOO"])), (S, b"-ERR unknown command 'FOO'\r\n".to_vec())]);
    assert!(!parser.is_desynced());
    assert_eq!(table(&out), vec![("FOO".into(), vec![], None, s("ERR unknown command 'FOO'"), None)]);
    let (out, _) = run(&[(C, cmd(&["X"])), (S, b"!21\r\nSYNTAX invalid syntax\r\n".to_vec())]);
    assert_eq!(rx(&out[0]).error.as_deref(), Some("SYNTAX invalid syntax"));
}

#[test]
fn redis_hello3_then_resp3_map_reply() {
    let hello = format!("%2\r\n{}{}{}:3\r\n", bulk("server"), bulk("redis"), bulk("proto"));
    let (out, parser) = run(&[
        (C, cmd(&["HELLO", "3"])),
        (S, hello.into_bytes()),
        (C, cmd(&["HGETALL", "h"])),
        (S, format!("%1\r\n{}{}", bulk("f"), bulk("v")).into_bytes()),
        (C, cmd(&["EXISTS", "k"])),
        (S, b"#t\r\n".to_vec()),
        (C, cmd(&["ZSCORE", "z", "m"])),
        (S, b",1.5\r\n".to_vec()),
        (C, cmd(&["INFO"])),
        (S, b"=9\r\ntxt:ab cd\r\n".to_vec()),
    ]);
    assert!(parser.resp3 && !parser.is_desynced());
    let replies: Vec<_> = out.iter().map(|e| rx(e).reply.clone().unwrap()).collect();
    assert_eq!(
        replies,
        [
            "map(2) {\"server\": \"redis\", \"proto\": (integer) 3}",
            "map(1) {\"f\": \"v\"}",
            "(true)",
            "(double) 1.5",
            "\"ab cd\"",
        ]
    );
}

#[test]
fn redis_resp3_push_does_not_consume_the_slot() {
    let (out, _) = run(&[
        (C, cmd(&["HELLO", "3"])),
        (S, b"%0\r\n".to_vec()),
        (C, cmd(&["GET", "a"])),
        (S, format!(">2\r\n{}*1\r\n{}", bulk("invalidate"), bulk("a")).into_bytes()),
        (S, format!(">3\r\n{}{}{}", bulk("message"), bulk("ch"), bulk("hi")).into_bytes()),
        (S, bulk("v").into_bytes()),
    ]);
    assert_eq!(
        table(&out)[1..],
        [
            (String::new(), vec![], s("push(2) [\"invalidate\", array(1) [\"a\"]]"), None, s("push invalidate")),
            (String::new(), strings(&["ch"]), s("\"hi\""), None, s("pubsub message")),
            ("GET".into(), strings(&["a"]), s("\"v\""), None, None),
        ]
    );
    assert_eq!((out[3].seq, out[3].started_at, out[3].finished_at), (3, 30, Some(60)));
}

#[test]
fn redis_attribute_before_reply() {
    let attr = format!("|1\r\n{}%1\r\n{}:9\r\n", bulk("key-popularity"), bulk("a"));
    let (out, parser) = run(&[
        (C, cmd(&["MGET", "a", "b"])),
        (S, format!("{attr}*2\r\n:1\r\n").into_bytes()),
        (S, b"|1\r\n+x\r\n+y\r\n:2\r\n".to_vec()),
    ]);
    assert!(!parser.is_desynced());
    assert_eq!(out.len(), 1);
    assert_eq!(rx(&out[0]).reply.as_deref(), Some("array(2) [(integer) 1, (integer) 2]"));
    assert_eq!(out[0].finished_at, Some(30));
}

#[test]
fn redis_subscribe_messages_unsubscribe() {
    let conf = |kind: &str, ch: &str, n: i64| format!("*3\r\n{}{}:{n}\r\n", bulk(kind), bulk(ch));
    let (out, parser) = run(&[
        (C, cmd(&["SUBSCRIBE", "a", "b"])),
        (S, format!("{}{}", conf("subscribe", "a", 1), conf("subscribe", "b", 2)).into_bytes()),
        (S, format!("*3\r\n{}{}{}", bulk("message"), bulk("a"), bulk("hello")).into_bytes()),
        (C, cmd(&["PING"])),
        (S, format!("*3\r\n{}{}{}", bulk("message"), bulk("b"), bulk("world")).into_bytes()),
        (S, format!("*2\r\n{}{}", bulk("pong"), bulk("")).into_bytes()),
        (C, cmd(&["UNSUBSCRIBE"])),
        (S, format!("{}{}", conf("unsubscribe", "a", 1), conf("unsubscribe", "b", 0)).into_bytes()),
        // Out of subscribed mode, an array starting with "message" is an ordinary reply.
        (C, cmd(&["LRANGE", "l", "0", "-1"])),
        (S, format!("*3\r\n{}{}{}", bulk("message"), bulk("x"), bulk("y")).into_bytes()),
    ]);
    assert!(!parser.is_desynced() && !parser.subs.any());
    assert_eq!(
        table(&out),
        vec![
            ("SUBSCRIBE".into(), strings(&["a", "b"]), s("subscribe a, b (2 subscriptions)"), None, None),
            (String::new(), strings(&["a"]), s("\"hello\""), None, s(PUBSUB_MESSAGE)),
            (String::new(), strings(&["b"]), s("\"world\""), None, s(PUBSUB_MESSAGE)),
            ("PING".into(), vec![], s("array(2) [\"pong\", \"\"]"), None, None),
            ("UNSUBSCRIBE".into(), vec![], s("unsubscribe a, b (0 subscriptions)"), None, None),
            ("LRANGE".into(), strings(&["l", "0", "-1"]), s("array(3) [\"message\", \"x\", \"y\"]"), None, None),
        ]
    );
    assert_eq!((out[0].started_at, out[0].finished_at), (10, Some(20)));
}

#[test]
fn redis_resp3_subscribe_confirmations_are_pushes() {
    let (out, _) = run(&[
        (C, cmd(&["HELLO", "3"])),
        (S, b"%0\r\n".to_vec()),
        (C, [cmd(&["PSUBSCRIBE", "n*"]), cmd(&["GET", "k"])].concat()),
        (S, format!(">3\r\n{}{}:1\r\n", bulk("psubscribe"), bulk("n*")).into_bytes()),
        (S, format!(">4\r\n{}{}{}{}", bulk("pmessage"), bulk("n*"), bulk("news"), bulk("x")).into_bytes()),
        (S, b"_\r\n".to_vec()),
    ]);
    assert_eq!(
        table(&out)[1..],
        [
            ("PSUBSCRIBE".into(), strings(&["n*"]), s("psubscribe n* (1 subscription)"), None, None),
            (String::new(), strings(&["n*", "news"]), s("\"x\""), None, s(PUBSUB_MESSAGE)),
            ("GET".into(), strings(&["k"]), s("(nil)"), None, None),
        ]
    );
}

#[test]
fn redis_multi_exec() {
    let (out, _) = run(&[
        (C, [cmd(&["MULTI"]), cmd(&["SET", "a", "1"]), cmd(&["INCR", "n"]), cmd(&["EXEC"])].concat()),
        (S, b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:5\r\n".to_vec()),
        (C, [cmd(&["MULTI"]), cmd(&["GET", "a"]), cmd(&["DISCARD"])].concat()),
        (S, b"+OK\r\n+QUEUED\r\n+OK\r\n".to_vec()),
    ]);
    assert_eq!(
        table(&out),
        vec![
            ("MULTI".into(), vec![], s("OK"), None, None),
            ("SET".into(), strings(&["a", "1"]), s("QUEUED"), None, s("queued in MULTI")),
            ("INCR".into(), strings(&["n"]), s("QUEUED"), None, s("queued in MULTI")),
            ("EXEC".into(), vec![], s("array(2) [OK, (integer) 5]"), None, s("EXEC of 2 commands")),
            ("MULTI".into(), vec![], s("OK"), None, None),
            ("GET".into(), strings(&["a"]), s("QUEUED"), None, s("queued in MULTI")),
            ("DISCARD".into(), vec![], s("OK"), None, s("DISCARD of 1 command")),
        ]
    );
}

#[test]
fn redis_client_reply_off_and_skip() {
    let (out, parser) = run(&[
        (C, [cmd(&["CLIENT", "REPLY", "SKIP"]), cmd(&["SET", "a", "1"]), cmd(&["GET", "a"])].concat()),
        (S, bulk("1").into_bytes()),
        (C, [cmd(&["CLIENT", "REPLY", "OFF"]), cmd(&["SET", "b", "2"]), cmd(&["CLIENT", "REPLY", "ON"])].concat()),
        (S, b"+OK\r\n".to_vec()),
    ]);
    assert!(!parser.is_desynced());
    let rows: Vec<_> = out.iter().map(|e| (rx(e).command.as_str(), rx(e).reply.as_deref(), e.finished_at)).collect();
    assert_eq!(
        rows,
        [
            ("CLIENT", None, None),
            ("SET", None, None),
            ("GET", Some("\"1\""), Some(20)),
            ("CLIENT", None, None),
            ("SET", None, None),
            ("CLIENT", Some("OK"), Some(40)),
        ]
    );
    assert_eq!(rx(&out[1]).context.as_deref(), Some(NO_REPLY));
}

#[test]
fn redis_monitor_stream() {
    let (out, parser) = run(&[
        (C, cmd(&["MONITOR"])),
        (S, b"+OK\r\n".to_vec()),
        (S, b"+1339518083.107412 [0 127.0.0.1:60866] \"set\" \"k\" \"v\"\r\n".to_vec()),
        (S, b"+1339518099.363778 [0 lua] \"config\" \"set\" \"requirepass\" \"topsecret\"\r\n".to_vec()),
    ]);
    assert!(!parser.is_desynced());
    assert_eq!(
        table(&out)[1..],
        [
            ("SET".into(), strings(&["k", "v"]), s("[0 127.0.0.1:60866]"), None, s("monitor")),
            ("CONFIG".into(), strings(&["set", "requirepass", MASK]), s("[0 lua]"), None, s("monitor")),
        ]
    );
}

#[test]
fn redis_auth_and_config_set_redacted() {
    let (out, parser) = run(&[
        (C, cmd(&["AUTH", "alice", "s3cret-pass"])),
        (S, b"+OK\r\n".to_vec()),
        (C, b"AUTH \"inline-secret\"\r\n".to_vec()),
        (S, b"+OK\r\n".to_vec()),
        (C, cmd(&["CONFIG", "SET", "requirepass", "hunter2"])),
        (S, b"+OK\r\n".to_vec()),
        (C, cmd(&["CONFIG", "GET", "requirepass"])),
        (S, format!("*2\r\n{}{}", bulk("requirepass"), bulk("hunter2")).into_bytes()),
        (C, cmd(&["HELLO", "3", "AUTH", "bob", "hello-secret"])),
        (S, b"%0\r\n".to_vec()),
        (C, cmd(&["ACL", "SETUSER", "carol", "on", ">acl-secret", "~*", "+@all"])),
        (S, b"+OK\r\n".to_vec()),
        (C, cmd(&["ACL", "LIST"])),
        (S, format!("*1\r\n{}", bulk("user carol on >acl-secret ~* +@all")).into_bytes()),
        (C, cmd(&["MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", "dave", "migrate-secret", "KEYS", "k"])),
        (S, b"+NOKEY\r\n".to_vec()),
        (C, [cmd(&["MULTI"]), cmd(&["PING"]), cmd(&["CONFIG", "GET", "masterauth"]), cmd(&["EXEC"])].concat()),
        (
            S,
            format!("+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+PONG\r\n%1\r\n{}{}", bulk("masterauth"), bulk("exec-secret"))
                .into_bytes(),
        ),
    ]);
    assert!(!parser.is_desynced());
    let json = serde_json::to_string(&out).unwrap();
    let secrets =
        ["s3cret-pass", "inline-secret", "hunter2", "hello-secret", "acl-secret", "migrate-secret", "exec-secret"];
    for secret in secrets {
        assert!(!json.contains(secret), "{secret} leaked: {json}");
    }
    assert_eq!(rx(&out[0]).args, [MASK, MASK]);
    assert_eq!(rx(&out[2]).args, ["SET", "requirepass", MASK]);
    assert_eq!(rx(&out[3]).reply.as_deref(), Some("array(2) [\"requirepass\", [redacted]]"));
    assert_eq!(rx(&out[4]).args, ["3", "AUTH", MASK, MASK]);
    assert_eq!(rx(&out[5]).args, ["SETUSER", "carol", "on", ">[redacted]", "~*", "+@all"]);
    assert_eq!(rx(&out[11]).reply.as_deref(), Some("array(2) [PONG, map(1) {\"masterauth\": [redacted]}]"));
    assert!(json.contains("carol") && json.contains("requirepass"));
}

#[test]
fn redis_large_bulk_string_is_bounded() {
    let big = "x".repeat(2 << 20);
    let mut parser = RedisParser::new();
    let mut out = Vec::new();
    let command = cmd(&["SET", "k", &big]);
    for chunk in command.chunks(64 * 1024) {
        out.extend(parser.feed(C, chunk, 1));
        assert!(format!("{parser:?}").len() < 32 * 1024, "parser state grows with the value");
    }
    out.extend(parser.feed(S, b"+OK\r\n", 2));
    out.extend(parser.feed(C, &cmd(&["GET", "k"]), 3));
    for chunk in bulk(&big).as_bytes().chunks(64 * 1024) {
        out.extend(parser.feed(S, chunk, 4));
        assert!(format!("{parser:?}").len() < 32 * 1024, "parser state grows with the value");
    }
    assert!(!parser.is_desynced());
    assert_eq!(out.len(), 2);
    let arg = &rx(&out[0]).args[1];
    assert!(arg.starts_with("xxx") && arg.ends_with("… (2097152 bytes)") && arg.len() < 256, "{arg}");
    let reply = rx(&out[1]).reply.as_deref().unwrap();
    assert!(reply.starts_with("\"xxx") && reply.ends_with("…\" (2097152 bytes)") && reply.len() < 128, "{reply}");
    assert_eq!(out[1].finished_at, Some(4));
}

#[test]
fn redis_binary_values_as_hex_and_many_args() {
    let mut command = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\x00\xff\x01\r\n".to_vec();
    let many: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let mut parts = vec!["MGET"];
    parts.extend(many.iter().map(String::as_str));
    command.extend(cmd(&parts));
    let (out, _) = run(&[(C, command), (S, b"+OK\r\n$2\r\n\x00\x01\r\n".to_vec())]);
    assert_eq!(rx(&out[0]).args, ["k", "0x00ff01"]);
    let args = &rx(&out[1]).args;
    assert_eq!((args.len(), args[0].as_str(), args[63].as_str()), (64, "k0", "… 37 more args"));
    assert_eq!(rx(&out[1]).reply.as_deref(), Some("0x0001"));
}

#[test]
fn redis_close_emits_unanswered_and_garbage_desyncs() {
    let (out, parser) =
        run(&[(C, [cmd(&["BLPOP", "q", "0"]), cmd(&["SUBSCRIBE", "a", "b"])].concat()), (S, b":1\r\n".to_vec())]);
    assert!(!parser.is_desynced());
    let rows: Vec<_> = out.iter().map(|e| (rx(e).command.as_str(), rx(e).reply.as_deref(), e.finished_at)).collect();
    assert_eq!(rows, [("BLPOP", Some("(integer) 1"), Some(20)), ("SUBSCRIBE", None, None)]);

    let (out, parser) = run(&[(C, cmd(&["GET", "a"])), (S, b"?garbage\r\n".to_vec()), (S, b"+OK\r\n".to_vec())]);
    assert!(parser.is_desynced());
    assert_eq!(table(&out), vec![("GET".into(), strings(&["a"]), None, None, None)]);

    let (out, parser) = run(&[(S, b"-DENIED protected mode\r\n".to_vec())]);
    assert!(!parser.is_desynced());
    assert_eq!(table(&out), vec![(String::new(), vec![], None, s("DENIED protected mode"), s(UNSOLICITED))]);
}

/// A realistic conversation touching every feature: each step is fed whole or in pieces.
fn script() -> Vec<(Direction, Vec<u8>)> {
    let conf = |kind: &str, ch: &str, n: i64| format!("*3\r\n{}{}:{n}\r\n", bulk(kind), bulk(ch));
    let long = "v".repeat(3000);
    vec![
        (C, cmd(&["AUTH", "pw"])),
        (S, b"+OK\r\n".to_vec()),
        (C, [cmd(&["SET", "k", &long]), b"GET k\r\n".to_vec(), cmd(&["INCR", "n"])].concat()),
        (S, format!("+OK\r\n{}:1\r\n", bulk(&long)).into_bytes()),
        (C, [cmd(&["MULTI"]), cmd(&["SET", "a", "1"]), cmd(&["EXEC"])].concat()),
        (S, b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n".to_vec()),
        (C, [cmd(&["CLIENT", "REPLY", "SKIP"]), cmd(&["DEL", "a"]), cmd(&["GET", "missing"])].concat()),
        (S, b"$-1\r\n".to_vec()),
        (C, cmd(&["SUBSCRIBE", "a", "b"])),
        (S, [conf("subscribe", "a", 1), conf("subscribe", "b", 2)].concat().into_bytes()),
        (S, format!("*3\r\n{}{}{}", bulk("message"), bulk("a"), bulk("m1")).into_bytes()),
        (C, cmd(&["UNSUBSCRIBE"])),
        (S, [conf("unsubscribe", "a", 1), conf("unsubscribe", "b", 0)].concat().into_bytes()),
        (C, cmd(&["HELLO", "3", "AUTH", "u", "pw"])),
        (S, format!("%2\r\n{}{}{}:3\r\n", bulk("server"), bulk("redis"), bulk("proto")).into_bytes()),
        (C, [cmd(&["GET", "x"]), cmd(&["HGETALL", "h"]), cmd(&["GET", "s"]), cmd(&["SMEMBERS", "t"])].concat()),
        (S, format!(">2\r\n{}*1\r\n{}|1\r\n+ttl\r\n:5\r\n", bulk("invalidate"), bulk("x")).into_bytes()),
        (S, format!("{}%1\r\n{}#f\r\n$?\r\n;3\r\nabc\r\n;2\r\nde\r\n;0\r\n", bulk("xv"), bulk("f")).into_bytes()),
        (S, b"~?\r\n:1\r\n(12345678901234567890\r\n,inf\r\n.\r\n".to_vec()),
        (C, cmd(&["FOO"])),
        (S, b"-ERR unknown command\r\n".to_vec()),
        (C, cmd(&["BLPOP", "q", "0"])),
    ]
}

/// Feeds the script with each step cut into pieces of the given sizes (cycled).
fn feed_split(steps: &[(Direction, Vec<u8>)], sizes: &[usize]) -> Vec<Exchange> {
    let mut parser = RedisParser::new();
    let mut out = Vec::new();
    let mut sizes = sizes.iter().cycle();
    for (i, (dir, bytes)) in steps.iter().enumerate() {
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
            out.extend(parser.feed(*dir, &rest[..n], 10 * (i as u64 + 1)));
            rest = &rest[n..];
        }
    }
    assert!(!parser.is_desynced());
    out.extend(parser.close(10_000));
    out
}

#[test]
fn redis_script_whole_feed() {
    let (out, parser) = run(&script());
    assert!(!parser.is_desynced());
    let rows: Vec<_> = out.iter().map(|e| (rx(e).command.as_str(), rx(e).reply.as_deref().unwrap_or("-"))).collect();
    assert_eq!(rows.len(), 21, "{rows:#?}");
    assert_eq!(rows[9], ("GET", "(nil)"));
    assert_eq!(rows[17], ("GET", "\"abcde\""));
    assert_eq!(rows[18], ("SMEMBERS", "set(3) [(integer) 1, (big number) 12345678901234567890, (double) inf]"));
    assert_eq!(rows[20], ("BLPOP", "-"));
    assert!(!serde_json::to_string(&out).unwrap().contains("\"pw\""));
}

proptest! {
    #[test]
    fn redis_split_feeds_match_whole_feed(sizes in prop::collection::vec(1usize..40, 1..24)) {
        let steps = script();
        let whole = feed_split(&steps, &[usize::MAX]);
        prop_assert_eq!(feed_split(&steps, &sizes), whole);
    }

    #[test]
    fn redis_random_bytes_never_panic(chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..64)), 0..32)) {
        let mut parser = RedisParser::new();
        for (i, (to_service, bytes)) in chunks.iter().enumerate() {
            parser.feed(if *to_service { C } else { S }, bytes, i as u64);
        }
        parser.close(u64::MAX);
    }

    #[test]
    fn redis_mutated_script_never_panics(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut steps = script();
        for (step, at, byte) in &flips {
            let n = steps.len();
            let bytes = &mut steps[step.index(n)].1;
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        let mut parser = RedisParser::new();
        for (i, (dir, bytes)) in steps.iter().enumerate() {
            for chunk in bytes.chunks(7) {
                parser.feed(*dir, chunk, i as u64);
            }
        }
        parser.close(0);
    }
}
