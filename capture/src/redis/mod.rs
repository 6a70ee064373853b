//! Redis capture: pairs the commands of one connection with their replies (RESP2 and RESP3, FIFO,
//! pipelined), following the protocol's stateful corners: `HELLO 3`, pub/sub (subscribe
//! confirmations, `message` pushes in RESP2 subscribed mode, RESP3 `>` pushes), MULTI/EXEC,
//! `CLIENT REPLY OFF|SKIP`, MONITOR and RESET. Secrets in commands and in the replies that echo them
//! are masked before anything is recorded.
//!
//! Passive and incremental: bytes may be split anywhere; malformed input stops the parsing of the
//! connection ([`RedisParser::is_desynced`]) instead of failing.

mod resp;
mod text;

use std::collections::VecDeque;

use crate::{Detail, Direction, Exchange, Micros, Protocol, RedisExchange};
use resp::{AggKind, Command, CommandDecoder, ReplyDecoder, Val};
use text::Echo;

/// Commands in flight whose arguments are kept; deeper pipelines keep only names.
const PENDING_DETAILED: usize = 256;
/// Commands in flight before giving up on the connection.
const PENDING_MAX: usize = 16 * 1024;
/// Channel names listed in a subscription summary.
const NAMES_KEEP: usize = 16;
/// Commands of a MULTI block whose replies within EXEC's are redacted (later ones are not shown).
const EXEC_REDACTED: u64 = 64;

const QUEUED: &str = "queued in MULTI";
const PUBSUB_MESSAGE: &str = "pubsub message";
const MONITOR: &str = "monitor";
const NO_REPLY: &str = "no reply (CLIENT REPLY)";
const UNSOLICITED: &str = "unsolicited reply";

/// `CLIENT REPLY` state of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ReplyMode {
    #[default]
    On,
    Off,
    SkipNext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubKind {
    Channel,
    Pattern,
    Shard,
}

/// A subscribe-family operation, as named by commands and confirmations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SubOp {
    kind: SubKind,
    subscribe: bool,
}

impl SubOp {
    fn parse(name: &[u8]) -> Option<Self> {
        let (kind, subscribe) = match name.to_ascii_lowercase().as_slice() {
            b"subscribe" => (SubKind::Channel, true),
            b"unsubscribe" => (SubKind::Channel, false),
            b"psubscribe" => (SubKind::Pattern, true),
            b"punsubscribe" => (SubKind::Pattern, false),
            b"ssubscribe" => (SubKind::Shard, true),
            b"sunsubscribe" => (SubKind::Shard, false),
            _ => return None,
        };
        Some(Self { kind, subscribe })
    }

    fn name(self) -> &'static str {
        match (self.kind, self.subscribe) {
            (SubKind::Channel, true) => "subscribe",
            (SubKind::Channel, false) => "unsubscribe",
            (SubKind::Pattern, true) => "psubscribe",
            (SubKind::Pattern, false) => "punsubscribe",
            (SubKind::Shard, true) => "ssubscribe",
            (SubKind::Shard, false) => "sunsubscribe",
        }
    }
}

/// Subscription counts, as last reported by the server.
#[derive(Debug, Clone, Copy, Default)]
struct Subscriptions {
    channels: u64,
    patterns: u64,
    shards: u64,
}

impl Subscriptions {
    fn count(&self, kind: SubKind) -> u64 {
        match kind {
            SubKind::Channel => self.channels,
            SubKind::Pattern => self.patterns,
            SubKind::Shard => self.shards,
        }
    }

    /// In (RESP2) subscribed mode.
    fn any(&self) -> bool {
        self.channels + self.patterns + self.shards > 0
    }

    /// A confirmation reports the total of channels and patterns (shard channels apart).
    fn update(&mut self, kind: SubKind, total: i64) {
        let total = u64::try_from(total).unwrap_or(0);
        match kind {
            SubKind::Channel => self.channels = total.saturating_sub(self.patterns),
            SubKind::Pattern => self.patterns = total.saturating_sub(self.channels),
            SubKind::Shard => self.shards = total,
        }
    }
}

/// What a command waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Reply,
    /// Replies are off (`CLIENT REPLY OFF|SKIP`).
    NoReply,
    /// One confirmation per channel; `left` unknown until the first one for an argument-less unsubscribe.
    Confirm {
        op: SubOp,
        left: Option<u64>,
    },
}

/// What a successful reply changes, or how it is redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    None,
    /// `HELLO 3` (true) or `HELLO 2`.
    Hello(Option<bool>),
    Monitor,
    Reset,
    Echo(Echo),
    /// EXEC: the queued commands (by position) whose replies echo secrets.
    Exec(Vec<(usize, Echo)>),
}

/// A MULTI block being queued.
#[derive(Debug, Default)]
struct Multi {
    queued: u64,
    echoes: Vec<(usize, Echo)>,
}

/// A command waiting for its reply.
#[derive(Debug)]
struct Pending {
    command: String,
    args: Vec<String>,
    started_at: Micros,
    context: Option<String>,
    expect: Expect,
    effect: Effect,
    /// Subscription confirmations so far: names listed, how many, the last count, when.
    names: Vec<String>,
    confirmed: u64,
    total: Option<i64>,
    confirmed_at: Option<Micros>,
}

impl Pending {
    fn confirmations(&self) -> Option<String> {
        let Expect::Confirm { op, .. } = self.expect else { return None };
        if self.confirmed == 0 {
            return None;
        }
        let mut summary = format!("{} {}", op.name(), self.names.join(", "));
        if self.confirmed > self.names.len() as u64 {
            summary.push_str(", …");
        }
        if let Some(total) = self.total {
            summary.push_str(&format!(" ({total} subscription{})", if total == 1 { "" } else { "s" }));
        }
        Some(summary)
    }
}

/// Follows one Redis connection and emits its exchanges.
#[derive(Debug, Default)]
pub struct RedisParser {
    commands: CommandDecoder,
    replies: ReplyDecoder,
    queue: VecDeque<Pending>,
    seq: u64,
    desynced: bool,
    closed: bool,
    /// `HELLO 3` succeeded: pub/sub traffic comes as `>` pushes.
    resp3: bool,
    /// Inside MULTI.
    multi: Option<Multi>,
    reply_mode: ReplyMode,
    subs: Subscriptions,
    /// MONITOR succeeded: `+<timestamp> [db addr] "cmd" ...` lines follow.
    monitor: bool,
}

impl RedisParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes in one direction at time `at`; returns exchanges completed by this input.
    pub fn feed(&mut self, dir: Direction, bytes: &[u8], at: Micros) -> Vec<Exchange> {
        let mut out = Vec::new();
        if self.desynced || self.closed {
            return out;
        }
        let decoded = match dir {
            Direction::ToService => {
                let mut commands = Vec::new();
                let decoded = self.commands.feed(bytes, at, &mut commands);
                for command in commands {
                    self.on_command(command, &mut out);
                }
                decoded
            }
            Direction::ToClient => {
                let mut replies = Vec::new();
                let decoded = self.replies.feed(bytes, &mut replies);
                for reply in replies {
                    self.on_reply(reply, at, &mut out);
                }
                decoded
            }
        };
        if decoded.is_err() {
            self.desynced = true;
        }
        out
    }

    /// Connection closed: emit commands left without a reply.
    pub fn close(&mut self, _at: Micros) -> Vec<Exchange> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        self.closed = true;
        while let Some(pending) = self.queue.pop_front() {
            self.unanswered(pending, &mut out);
        }
        out
    }

    /// The connection is no longer followed (malformed or untrackable traffic).
    pub fn is_desynced(&self) -> bool {
        self.desynced
    }

    fn emit(&mut self, out: &mut Vec<Exchange>, started_at: Micros, finished_at: Option<Micros>, ex: RedisExchange) {
        out.push(Exchange {
            seq: self.seq,
            protocol: Protocol::Redis,
            started_at,
            finished_at,
            detail: Detail::Redis(ex),
        });
        self.seq += 1;
    }

    /// Emits a command that got no (complete) reply.
    fn unanswered(&mut self, p: Pending, out: &mut Vec<Exchange>) {
        let reply = p.confirmations();
        let finished_at = reply.as_ref().and(p.confirmed_at);
        let context = match p.expect {
            Expect::NoReply => p.context.or_else(|| Some(NO_REPLY.to_string())),
            _ => p.context,
        };
        let ex = RedisExchange { command: p.command, args: p.args, reply, error: None, context };
        self.emit(out, p.started_at, finished_at, ex);
    }

    /// Emits the commands at the head of the queue that wait for nothing.
    fn drain_no_reply(&mut self, out: &mut Vec<Exchange>) {
        while self.queue.front().is_some_and(|p| p.expect == Expect::NoReply) {
            if let Some(p) = self.queue.pop_front() {
                self.unanswered(p, out);
            }
        }
    }

    fn on_command(&mut self, command: Command, out: &mut Vec<Exchange>) {
        if self.desynced {
            return;
        }
        let Some(first) = command.argv.first() else { return };
        let name = text::command_name(first);
        let word = |i: usize| text::keyword(command.argv.get(i));
        let sub = word(1).unwrap_or_default();
        let mut expect = Expect::Reply;
        let mut effect = Effect::None;
        let mut context = None;

        let client_reply = if name == "CLIENT" && sub == "REPLY" { word(2) } else { None };
        match (self.reply_mode, client_reply.as_deref()) {
            (_, Some("ON")) => self.reply_mode = ReplyMode::On,
            (_, Some("OFF")) => {
                self.reply_mode = ReplyMode::Off;
                expect = Expect::NoReply;
            }
            (mode, Some("SKIP")) => {
                if mode == ReplyMode::On {
                    self.reply_mode = ReplyMode::SkipNext;
                }
                expect = Expect::NoReply;
            }
            (ReplyMode::Off, _) if name != "RESET" => expect = Expect::NoReply,
            (ReplyMode::SkipNext, _) => {
                self.reply_mode = ReplyMode::On;
                if name != "RESET" {
                    expect = Expect::NoReply;
                }
            }
            _ => {}
        }

        let queued = !matches!(name.as_str(), "EXEC" | "DISCARD" | "MULTI" | "WATCH" | "QUIT" | "RESET");
        match self.multi.as_mut() {
            Some(multi) if queued => {
                if let Some(echo) = Echo::of(&command.argv)
                    && multi.queued < EXEC_REDACTED
                {
                    multi.echoes.push((multi.queued as usize, echo));
                }
                multi.queued += 1;
                context = Some(QUEUED.to_string());
            }
            _ => {
                match name.as_str() {
                    "MULTI" => {
                        self.multi.get_or_insert_default();
                    }
                    "EXEC" | "DISCARD" => {
                        if let Some(multi) = self.multi.take() {
                            let n = multi.queued;
                            context = Some(format!("{name} of {n} command{}", if n == 1 { "" } else { "s" }));
                            if name == "EXEC" {
                                effect = Effect::Exec(multi.echoes);
                            }
                        }
                    }
                    "RESET" => {
                        self.multi = None;
                        self.reply_mode = ReplyMode::On;
                        effect = Effect::Reset;
                    }
                    "MONITOR" => effect = Effect::Monitor,
                    "HELLO" => {
                        effect = Effect::Hello(match sub.as_str() {
                            "3" => Some(true),
                            "2" => Some(false),
                            _ => None,
                        })
                    }
                    _ => {}
                }
                if let Some(op) = SubOp::parse(name.as_bytes())
                    && expect == Expect::Reply
                {
                    // `SUBSCRIBE` without channels is an error: a single reply.
                    let channels = command.argc - 1;
                    if channels > 0 || !op.subscribe {
                        expect = Expect::Confirm { op, left: (channels > 0).then_some(channels) };
                    }
                }
                if let Some(echo) = Echo::of(&command.argv) {
                    effect = Effect::Echo(echo);
                }
            }
        }

        let args = if self.queue.len() < PENDING_DETAILED {
            let mut args = text::args(&command.argv);
            let kept = command.argv.len() as u64;
            if command.argc > kept {
                args.push(format!("… {} more args", command.argc - kept));
            }
            args
        } else if command.argc > 1 {
            vec![format!("… {} args not kept (deep pipeline)", command.argc - 1)]
        } else {
            Vec::new()
        };
        if self.queue.len() >= PENDING_MAX {
            self.desynced = true;
            return;
        }
        self.queue.push_back(Pending {
            command: name,
            args,
            started_at: command.started_at,
            context,
            expect,
            effect,
            names: Vec::new(),
            confirmed: 0,
            total: None,
            confirmed_at: None,
        });
        self.drain_no_reply(out);
    }

    fn on_reply(&mut self, mut value: Val, at: Micros, out: &mut Vec<Exchange>) {
        if self.desynced {
            return;
        }
        let kind = value.agg_kind();
        let first = value.items().first().and_then(Val::bytes).map(<[u8]>::to_ascii_lowercase);
        let op = first.as_deref().and_then(SubOp::parse);
        let array_or_push = matches!(kind, Some(AggKind::Array | AggKind::Push));

        // A subscription confirmation for the command at the head (RESP3 sends them as pushes).
        if array_or_push
            && let Some(op) = op
            && self.queue.front().is_some_and(|p| matches!(p.expect, Expect::Confirm { op: o, .. } if o == op))
        {
            self.confirm(op, &value, at, out);
            return;
        }

        let message = matches!(first.as_deref(), Some(b"message" | b"pmessage" | b"smessage"));
        let subscribed_push =
            !self.resp3 && self.subs.any() && kind == Some(AggKind::Array) && (message || op.is_some());
        if kind == Some(AggKind::Push) || subscribed_push {
            if let Some(op) = op
                && let Some(Val::Int(total)) = value.items().get(2)
            {
                self.subs.update(op.kind, *total);
            }
            self.push_event(&value, first.as_deref(), op.is_some(), at, out);
            return;
        }

        if self.monitor
            && let Val::Simple(line) = &value
            && let Some((source, argv)) = text::monitor_line(line)
        {
            let command = argv.first().map(text::command_name).unwrap_or_default();
            let args = text::args(&argv);
            let ex = RedisExchange { command, args, reply: Some(source), error: None, context: Some(MONITOR.into()) };
            self.emit(out, at, Some(at), ex);
            return;
        }

        let Some(p) = self.queue.pop_front() else {
            let (reply, error) = reply_or_error(&value);
            let ex = RedisExchange {
                command: String::new(),
                args: Vec::new(),
                reply,
                error,
                context: Some(UNSOLICITED.into()),
            };
            self.emit(out, at, Some(at), ex);
            return;
        };
        if !matches!(value, Val::Error(_)) {
            match p.effect {
                Effect::Hello(Some(resp3)) => self.resp3 = resp3,
                Effect::Monitor if value.bytes() == Some(b"OK") => self.monitor = true,
                Effect::Reset => {
                    self.resp3 = false;
                    self.subs = Subscriptions::default();
                    self.monitor = false;
                }
                Effect::Echo(echo) => text::redact_reply(echo, &mut value),
                Effect::Exec(echoes) => {
                    if let Val::Agg { items, .. } = &mut value {
                        for (i, echo) in echoes {
                            if let Some(item) = items.get_mut(i) {
                                text::redact_reply(echo, item);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let (reply, error) = reply_or_error(&value);
        let ex = RedisExchange { command: p.command, args: p.args, reply, error, context: p.context };
        self.emit(out, p.started_at, Some(at), ex);
        self.drain_no_reply(out);
    }

    /// A confirmation of the subscribe-family command at the head of the queue.
    fn confirm(&mut self, op: SubOp, value: &Val, at: Micros, out: &mut Vec<Exchange>) {
        let items = value.items();
        let name = items.get(1).map(item_text).unwrap_or_default();
        let total = match items.get(2) {
            Some(Val::Int(n)) => Some(*n),
            _ => None,
        };
        let before = self.subs.count(op.kind);
        if let Some(total) = total {
            self.subs.update(op.kind, total);
        }
        let Some(p) = self.queue.front_mut() else { return };
        let Expect::Confirm { left, .. } = &mut p.expect else { return };
        // An unsubscribe from everything confirms each current subscription (or once when none).
        let remaining = left.unwrap_or(before.max(1)).saturating_sub(1);
        *left = Some(remaining);
        p.confirmed += 1;
        if p.names.len() < NAMES_KEEP {
            p.names.push(name);
        }
        p.total = total.or(p.total);
        p.confirmed_at = Some(at);
        if remaining == 0
            && let Some(p) = self.queue.pop_front()
        {
            let reply = p.confirmations();
            let ex = RedisExchange { command: p.command, args: p.args, reply, error: None, context: p.context };
            self.emit(out, p.started_at, Some(at), ex);
            self.drain_no_reply(out);
        }
    }

    /// An out-of-band message: a pub/sub message, an invalidation, an unsolicited unsubscribe.
    fn push_event(&mut self, value: &Val, first: Option<&[u8]>, pubsub: bool, at: Micros, out: &mut Vec<Exchange>) {
        let items = value.items();
        let message = match first {
            Some(b"message" | b"smessage") => Some(1),
            Some(b"pmessage") => Some(2),
            _ => None,
        };
        let ex = match message.and_then(|n| Some((items.get(1..=n)?, items.get(n + 1)?))) {
            Some((channels, payload)) => RedisExchange {
                command: String::new(),
                args: channels.iter().map(item_text).collect(),
                reply: Some(text::summary(payload)),
                error: None,
                context: Some(PUBSUB_MESSAGE.into()),
            },
            None => {
                let kind = first.map(|f| text::cap_chars(String::from_utf8_lossy(f).into_owned(), 32));
                let context = match (pubsub, kind) {
                    (true, Some(kind)) => format!("pubsub {kind}"),
                    (_, Some(kind)) => format!("push {kind}"),
                    (_, None) => "push".to_string(),
                };
                let (reply, error) = reply_or_error(value);
                RedisExchange { command: String::new(), args: Vec::new(), reply, error, context: Some(context) }
            }
        };
        self.emit(out, at, Some(at), ex);
    }
}

/// A string-ish element as plain text (channel names, confirmation names).
fn item_text(value: &Val) -> String {
    match value {
        Val::Simple(b) | Val::Bulk(b) => text::arg(b),
        other => text::summary(other),
    }
}

/// The `reply` and `error` fields for a reply.
fn reply_or_error(value: &Val) -> (Option<String>, Option<String>) {
    match value {
        Val::Error(b) => (None, Some(text::blob(b, text::ERROR_CHARS, false))),
        other => (Some(text::summary(other)), None),
    }
}

#[cfg(test)]
mod tests;
