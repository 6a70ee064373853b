//! The tap on one tunneled connection: detects the protocol from the client's first bytes (a
//! declared kind wins), feeds that protocol's parser, and degrades to byte counting when the
//! protocol is unknown or the parser loses track.

use crate::http::HttpParser;
use crate::postgres::PostgresParser;
use crate::redis::RedisParser;
use crate::{Detail, Direction, Exchange, Micros, Protocol};

/// Bytes of the client's first message looked at before deciding.
const SNIFF_LEN: usize = 16;

/// One connection's capture state.
#[derive(Debug)]
pub struct Tap {
    state: State,
    /// Server bytes that arrived before the client spoke (held until the protocol is known).
    early: Vec<(Vec<u8>, Micros)>,
    sniffed: Vec<u8>,
    to_service: u64,
    to_client: u64,
    opened_at: Option<Micros>,
}

#[derive(Debug)]
enum State {
    Sniffing,
    Http(HttpParser),
    Postgres(PostgresParser),
    Redis(RedisParser),
    Raw(&'static str),
}

impl Default for Tap {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Tap {
    /// A tap; `declared` skips detection (a service's declared kind).
    pub fn new(declared: Option<Protocol>) -> Self {
        let state = match declared {
            Some(protocol) => start(protocol, ""),
            None => State::Sniffing,
        };
        Self { state, early: Vec::new(), sniffed: Vec::new(), to_service: 0, to_client: 0, opened_at: None }
    }

    /// The protocol once known.
    pub fn protocol(&self) -> Option<Protocol> {
        match self.state {
            State::Sniffing => None,
            State::Http(_) => Some(Protocol::Http),
            State::Postgres(_) => Some(Protocol::Postgres),
            State::Redis(_) => Some(Protocol::Redis),
            State::Raw(_) => Some(Protocol::Unknown),
        }
    }

    /// Bytes seen in one direction; returns the exchanges they completed.
    pub fn on_bytes(&mut self, dir: Direction, bytes: &[u8], at: Micros) -> Vec<Exchange> {
        self.opened_at.get_or_insert(at);
        match dir {
            Direction::ToService => self.to_service += bytes.len() as u64,
            Direction::ToClient => self.to_client += bytes.len() as u64,
        }
        if let State::Sniffing = self.state {
            if dir == Direction::ToClient {
                if self.early.iter().map(|(b, _)| b.len()).sum::<usize>() < 64 * 1024 {
                    self.early.push((bytes.to_vec(), at));
                }
                return Vec::new();
            }
            self.sniffed.extend_from_slice(&bytes[..bytes.len().min(SNIFF_LEN)]);
            self.state = start(detect(&self.sniffed), "unrecognised protocol");
            let mut out = self.feed(Direction::ToService, bytes, at);
            for (early, when) in std::mem::take(&mut self.early) {
                out.extend(self.feed(Direction::ToClient, &early, when));
            }
            return out;
        }
        self.feed(dir, bytes, at)
    }

    /// The connection closed: flush open exchanges; an unknown connection reports its byte counts.
    pub fn on_close(&mut self, at: Micros) -> Vec<Exchange> {
        let mut out = match &mut self.state {
            State::Http(p) => p.close(at),
            State::Postgres(p) => p.close(at),
            State::Redis(p) => p.close(at),
            State::Sniffing | State::Raw(_) => Vec::new(),
        };
        if let Some(note) = self.raw_note() {
            out.push(Exchange {
                seq: 0,
                protocol: Protocol::Unknown,
                started_at: self.opened_at.unwrap_or(at),
                finished_at: Some(at),
                detail: Detail::Raw { to_service: self.to_service, to_client: self.to_client, note: note.to_string() },
            });
        }
        out
    }

    /// Bytes of this connection were lost before reaching the tap (the capture queue was full):
    /// what was parsed so far is flushed and the rest of the connection is only counted.
    pub fn on_gap(&mut self, at: Micros) -> Vec<Exchange> {
        self.opened_at.get_or_insert(at);
        let out = match &mut self.state {
            State::Http(p) => p.close(at),
            State::Postgres(p) => p.close(at),
            State::Redis(p) => p.close(at),
            State::Sniffing | State::Raw(_) => Vec::new(),
        };
        if !matches!(self.state, State::Raw(_)) {
            self.state = State::Raw("capture fell behind and dropped data; counting bytes only");
        }
        out
    }

    /// Why this connection is reported as raw bytes, if it is.
    fn raw_note(&self) -> Option<&'static str> {
        match self.state {
            State::Raw(note) => Some(note),
            State::Sniffing => Some("no data from the client"),
            _ => None,
        }
    }

    fn feed(&mut self, dir: Direction, bytes: &[u8], at: Micros) -> Vec<Exchange> {
        let (out, desynced) = match &mut self.state {
            State::Http(p) => (p.feed(dir, bytes, at), p.is_desynced()),
            State::Postgres(p) => (p.feed(dir, bytes, at), p.is_desynced()),
            State::Redis(p) => (p.feed(dir, bytes, at), p.is_desynced()),
            State::Sniffing | State::Raw(_) => (Vec::new(), false),
        };
        if desynced {
            self.state = State::Raw("the parser lost track; counting bytes only");
        }
        out
    }
}

fn start(protocol: Protocol, note: &'static str) -> State {
    match protocol {
        Protocol::Http => State::Http(HttpParser::new()),
        Protocol::Postgres => State::Postgres(PostgresParser::new()),
        Protocol::Redis => State::Redis(RedisParser::new()),
        Protocol::Unknown => State::Raw(note),
    }
}

/// The protocol a client's first bytes announce.
pub fn detect(first: &[u8]) -> Protocol {
    const METHODS: &[&[u8]] = &[b"GET ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"CONNECT "];
    if METHODS
        .iter()
        .any(|m| first.starts_with(m) || (first.len() < m.len() && m.starts_with(first) && !first.is_empty()))
    {
        return Protocol::Http;
    }
    if first.len() >= 8 {
        let code = u32::from_be_bytes([first[4], first[5], first[6], first[7]]);
        let len = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
        if (8..=10_000).contains(&len) && matches!(code, 80877103 | 80877104 | 80877102 | 196608 | 196610) {
            return Protocol::Postgres;
        }
    }
    if first.first() == Some(&b'*') || first.first().is_some_and(u8::is_ascii_alphabetic) {
        return Protocol::Redis;
    }
    Protocol::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_told_apart_by_the_first_bytes() {
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Protocol::Http);
        assert_eq!(detect(&[0, 0, 0, 8, 4, 210, 22, 47]), Protocol::Postgres);
        assert_eq!(detect(b"*1\r\n$4\r\nPING\r\n"), Protocol::Redis);
        assert_eq!(detect(b"PING\r\n"), Protocol::Redis);
        assert_eq!(detect(&[0x16, 3, 1, 0, 200]), Protocol::Unknown);
    }

    #[test]
    fn a_tap_pairs_http_and_reports_unknown_bytes() {
        let mut tap = Tap::default();
        assert!(tap.on_bytes(Direction::ToService, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 1).is_empty());
        let out = tap.on_bytes(Direction::ToClient, b"HTTP/1.1 204 No Content\r\n\r\n", 2);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0].detail, Detail::Http(h) if h.status == Some(204) && h.path == "/x"));

        let mut raw = Tap::default();
        raw.on_bytes(Direction::ToService, &[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5], 1);
        raw.on_bytes(Direction::ToClient, &[9; 7], 2);
        let out = raw.on_close(3);
        assert!(matches!(&out[0].detail, Detail::Raw { to_service: 10, to_client: 7, .. }));
    }

    #[test]
    fn a_gap_flushes_and_degrades_to_counting() {
        let mut tap = Tap::default();
        tap.on_bytes(Direction::ToService, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", 1);
        let flushed = tap.on_gap(2);
        assert!(
            matches!(&flushed[..], [Exchange { detail: Detail::Http(h), .. }] if h.path == "/a" && h.status.is_none())
        );
        assert!(tap.on_bytes(Direction::ToClient, b"HTTP/1.1 200 OK\r\n\r\n", 3).is_empty());
        let out = tap.on_close(4);
        assert!(matches!(&out[..], [Exchange { detail: Detail::Raw { to_client: 19, .. }, .. }]));
    }

    #[test]
    fn a_server_that_speaks_first_is_held_until_the_client_does() {
        let mut tap = Tap::default();
        assert!(tap.on_bytes(Direction::ToClient, b"+OK\r\n", 1).is_empty());
        let out = tap.on_bytes(Direction::ToService, b"PING\r\n", 2);
        assert_eq!(tap.protocol(), Some(Protocol::Redis));
        assert!(out.len() <= 1);
    }
}
