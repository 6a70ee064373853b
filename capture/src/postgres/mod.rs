//! PostgreSQL v3 wire protocol as seen by a passive tap between client and server: startup and
//! authentication (passwords and SASL payloads are never kept), simple queries, the extended protocol
//! with pipelining, COPY, and asynchronous messages, paired into [`Exchange`]s.
//!
//! Frontend messages that the server answers are queued in order ([`Pending`]); backend messages pop
//! that FIFO. Async messages (notices, notifications, parameter status) never take a slot. After an
//! error in the extended protocol the server skips to the next Sync, and so does the queue. Everything
//! kept is capped; large messages are counted, not buffered.
//!
//! This file is the state machine; beside it: `wire.rs` (framing, header checks, primitive readers),
//! `messages.rs` (the bodies decoded), `exchange.rs` (an exchange being assembled, and the
//! [`Exchange`] it becomes), `sql.rs` (SQL text kept, secrets masked).

mod exchange;
mod messages;
mod sql;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::redact::{MASK, is_secret_name};
use crate::{Direction, Exchange, Micros, PgError, TEXT_CAP};
use exchange::Open;
use messages::{
    NAME_CAP, NOTICE_CAP, VALUE_CAP, read_error, read_formats, read_params, read_params_with, read_row,
    read_row_description,
};
use wire::{Frame, Framer, Framing, MAX_BUFFERED, OVERSIZE_PREFIX, Progress, Reader, body_len, text};

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
/// Requests awaiting a response before the parser gives up.
const MAX_PENDING: usize = 8192;
/// Prepared statements and portals remembered per connection.
const MAX_NAMES: usize = 1024;
const STARTUP_PARAMS_KEPT: usize = 64;
/// Error attached to pipelined requests the server skipped after an earlier error.
const SKIPPED: &str = "skipped after error";

/// Passive parser of one PostgreSQL connection; see the module docs.
#[derive(Debug)]
pub struct PostgresParser {
    phase: Phase,
    client: Framer,
    server: Framer,
    client_framing: Framing,
    /// The client asked for encryption; the server's one-byte answer is due.
    answer_due: Option<(Negotiation, Micros)>,
    seq: u64,
    /// First byte of the first startup packet (an SSLRequest counts).
    startup_started: Option<Micros>,
    /// The open `startup` exchange, until the first ReadyForQuery or an error.
    startup: Option<Box<Open>>,
    auth: Auth,
    /// Client-side view of prepared statements and portals (what the client asked for).
    statements: HashMap<String, Arc<Statement>>,
    portals: HashMap<String, Arc<Portal>>,
    /// First byte of the Parse/Bind/Describe messages leading to the next Execute.
    group_started: Option<Micros>,
    pending: VecDeque<Pending>,
    /// The server is discarding extended-protocol messages until the next Sync.
    skipping: bool,
    /// Server-side column names from Describe replies.
    statement_columns: HashMap<String, Arc<[String]>>,
    portal_columns: HashMap<String, Arc<[String]>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// TLS or GSS encryption was negotiated: the rest is opaque.
    Encrypted,
    Desynced,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Negotiation {
    Ssl,
    Gss,
}

/// What is known about authentication; never any secret material.
#[derive(Debug, Default)]
struct Auth {
    mechanism: Option<String>,
    /// SASL mechanisms the server offered.
    offered: Vec<String>,
    /// The next password message is a SASLInitialResponse (whose mechanism name is kept).
    sasl_initial_due: bool,
}

#[derive(Debug)]
struct Statement {
    sql: Arc<str>,
    /// `$n` numbers whose values are masked.
    secret_params: Vec<u32>,
}

#[derive(Debug)]
struct Portal {
    sql: Option<Arc<str>>,
    params: Vec<Option<String>>,
    /// Result column format codes from Bind (none: all text; one: all; else per column).
    formats: Vec<i16>,
}

/// A frontend message the server still owes a response to.
#[derive(Debug)]
enum Pending {
    /// Simple Query or FunctionCall: everything up to ReadyForQuery.
    Simple(Box<Open>),
    Parse {
        name: String,
        sql: Arc<str>,
        started_at: Micros,
    },
    Bind {
        portal_name: String,
        statement: String,
        portal: Arc<Portal>,
        started_at: Micros,
    },
    Describe {
        portal: bool,
        name: String,
        sql: Option<Arc<str>>,
        started_at: Micros,
    },
    Execute(Box<Open>),
    Close {
        started_at: Micros,
    },
    /// Holds the exchange completed right before it, to add the transaction status from ReadyForQuery.
    Sync {
        held: Option<Box<Open>>,
    },
}

impl Default for PostgresParser {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresParser {
    /// A parser for a new connection: the first client bytes are its startup (or SSL/GSS/cancel) packet.
    pub fn new() -> Self {
        Self {
            phase: Phase::Running,
            client: Framer::default(),
            server: Framer::default(),
            client_framing: Framing::Untyped,
            answer_due: None,
            seq: 0,
            startup_started: None,
            startup: None,
            auth: Auth::default(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            group_started: None,
            pending: VecDeque::new(),
            skipping: false,
            statement_columns: HashMap::new(),
            portal_columns: HashMap::new(),
        }
    }

    /// Bytes seen in one direction at time `at`; returns exchanges completed by this input.
    pub fn feed(&mut self, dir: Direction, bytes: &[u8], at: Micros) -> Vec<Exchange> {
        let mut out = Vec::new();
        let mut input = bytes;
        while self.phase == Phase::Running {
            if dir == Direction::ToClient
                && let Some((negotiation, started_at)) = self.answer_due
            {
                let Some(&answer) = input.first() else { break };
                self.answer_due = None;
                match (negotiation, answer) {
                    (Negotiation::Ssl, b'S') | (Negotiation::Gss, b'G') => {
                        self.encrypted(negotiation, started_at, at, &mut out);
                        break;
                    }
                    (_, b'N') => {
                        input = &input[1..];
                        continue;
                    }
                    // Not an answer (an old server's ErrorResponse, say): parse it as a message.
                    _ => {}
                }
            }
            let framing = match dir {
                Direction::ToService => self.client_framing,
                Direction::ToClient => Framing::Typed,
            };
            let framer = match dir {
                Direction::ToService => &mut self.client,
                Direction::ToClient => &mut self.server,
            };
            // A TLS ClientHello instead of a startup packet: direct SSL (PostgreSQL 17+).
            if framing == Framing::Untyped && framer.idle() && input.first() == Some(&0x16) {
                self.encrypted(Negotiation::Ssl, at, at, &mut out);
                break;
            }
            match framer.advance(&mut input, framing, at) {
                Progress::NeedMore => break,
                Progress::Header { tag, len } => match body_len(dir, framing, tag, len) {
                    Some(len) => {
                        let keep = self.keep(dir, tag, len);
                        self.framer(dir).begin_body(tag, len, keep);
                    }
                    None => self.desync(&mut out),
                },
                Progress::Message(frame) => match dir {
                    Direction::ToService => self.on_client(frame, &mut out),
                    Direction::ToClient => self.on_server(frame, at, &mut out),
                },
            }
        }
        out
    }

    /// Connection closed: emit what is open (unfinished exchanges keep `finished_at: None`).
    pub fn close(&mut self, _at: Micros) -> Vec<Exchange> {
        let mut out = Vec::new();
        if self.phase == Phase::Running {
            self.flush(&mut out);
            self.phase = Phase::Closed;
        }
        out
    }

    /// The parser lost track of the framing and stopped parsing.
    pub fn is_desynced(&self) -> bool {
        self.phase == Phase::Desynced
    }

    fn framer(&mut self, dir: Direction) -> &mut Framer {
        match dir {
            Direction::ToService => &mut self.client,
            Direction::ToClient => &mut self.server,
        }
    }

    /// How much of a message body to buffer.
    fn keep(&self, dir: Direction, tag: u8, len: usize) -> usize {
        let whole = if len <= MAX_BUFFERED { len } else { OVERSIZE_PREFIX };
        match (dir, tag) {
            // Passwords and SASL responses: only a SASLInitialResponse's mechanism name is read.
            (Direction::ToService, b'p') if self.auth.sasl_initial_due => len.min(NAME_CAP),
            (Direction::ToService, b'p' | b'd') => 0,
            // SASLContinue/SASLFinal payloads are read no further than the auth code.
            (Direction::ToClient, b'R') => len.min(NAME_CAP * 4),
            (Direction::ToClient, b'D') if self.front_open().is_some_and(Open::wants_sample) => whole,
            (Direction::ToClient, b'D' | b'd' | b'S' | b'K' | b't' | b'V' | b'G' | b'H' | b'W' | b'v') => 0,
            _ => whole,
        }
    }

    fn emit(&mut self, open: Open, out: &mut Vec<Exchange>) {
        out.push(open.into_exchange(self.seq));
        self.seq += 1;
    }

    fn encrypted(&mut self, negotiation: Negotiation, started_at: Micros, at: Micros, out: &mut Vec<Exchange>) {
        let (kind, note) = match negotiation {
            Negotiation::Ssl => ("tls", "TLS negotiated: the rest of the connection is encrypted"),
            Negotiation::Gss => ("gssenc", "GSSAPI encryption negotiated: the rest of the connection is encrypted"),
        };
        let mut open = Open::new(kind, started_at);
        open.finished_at = Some(at);
        open.notices.push(note.to_string());
        self.emit(open, out);
        self.phase = Phase::Encrypted;
    }

    /// Lost track: emit what is open and stop.
    fn desync(&mut self, out: &mut Vec<Exchange>) {
        self.flush(out);
        self.phase = Phase::Desynced;
    }

    fn flush(&mut self, out: &mut Vec<Exchange>) {
        if let Some(open) = self.startup.take() {
            self.emit(*open, out);
        }
        while let Some(pending) = self.pending.pop_front() {
            match pending {
                Pending::Simple(open) | Pending::Execute(open) | Pending::Sync { held: Some(open) } => {
                    self.emit(*open, out)
                }
                _ => {}
            }
        }
    }

    fn push(&mut self, pending: Pending, out: &mut Vec<Exchange>) {
        self.pending.push_back(pending);
        if self.pending.len() > MAX_PENDING {
            self.desync(out);
        }
    }

    /// The exchange the server is answering right now (front of the queue).
    fn front_open(&self) -> Option<&Open> {
        match self.pending.front()? {
            Pending::Simple(open) | Pending::Execute(open) => Some(open),
            _ => None,
        }
    }

    fn front_open_mut(&mut self) -> Option<&mut Open> {
        match self.pending.front_mut()? {
            Pending::Simple(open) | Pending::Execute(open) => Some(open),
            _ => None,
        }
    }

    /// The exchange async messages (notices) belong to: startup, else the first open one before a Sync.
    fn current_open_mut(&mut self) -> Option<&mut Open> {
        if let Some(open) = self.startup.as_deref_mut() {
            return Some(open);
        }
        for pending in self.pending.iter_mut() {
            match pending {
                Pending::Simple(open) | Pending::Execute(open) | Pending::Sync { held: Some(open) } => {
                    return Some(open);
                }
                Pending::Sync { held: None } => return None,
                _ => {}
            }
        }
        None
    }

    /// Execute's columns come from the Describe of its portal, answered before its rows.
    fn resolve_front_columns(&mut self) {
        if let Some(Pending::Execute(open)) = self.pending.front_mut()
            && !open.columns_resolved
        {
            open.columns_resolved = true;
            if let Some(columns) = self.portal_columns.get(&open.portal_name) {
                open.columns = columns.to_vec();
            }
        }
    }

    /// An Execute completed: keep it in the Sync right behind it (for the transaction status), else emit.
    fn park_or_emit(&mut self, open: Box<Open>, index: usize, out: &mut Vec<Exchange>) {
        if let Some(Pending::Sync { held }) = self.pending.get_mut(index)
            && held.is_none()
        {
            *held = Some(open);
            return;
        }
        self.emit(*open, out);
    }

    fn complete_front_execute(&mut self, at: Micros, out: &mut Vec<Exchange>) {
        if let Some(Pending::Execute(mut open)) = self.pending.pop_front() {
            open.finished_at = Some(at);
            self.park_or_emit(open, 0, out);
        }
    }

    // ---- frontend ----

    fn on_client(&mut self, frame: Frame, out: &mut Vec<Exchange>) {
        let mut r = Reader::new(&frame.body);
        let started_at = frame.started_at;
        match frame.tag {
            0 => self.on_startup_packet(r, started_at, out),
            b'Q' => {
                let mut open = Open::new("query", started_at);
                open.sql = r.cstr().map(|q| sql::prepare(q).0);
                self.push(Pending::Simple(Box::new(open)), out);
            }
            b'P' => {
                let name = text(r.cstr().unwrap_or_default(), NAME_CAP);
                let (sql, secret_params) = sql::prepare(r.cstr().unwrap_or_default());
                let statement = Arc::new(Statement { sql: sql.clone(), secret_params });
                insert_capped(&mut self.statements, name.clone(), statement);
                self.group_started.get_or_insert(started_at);
                self.push(Pending::Parse { name, sql, started_at }, out);
            }
            b'B' => {
                let portal_name = text(r.cstr().unwrap_or_default(), NAME_CAP);
                let statement_name = text(r.cstr().unwrap_or_default(), NAME_CAP);
                let statement = self.statements.get(&statement_name).cloned();
                let secret =
                    |n: usize| statement.as_ref().is_some_and(|s| s.secret_params.iter().any(|&p| p as usize == n + 1));
                let params = read_params(&mut r, secret);
                let formats = read_formats(&mut r);
                let portal = Arc::new(Portal { sql: statement.map(|s| s.sql.clone()), params, formats });
                insert_capped(&mut self.portals, portal_name.clone(), portal.clone());
                self.group_started.get_or_insert(started_at);
                self.push(Pending::Bind { portal_name, statement: statement_name, portal, started_at }, out);
            }
            b'D' => {
                let portal = r.u8() == Some(b'P');
                let name = text(r.cstr().unwrap_or_default(), NAME_CAP);
                let sql = match portal {
                    true => self.portals.get(&name).and_then(|p| p.sql.clone()),
                    false => self.statements.get(&name).map(|s| s.sql.clone()),
                };
                self.group_started.get_or_insert(started_at);
                self.push(Pending::Describe { portal, name, sql, started_at }, out);
            }
            b'E' => {
                let portal_name = text(r.cstr().unwrap_or_default(), NAME_CAP);
                let mut open = Open::new("extended", self.group_started.take().unwrap_or(started_at));
                open.bound = self.portals.get(&portal_name).cloned();
                open.portal_name = portal_name;
                open.columns_resolved = false;
                self.push(Pending::Execute(Box::new(open)), out);
            }
            b'C' => {
                let portal = r.u8() == Some(b'P');
                let name = text(r.cstr().unwrap_or_default(), NAME_CAP);
                if portal {
                    self.portals.remove(&name);
                } else {
                    self.statements.remove(&name);
                }
                self.group_started.get_or_insert(started_at);
                self.push(Pending::Close { started_at }, out);
            }
            b'S' => {
                self.group_started = None;
                self.push(Pending::Sync { held: None }, out);
            }
            b'F' => {
                let oid = r.i32().unwrap_or(0);
                let mut open = Open::new("function_call", started_at);
                open.sql = Some(Arc::from(format!("-- function call, oid {oid}")));
                let formats = read_formats(&mut r);
                open.params = read_params_with(&mut r, &formats, |_| false);
                self.push(Pending::Simple(Box::new(open)), out);
            }
            b'd' => {
                if let Some(open) = self.front_open_mut()
                    && let Some((to_server, _)) = open.copy.as_mut()
                {
                    *to_server += frame.len as u64;
                }
            }
            b'f' => {
                let message = text(r.cstr().unwrap_or_default(), NOTICE_CAP);
                if let Some(open) = self.front_open_mut() {
                    open.notice(format!("COPY aborted by client: {message}"));
                }
            }
            b'p' => self.on_password(r),
            _ => {} // Flush, Terminate, CopyDone
        }
    }

    /// Password, SASL and GSS responses: only a SASL mechanism name the server offered is kept.
    fn on_password(&mut self, mut r: Reader<'_>) {
        if !std::mem::take(&mut self.auth.sasl_initial_due) {
            return;
        }
        let name = r.cstr().unwrap_or_default();
        if let Some(offered) = self.auth.offered.iter().find(|m| m.as_bytes() == name) {
            self.auth.mechanism = Some(offered.clone());
        }
    }

    fn on_startup_packet(&mut self, mut r: Reader<'_>, started_at: Micros, out: &mut Vec<Exchange>) {
        let first = *self.startup_started.get_or_insert(started_at);
        match r.i32().unwrap_or(0) {
            SSL_REQUEST => self.answer_due = Some((Negotiation::Ssl, started_at)),
            GSSENC_REQUEST => self.answer_due = Some((Negotiation::Gss, started_at)),
            CANCEL_REQUEST => {
                // The secret key that follows the process id is not kept.
                let mut open = Open::new("cancel", started_at);
                if let Some(pid) = r.i32() {
                    open.startup.push(("process_id".to_string(), pid.to_string()));
                }
                self.emit(open, out);
            }
            code if code >> 16 == 3 => {
                let mut open = Open::new("startup", first);
                if code & 0xffff != 0 {
                    open.startup.push(("protocol".to_string(), format!("3.{}", code & 0xffff)));
                }
                while let Some(name) = r.cstr().filter(|n| !n.is_empty()) {
                    let value = r.cstr().unwrap_or_default();
                    if open.startup.len() < STARTUP_PARAMS_KEPT {
                        let name = text(name, NAME_CAP);
                        let value = if is_secret_name(&name) { MASK.to_string() } else { text(value, VALUE_CAP) };
                        open.startup.push((name, value));
                    }
                }
                self.startup = Some(Box::new(open));
                self.client_framing = Framing::Typed;
            }
            _ => self.desync(out),
        }
    }

    // ---- backend ----

    fn on_server(&mut self, frame: Frame, at: Micros, out: &mut Vec<Exchange>) {
        let mut r = Reader::new(&frame.body);
        match frame.tag {
            b'R' => self.on_auth(r),
            b'E' => self.on_error(read_error(r), frame.started_at, at, out),
            b'N' => {
                let message = read_error(r).message;
                match self.current_open_mut() {
                    Some(open) => open.notice(message),
                    None => {
                        let mut open = Open::new("notice", frame.started_at);
                        open.finished_at = Some(at);
                        open.notices.push(message);
                        self.emit(open, out);
                    }
                }
            }
            b'A' => {
                let pid = r.i32().unwrap_or(0);
                let channel = text(r.cstr().unwrap_or_default(), NAME_CAP);
                let payload = text(r.cstr().unwrap_or_default(), TEXT_CAP);
                let mut open = Open::new("notification", frame.started_at);
                open.finished_at = Some(at);
                open.command_tag_from(format!("NOTIFY {channel}"));
                open.columns = vec!["pid".into(), "channel".into(), "payload".into()];
                open.sample_rows.push(vec![Some(pid.to_string()), Some(channel), Some(payload)]);
                open.rows = 1;
                self.emit(open, out);
            }
            b'Z' => self.on_ready(r.u8(), at, out),
            b'1' => {
                if let Some(Pending::Parse { name, .. }) = self.pending.front() {
                    self.statement_columns.remove(name);
                    self.pending.pop_front();
                }
            }
            b'2' => {
                if let Some(Pending::Bind { portal_name, statement, .. }) = self.pending.front() {
                    match self.statement_columns.get(statement).cloned() {
                        Some(columns) => insert_capped(&mut self.portal_columns, portal_name.clone(), columns),
                        None => {
                            self.portal_columns.remove(portal_name);
                        }
                    }
                    self.pending.pop_front();
                }
            }
            b'3' => {
                if let Some(Pending::Close { .. }) = self.pending.front() {
                    self.pending.pop_front();
                }
            }
            b'T' | b'n' => {
                let (columns, formats) = if frame.tag == b'T' { read_row_description(r) } else { Default::default() };
                match self.pending.front_mut() {
                    Some(Pending::Simple(open)) => {
                        open.descriptions += 1;
                        if open.descriptions == 1 {
                            open.columns = columns;
                            open.formats = formats;
                        }
                    }
                    Some(Pending::Describe { portal, name, .. }) => {
                        let map = if *portal { &mut self.portal_columns } else { &mut self.statement_columns };
                        insert_capped(map, std::mem::take(name), Arc::from(columns));
                        self.pending.pop_front();
                    }
                    _ => {}
                }
            }
            b'D' => {
                self.resolve_front_columns();
                if let Some(open) = self.front_open_mut() {
                    if !frame.body.is_empty() && open.wants_sample() {
                        let formats = open.bound.as_ref().map_or(&open.formats, |p| &p.formats);
                        let row = read_row(r, &open.columns, formats);
                        open.sample_rows.push(row);
                    }
                    open.rows += 1;
                }
            }
            b'C' | b'I' | b's' => {
                self.resolve_front_columns();
                let tag = match frame.tag {
                    b'C' => Some(text(r.cstr().unwrap_or_default(), NAME_CAP)),
                    b's' => Some("(portal suspended)".to_string()),
                    _ => None,
                };
                match self.pending.front_mut() {
                    Some(Pending::Simple(open)) => {
                        if let Some(tag) = tag {
                            open.command_tag_from(tag);
                        }
                    }
                    Some(Pending::Execute(open)) => {
                        if let Some(tag) = tag {
                            open.command_tag_from(tag);
                        }
                        self.complete_front_execute(at, out);
                    }
                    _ => {}
                }
            }
            b'G' | b'H' | b'W' => {
                self.resolve_front_columns();
                if let Some(open) = self.front_open_mut() {
                    open.kind = "copy";
                    open.copy.get_or_insert((0, 0));
                }
            }
            b'd' => {
                if let Some(open) = self.front_open_mut()
                    && let Some((_, to_client)) = open.copy.as_mut()
                {
                    *to_client += frame.len as u64;
                }
            }
            _ => {} // ParameterStatus, BackendKeyData, ParameterDescription, CopyDone, FunctionCallResponse, ...
        }
    }

    fn on_auth(&mut self, mut r: Reader<'_>) {
        let mechanism = match r.i32() {
            Some(0) => {
                self.auth.mechanism.get_or_insert_with(|| "none".to_string());
                return;
            }
            Some(2) => "kerberos_v5",
            Some(3) => "cleartext",
            Some(5) => "md5", // the salt is not kept
            Some(7) => "gss",
            Some(9) => "sspi",
            Some(10) => {
                self.auth.offered.clear();
                while let Some(name) = r.cstr().filter(|n| !n.is_empty()) {
                    if self.auth.offered.len() < 8 {
                        self.auth.offered.push(text(name, 64));
                    }
                }
                self.auth.sasl_initial_due = true;
                self.auth.mechanism = Some(self.auth.offered.join(" "));
                return;
            }
            // GSS continue, SASLContinue, SASLFinal: their payloads are dropped.
            _ => return,
        };
        self.auth.mechanism = Some(mechanism.to_string());
    }

    fn finish_startup(&mut self, mut open: Box<Open>, at: Micros, out: &mut Vec<Exchange>) {
        open.finished_at = Some(at);
        if let Some(mechanism) = &self.auth.mechanism {
            open.tags.push(format!("AUTH {mechanism}"));
        }
        self.emit(*open, out);
    }

    fn on_error(&mut self, error: PgError, started_at: Micros, at: Micros, out: &mut Vec<Exchange>) {
        if let Some(mut open) = self.startup.take() {
            open.error = Some(error);
            self.finish_startup(open, at, out);
            return;
        }
        self.resolve_front_columns();
        match self.pending.front_mut() {
            Some(Pending::Simple(open)) => {
                // The rest of the batch is aborted; ReadyForQuery follows.
                if open.error.is_none() {
                    open.error = Some(error);
                    open.finished_at = Some(at);
                }
            }
            Some(Pending::Execute(open)) => {
                open.error = Some(error);
                self.skipping = true;
                self.complete_front_execute(at, out);
            }
            Some(Pending::Sync { held }) => {
                // At Sync: a commit failed (deferred constraint, serialization failure).
                match held {
                    Some(open) if open.error.is_none() => open.error = Some(error),
                    _ => self.event_error(error, started_at, at, out),
                }
            }
            Some(_) => {
                // Parse, Bind, Describe or Close failed: the error belongs to the Execute it led to.
                self.skipping = true;
                let failed = self.pending.pop_front();
                let next = self.pending.iter().position(|p| {
                    !matches!(
                        p,
                        Pending::Parse { .. } | Pending::Bind { .. } | Pending::Describe { .. } | Pending::Close { .. }
                    )
                });
                let open = match next.and_then(|i| self.pending.get(i)) {
                    Some(Pending::Execute(_)) => next.and_then(|i| self.pending.remove(i)).and_then(|p| match p {
                        Pending::Execute(open) => Some(open),
                        _ => None,
                    }),
                    _ => failed.and_then(failed_request),
                };
                if let Some(mut open) = open {
                    open.error = Some(error);
                    open.finished_at = Some(at);
                    self.park_or_emit(open, next.unwrap_or(usize::MAX), out);
                }
            }
            None => self.event_error(error, started_at, at, out),
        }
    }

    /// An error not answering any request (e.g. the server shutting down).
    fn event_error(&mut self, error: PgError, started_at: Micros, at: Micros, out: &mut Vec<Exchange>) {
        let mut open = Open::new("error", started_at);
        open.finished_at = Some(at);
        open.error = Some(error);
        self.emit(open, out);
    }

    fn on_ready(&mut self, status: Option<u8>, at: Micros, out: &mut Vec<Exchange>) {
        let status = status.filter(|s| b"ITE".contains(s)).map(char::from);
        if let Some(mut open) = self.startup.take() {
            open.tx_status = status;
            self.finish_startup(open, at, out);
            return;
        }
        let skipping = std::mem::take(&mut self.skipping);
        let Some(end) = self.pending.iter().position(|p| matches!(p, Pending::Simple(_) | Pending::Sync { .. })) else {
            return;
        };
        for _ in 0..=end {
            match self.pending.pop_front() {
                Some(Pending::Execute(mut open)) => {
                    if skipping && open.error.is_none() {
                        open.error = Some(PgError {
                            severity: "ERROR".to_string(),
                            sqlstate: String::new(),
                            message: SKIPPED.to_string(),
                            position: None,
                        });
                    }
                    self.emit(*open, out);
                }
                Some(Pending::Sync { held: Some(mut open) }) => {
                    open.tx_status = status;
                    self.emit(*open, out);
                }
                Some(Pending::Simple(mut open)) => {
                    open.tx_status = status;
                    open.finished_at = Some(at);
                    self.emit(*open, out);
                }
                _ => {}
            }
        }
    }
}

/// The exchange for a failed Parse/Bind/Describe/Close that no Execute followed.
fn failed_request(pending: Pending) -> Option<Box<Open>> {
    let (started_at, sql, bound) = match pending {
        Pending::Parse { sql, started_at, .. } => (started_at, Some(sql), None),
        Pending::Bind { portal, started_at, .. } => (started_at, None, Some(portal)),
        Pending::Describe { sql, started_at, .. } => (started_at, sql, None),
        Pending::Close { started_at } => (started_at, None, None),
        _ => return None,
    };
    let mut open = Open::new("extended", started_at);
    open.sql = sql;
    open.bound = bound;
    Some(Box::new(open))
}

fn insert_capped<V>(map: &mut HashMap<String, V>, key: String, value: V) {
    if map.len() >= MAX_NAMES
        && !map.contains_key(&key)
        && let Some(evict) = map.keys().next().cloned()
    {
        map.remove(&evict);
    }
    map.insert(key, value);
}
