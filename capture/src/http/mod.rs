//! HTTP/1.1 as seen by a passive tap: requests (to the service) and responses (to the client) are
//! framed per RFC 9112 §6.3 — chunked, Content-Length, no body, or close-delimited — with
//! keep-alive and pipelining (responses pair FIFO), interim 1xx skipped, and 101 / CONNECT tunnels
//! turning the rest of the connection opaque. Buffers are bounded: heads up to [`HEAD_CAP`], bodies
//! only as a [`BODY_CAP`](crate::BODY_CAP) prefix plus a count. Anything malformed desyncs the connection instead of
//! failing. Completed exchanges carry redacted headers and bodies, decoded content and GraphQL operations.

mod body;
mod chunked;
mod graphql;
mod media;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use body::Capture;
use chunked::{Chunked, Step};
use media::Media;

use crate::{Body, Detail, Direction, Exchange, HEADER_VALUE_CAP, Header, HttpExchange, Micros, Protocol, redact};

/// Largest request or response head (start line and header fields).
pub const HEAD_CAP: usize = 64 * 1024;
/// Most bytes held per direction while it waits for the other one (e.g. after an Upgrade request).
const STASH_CAP: usize = 64 * 1024;
/// Most header fields in one head.
const MAX_HEADERS: usize = 256;
/// Most requests waiting for their response (pipelining depth).
const MAX_IN_FLIGHT: usize = 32;
/// Longest path kept.
const PATH_CAP: usize = 8 * 1024;
/// Longest method or reason phrase kept.
const TOKEN_CAP: usize = 256;

/// Incremental HTTP/1.1 parser of one connection, fed both directions in the order they were seen.
#[derive(Debug)]
pub struct HttpParser {
    requests: Side,
    responses: Side,
    /// Requests whose exchange has not been emitted yet, oldest first.
    in_flight: VecDeque<Entry>,
    next_seq: u64,
    desynced: bool,
    /// The connection switched protocols (101 or a CONNECT tunnel): everything after is ignored.
    opaque: bool,
    closed: bool,
}

impl Default for HttpParser {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpParser {
    pub fn new() -> Self {
        HttpParser {
            requests: Side::default(),
            responses: Side::default(),
            in_flight: VecDeque::new(),
            next_seq: 0,
            desynced: false,
            opaque: false,
            closed: false,
        }
    }

    /// Feeds bytes seen in one direction at time `at`; returns exchanges that completed with this input.
    pub fn feed(&mut self, dir: Direction, bytes: &[u8], at: Micros) -> Vec<Exchange> {
        let mut out = Vec::new();
        if self.halted() || self.closed || bytes.is_empty() {
            return out;
        }
        let consumed = if self.side(dir).stash.is_empty() && !self.blocked(dir) {
            self.process(dir, bytes, at, &mut out)
        } else {
            0
        };
        if consumed < bytes.len() && !self.halted() {
            self.stash(dir, &bytes[consumed..], at);
        }
        self.pump(&mut out);
        out
    }

    /// The connection closed: finish close-delimited responses, emit requests left without a response.
    /// A response cut short keeps what was seen; its `finished_at` is its last byte, not `at`.
    pub fn close(&mut self, at: Micros) -> Vec<Exchange> {
        let _ = at;
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        let mut out = Vec::new();
        if self.opaque {
            return out;
        }
        let close_delimited = matches!(self.responses.reading, Reading::Body(Framing::Close)) && !self.desynced;
        let last_at = self.responses.last_at;
        for mut entry in std::mem::take(&mut self.in_flight) {
            if let Some(response) = entry.response.as_mut().filter(|_| !entry.resp_done) {
                response.body.complete = close_delimited;
                entry.finished_at = Some(last_at);
            }
            out.push(entry.into_exchange());
        }
        self.requests = Side::default();
        self.responses = Side::default();
        out
    }

    /// True once the parser lost track of framing (the tap then only counts bytes).
    pub fn is_desynced(&self) -> bool {
        self.desynced
    }

    fn halted(&self) -> bool {
        self.desynced || self.opaque
    }

    fn side(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::ToService => &mut self.requests,
            Direction::ToClient => &mut self.responses,
        }
    }

    /// Whether a direction must wait for the other before its next message: requests after an
    /// Upgrade or CONNECT request (they may be tunnel bytes) or past the pipelining depth, and
    /// responses with no request to answer.
    fn blocked(&self, dir: Direction) -> bool {
        match dir {
            Direction::ToService => {
                self.requests.between_messages()
                    && (self.in_flight.len() >= MAX_IN_FLIGHT
                        || self.in_flight.iter().any(|e| e.request.may_switch() && !e.resp_done))
            }
            Direction::ToClient => self.responses.between_messages() && self.answering().is_none(),
        }
    }

    /// The request the next response bytes answer.
    fn answering(&self) -> Option<usize> {
        self.in_flight.iter().position(|e| !e.resp_done)
    }

    /// Holds bytes a direction cannot parse yet.
    fn stash(&mut self, dir: Direction, bytes: &[u8], at: Micros) {
        let side = self.side(dir);
        if side.stashed + bytes.len() > STASH_CAP {
            self.desync();
            return;
        }
        side.stashed += bytes.len();
        match side.stash.back_mut() {
            Some((last_at, last)) if *last_at == at => last.extend_from_slice(bytes),
            _ => side.stash.push_back((at, bytes.to_vec())),
        }
    }

    /// Replays stashed bytes of directions that are no longer blocked, until nothing moves.
    fn pump(&mut self, out: &mut Vec<Exchange>) {
        loop {
            let mut progressed = false;
            for dir in [Direction::ToService, Direction::ToClient] {
                while !self.halted() && !self.blocked(dir) {
                    let Some((at, bytes)) = self.side(dir).stash.pop_front() else { break };
                    self.side(dir).stashed -= bytes.len();
                    let used = self.process(dir, &bytes, at, out);
                    if used < bytes.len() && !self.halted() {
                        let side = self.side(dir);
                        side.stashed += bytes.len() - used;
                        side.stash.push_front((at, bytes[used..].to_vec()));
                    }
                    if used == 0 {
                        break;
                    }
                    progressed = true;
                }
            }
            if !progressed || self.halted() {
                return;
            }
        }
    }

    /// Parses as much of `input` as the direction's state allows; returns the bytes used (all of
    /// them once the connection is halted).
    fn process(&mut self, dir: Direction, input: &[u8], at: Micros, out: &mut Vec<Exchange>) -> usize {
        let mut used = 0;
        while used < input.len() && !self.halted() && !self.blocked(dir) {
            let rest = &input[used..];
            let n = match dir {
                Direction::ToService => self.step_request(rest, at, out),
                Direction::ToClient => self.step_response(rest, at, out),
            };
            if n == 0 {
                break;
            }
            used += n;
        }
        if self.halted() { input.len() } else { used }
    }

    fn step_request(&mut self, input: &[u8], at: Micros, out: &mut Vec<Exchange>) -> usize {
        match &mut self.requests.reading {
            Reading::Head => match self.requests.take_head(input, at, parse_request) {
                HeadStep::Need(n) => n,
                HeadStep::Invalid => self.desync_all(input),
                HeadStep::Done(n, request) => {
                    let Ok(framing) = request.head.request_framing() else { return self.desync_all(input) };
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let started_at = self.requests.head_at;
                    let mut entry = Entry::new(seq, started_at, request);
                    match framing {
                        Some(framing) => self.requests.reading = Reading::Body(framing),
                        None => entry.request_done(),
                    }
                    self.in_flight.push_back(entry);
                    self.emit_ready(out);
                    n
                }
            },
            Reading::Body(framing) => {
                let Some(entry) = self.in_flight.back_mut().filter(|e| !e.req_done) else {
                    return self.desync_all(input);
                };
                match framing.consume(input, &mut entry.req_body) {
                    BodyStep::More(n) => n,
                    BodyStep::Invalid => self.desync_all(input),
                    BodyStep::Done(n) => {
                        entry.request_done();
                        self.requests.reading = Reading::Head;
                        self.emit_ready(out);
                        n
                    }
                }
            }
        }
    }

    fn step_response(&mut self, input: &[u8], at: Micros, out: &mut Vec<Exchange>) -> usize {
        let Some(index) = self.answering() else { return self.desync_all(input) };
        self.responses.last_at = at;
        match &mut self.responses.reading {
            Reading::Head => match self.responses.take_head(input, at, parse_response) {
                HeadStep::Need(n) => n,
                HeadStep::Invalid => self.desync_all(input),
                HeadStep::Done(n, response) => {
                    let entry = &mut self.in_flight[index];
                    let status = response.status;
                    let tunnel = entry.request.method.eq_ignore_ascii_case("CONNECT") && (200..300).contains(&status);
                    if status == 101 || tunnel {
                        let upgraded = if tunnel {
                            "tunnel".to_string()
                        } else {
                            let offered = entry.request.head.upgrade.clone();
                            response.head.upgrade.clone().or(offered).unwrap_or_default()
                        };
                        entry.upgraded = Some(upgraded);
                        entry.response = Some(response);
                        entry.response_done(at);
                        self.switch_protocols(index, out);
                        return input.len();
                    }
                    if (100..200).contains(&status) {
                        return n;
                    }
                    let Ok(framing) = response.head.response_framing(&entry.request.method, status) else {
                        return self.desync_all(input);
                    };
                    entry.response = Some(response);
                    match framing {
                        Some(framing) => self.responses.reading = Reading::Body(framing),
                        None => {
                            entry.response_done(at);
                            self.emit_ready(out);
                        }
                    }
                    n
                }
            },
            Reading::Body(framing) => {
                let entry = &mut self.in_flight[index];
                let Some(response) = entry.response.as_mut() else { return self.desync_all(input) };
                match framing.consume(input, &mut response.body) {
                    BodyStep::More(n) => n,
                    BodyStep::Invalid => self.desync_all(input),
                    BodyStep::Done(n) => {
                        entry.response_done(at);
                        self.responses.reading = Reading::Head;
                        self.emit_ready(out);
                        n
                    }
                }
            }
        }
    }

    /// Emits the oldest exchanges whose request and response are both complete.
    fn emit_ready(&mut self, out: &mut Vec<Exchange>) {
        while self.in_flight.front().is_some_and(|e| e.req_done && e.resp_done) {
            if let Some(entry) = self.in_flight.pop_front() {
                out.push(entry.into_exchange());
            }
        }
    }

    /// The response at `index` switched protocols: emit it (and anything before it) and go opaque.
    fn switch_protocols(&mut self, index: usize, out: &mut Vec<Exchange>) {
        let entries = std::mem::take(&mut self.in_flight);
        out.extend(entries.into_iter().take(index + 1).map(Entry::into_exchange));
        self.opaque = true;
        self.requests = Side::default();
        self.responses = Side::default();
    }

    fn desync(&mut self) {
        self.desynced = true;
        self.requests.release();
        self.responses.release();
    }

    /// Desyncs and reports the whole input as used.
    fn desync_all(&mut self, input: &[u8]) -> usize {
        self.desync();
        input.len()
    }
}

/// Parsing state of one direction.
#[derive(Debug, Default)]
struct Side {
    reading: Reading,
    /// Bytes of an incomplete head.
    head: Vec<u8>,
    /// How far `head` was searched for its end.
    scanned: usize,
    /// When the first byte of the current head was seen.
    head_at: Micros,
    /// When the latest byte was parsed.
    last_at: Micros,
    /// Bytes waiting for the other direction, with the time they were seen.
    stash: VecDeque<(Micros, Vec<u8>)>,
    stashed: usize,
}

impl Side {
    /// Between messages: the next byte starts a new head.
    fn between_messages(&self) -> bool {
        matches!(self.reading, Reading::Head) && self.head.is_empty()
    }

    fn release(&mut self) {
        *self = Side::default();
    }

    /// Accumulates a head (skipping empty lines before it) until `parse` completes it.
    fn take_head<T>(&mut self, input: &[u8], at: Micros, parse: fn(&[u8]) -> Parsed<T>) -> HeadStep<T> {
        let mut skipped = 0;
        if self.head.is_empty() {
            skipped = input.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
            let rest = &input[skipped..];
            if rest.is_empty() {
                return HeadStep::Need(skipped);
            }
            self.head_at = at;
            self.scanned = 0;
            if head_end(rest, 0) {
                match parse(rest) {
                    Parsed::Complete(n, value) => return HeadStep::Done(skipped + n, value),
                    Parsed::Invalid => return HeadStep::Invalid,
                    Parsed::Partial => {}
                }
            }
        }
        let rest = &input[skipped..];
        let take = rest.len().min(HEAD_CAP.saturating_sub(self.head.len()));
        let before = self.head.len();
        self.head.extend_from_slice(&rest[..take]);
        if head_end(&self.head, self.scanned.saturating_sub(3)) {
            match parse(&self.head) {
                Parsed::Complete(n, value) => {
                    self.head.clear();
                    self.scanned = 0;
                    return HeadStep::Done(skipped + n.saturating_sub(before).max(1), value);
                }
                Parsed::Invalid => return HeadStep::Invalid,
                Parsed::Partial => {}
            }
        }
        self.scanned = self.head.len();
        if self.head.len() >= HEAD_CAP {
            return HeadStep::Invalid;
        }
        HeadStep::Need(skipped + take)
    }
}

/// Whether `buf` holds an empty line (the end of a head) at or after `from`.
fn head_end(buf: &[u8], from: usize) -> bool {
    (from.max(1)..buf.len())
        .any(|i| buf[i] == b'\n' && (buf[i - 1] == b'\n' || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n')))
}

enum HeadStep<T> {
    /// Used this many bytes; the head is not complete yet.
    Need(usize),
    /// The head ended after this many bytes of the input.
    Done(usize, T),
    Invalid,
}

enum Parsed<T> {
    Complete(usize, T),
    Partial,
    Invalid,
}

#[derive(Debug, Default)]
enum Reading {
    #[default]
    Head,
    Body(Framing),
}

/// How a body ends (RFC 9112 §6.3).
#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(Chunked),
    /// At connection close (responses only).
    Close,
}

enum BodyStep {
    More(usize),
    Done(usize),
    Invalid,
}

impl Framing {
    fn consume(&mut self, input: &[u8], capture: &mut Capture) -> BodyStep {
        match self {
            Framing::Length(remaining) => {
                let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len());
                capture.push(&input[..take]);
                *remaining -= take as u64;
                if *remaining == 0 { BodyStep::Done(take) } else { BodyStep::More(take) }
            }
            Framing::Chunked(decoder) => match decoder.decode(input, |data| capture.push(data)) {
                (Step::More, n) => BodyStep::More(n),
                (Step::Done, n) => BodyStep::Done(n),
                (Step::Invalid, _) => BodyStep::Invalid,
            },
            Framing::Close => {
                capture.push(input);
                BodyStep::More(input.len())
            }
        }
    }
}

/// Header facts shared by requests and responses.
#[derive(Debug, Clone, Default)]
struct Head {
    version: String,
    /// Shown headers: names lowercased, values capped and redacted.
    headers: Vec<Header>,
    content_length: Option<u64>,
    /// Transfer-Encoding codings, lowercased and comma-joined.
    transfer_encoding: Option<String>,
    content_encoding: Option<String>,
    content_type: Option<String>,
    upgrade: Option<String>,
}

impl Head {
    /// Reads the fields of a parsed head; Err on a broken Content-Length.
    fn new(version: Option<u8>, fields: &[httparse::Header<'_>]) -> Result<Head, ()> {
        let mut head = Head { version: format!("HTTP/1.{}", version.unwrap_or(1)), ..Head::default() };
        for field in fields {
            let name = field.name.to_ascii_lowercase();
            let raw = String::from_utf8_lossy(field.value);
            let value = raw.trim();
            match name.as_str() {
                "content-length" => {
                    for part in value.split(',').map(str::trim) {
                        let length = part.parse::<u64>().ok().filter(|_| part.bytes().all(|b| b.is_ascii_digit()));
                        match (length, head.content_length) {
                            (Some(n), None) => head.content_length = Some(n),
                            (Some(n), Some(m)) if n == m => {}
                            _ => return Err(()),
                        }
                    }
                }
                "transfer-encoding" => append(&mut head.transfer_encoding, value),
                "content-encoding" => append(&mut head.content_encoding, value),
                "content-type" if head.content_type.is_none() => head.content_type = Some(cap(value, HEADER_VALUE_CAP)),
                "upgrade" if head.upgrade.is_none() => head.upgrade = Some(cap(value, HEADER_VALUE_CAP)),
                _ => {}
            }
            let shown =
                if redact::is_secret_header(&name) { redact::MASK.to_string() } else { cap(&raw, HEADER_VALUE_CAP) };
            head.headers.push(Header { name, value: shown });
        }
        Ok(head)
    }

    /// Whether the final transfer coding is chunked (None without Transfer-Encoding).
    fn chunked(&self) -> Option<bool> {
        let codings = self.transfer_encoding.as_deref()?;
        Some(codings.rsplit(',').map(str::trim).find(|c| !c.is_empty()) == Some("chunked"))
    }

    /// Request body framing: chunked beats Content-Length; neither means no body.
    fn request_framing(&self) -> Result<Option<Framing>, ()> {
        match (self.chunked(), self.content_length) {
            (Some(true), _) => Ok(Some(Framing::Chunked(Chunked::new()))),
            (Some(false), _) => Err(()),
            (None, Some(0) | None) => Ok(None),
            (None, Some(n)) => Ok(Some(Framing::Length(n))),
        }
    }

    /// Response body framing for a final status: none for HEAD, 1xx, 204 and 304; chunked beats
    /// Content-Length; otherwise the body runs to the connection's close.
    fn response_framing(&self, method: &str, status: u16) -> Result<Option<Framing>, ()> {
        if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(None);
        }
        Ok(match (self.chunked(), self.content_length) {
            (Some(true), _) => Some(Framing::Chunked(Chunked::new())),
            (Some(false), _) | (None, None) => Some(Framing::Close),
            (None, Some(0)) => None,
            (None, Some(n)) => Some(Framing::Length(n)),
        })
    }
}

/// Appends a comma-separated header value (bounded).
fn append(slot: &mut Option<String>, value: &str) {
    let value = value.to_ascii_lowercase();
    let joined = match slot.take() {
        Some(prev) => format!("{prev}, {value}"),
        None => value,
    };
    *slot = Some(cap(&joined, HEADER_VALUE_CAP));
}

fn cap(s: &str, max: usize) -> String {
    graphql::cap(s, max)
}

#[derive(Debug)]
struct Request {
    method: String,
    /// The request target as sent (redacted when shown).
    target: String,
    head: Head,
}

impl Request {
    /// Whether the connection may switch protocols after this request (CONNECT or Upgrade).
    fn may_switch(&self) -> bool {
        self.method.eq_ignore_ascii_case("CONNECT") || self.head.upgrade.is_some()
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    reason: String,
    head: Head,
    body: Capture,
}

fn parse_request(bytes: &[u8]) -> Parsed<Request> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let mut config = httparse::ParserConfig::default();
    config.allow_multiple_spaces_in_request_line_delimiters(true).ignore_invalid_headers_in_requests(true);
    match config.parse_request(&mut request, bytes) {
        Ok(httparse::Status::Complete(n)) => {
            let Ok(head) = Head::new(request.version, request.headers) else { return Parsed::Invalid };
            let method = cap(request.method.unwrap_or(""), TOKEN_CAP);
            Parsed::Complete(n, Request { method, target: request.path.unwrap_or("").to_string(), head })
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Invalid,
    }
}

fn parse_response(bytes: &[u8]) -> Parsed<Response> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(true);
    match config.parse_response(&mut response, bytes) {
        Ok(httparse::Status::Complete(n)) => {
            let Ok(head) = Head::new(response.version, response.headers) else { return Parsed::Invalid };
            let status = response.code.unwrap_or(0);
            let reason = cap(response.reason.unwrap_or(""), TOKEN_CAP);
            Parsed::Complete(n, Response { status, reason, head, body: Capture::default() })
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Invalid,
    }
}

/// A request on its way to becoming an exchange.
#[derive(Debug)]
struct Entry {
    seq: u64,
    started_at: Micros,
    request: Request,
    req_body: Capture,
    req_done: bool,
    /// The final response, once its head arrived.
    response: Option<Response>,
    resp_done: bool,
    finished_at: Option<Micros>,
    upgraded: Option<String>,
}

impl Entry {
    fn new(seq: u64, started_at: Micros, request: Request) -> Self {
        Entry {
            seq,
            started_at,
            request,
            req_body: Capture::default(),
            req_done: false,
            response: None,
            resp_done: false,
            finished_at: None,
            upgraded: None,
        }
    }

    fn request_done(&mut self) {
        self.req_done = true;
        self.req_body.complete = true;
    }

    fn response_done(&mut self, at: Micros) {
        self.resp_done = true;
        self.finished_at = Some(at);
        if let Some(response) = self.response.as_mut() {
            response.body.complete = true;
        }
    }

    /// Decodes, redacts and assembles the exchange.
    fn into_exchange(self) -> Exchange {
        let Entry { seq, started_at, request, req_body, response, finished_at, upgraded, .. } = self;
        let media = Media::of(request.head.content_type.as_deref());
        let decoded = body::decode(&req_body, request.head.content_encoding.as_deref());
        let whole_text = if decoded.whole() { body::text_of(&decoded.bytes, false) } else { None };
        let mut found = graphql::find(&request.method, &request.target, media, whole_text);
        let is_graphql = !found.ops.is_empty();
        let shown_media = if is_graphql && media == Media::Other { Media::Json } else { media };
        let request_body = body::view(&req_body, &decoded, shown_media, is_graphql);
        let mut path = redact::path(&request.target);
        if is_graphql && request.method.eq_ignore_ascii_case("GET") {
            path = graphql::redact_get_path(&path);
        }
        let (status, reason, response_headers, response_body) = match response {
            Some(response) => {
                let media = Media::of(response.head.content_type.as_deref());
                let decoded = body::decode(&response.body, response.head.content_encoding.as_deref());
                if is_graphql {
                    graphql::attach_errors(&mut found, body::text_of(&decoded.bytes, decoded.partial));
                }
                let shown = body::view(&response.body, &decoded, media, false);
                (Some(response.status), Some(response.reason), response.head.headers, shown)
            }
            None => (None, None, Vec::new(), Body::default()),
        };
        Exchange {
            seq,
            protocol: Protocol::Http,
            started_at,
            finished_at,
            detail: Detail::Http(HttpExchange {
                method: request.method,
                path: cap(&path, PATH_CAP),
                version: request.head.version,
                request_headers: request.head.headers,
                request_body,
                status,
                reason,
                response_headers,
                response_body,
                graphql: found.ops.into_iter().map(|(_, op)| op).collect(),
                upgraded,
            }),
        }
    }
}
