//! Incremental, bounded RESP decoders: server replies (RESP2 and RESP3, including streamed strings and
//! aggregates) and client commands (multibulk arrays of bulk strings, and inline commands).
//!
//! Both decoders accept input split at any byte, keep only prefixes of large strings and the first
//! items of large aggregates, and never recurse, so hostile nesting costs a bounded stack.

use crate::Micros;

/// Bytes kept from the start of each bulk string, argument or blob.
pub(super) const BLOB_KEEP: usize = 512;
/// Bytes kept from a simple string or error line (the rest is counted).
const LINE_KEEP: usize = 4096;
/// Longest length header (`$123`, `*4`, `:-17`) accepted.
const HEADER_MAX: u64 = 64;
/// Longest inline command line (Redis' own limit).
const INLINE_MAX: usize = 64 * 1024;
/// Deepest aggregate nesting accepted before giving up.
const MAX_DEPTH: usize = 128;
/// Aggregate nesting levels whose items are kept.
const DEPTH_KEEP: usize = 3;
/// Items kept per aggregate (pairs count twice).
const ITEMS_KEEP: usize = 16;
/// Values kept per top-level reply.
const NODES_KEEP: usize = 256;
/// Arguments kept per command (the rest are counted).
pub(super) const ARGS_KEEP: usize = 64;

/// The input is not RESP: the connection is no longer followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed;

type Result<T> = std::result::Result<T, Malformed>;

/// A string of any size: its length and a prefix of at most [`BLOB_KEEP`] bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Blob {
    pub(super) len: u64,
    pub(super) head: Vec<u8>,
}

impl Blob {
    pub(super) fn from_bytes(bytes: &[u8]) -> Self {
        let mut blob = Self::default();
        blob.push(bytes);
        blob
    }

    fn push(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        let room = BLOB_KEEP.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Whether bytes were dropped.
    pub(super) fn truncated(&self) -> bool {
        self.len > self.head.len() as u64
    }
}

/// The kinds of RESP aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AggKind {
    Array,
    Map,
    Set,
    Push,
    Attribute,
}

impl AggKind {
    fn from_type(byte: u8) -> Option<Self> {
        Some(match byte {
            b'*' => Self::Array,
            b'%' => Self::Map,
            b'~' => Self::Set,
            b'>' => Self::Push,
            b'|' => Self::Attribute,
            _ => return None,
        })
    }

    /// Maps and attributes hold key/value pairs: two elements per counted entry.
    pub(super) fn paired(self) -> bool {
        matches!(self, Self::Map | Self::Attribute)
    }
}

/// A decoded reply, bounded: strings are prefixes, aggregates keep their first items.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    /// `+OK`
    Simple(Blob),
    /// `-ERR ...` or a `!` blob error.
    Error(Blob),
    Int(i64),
    Double(String),
    Big(String),
    Bool(bool),
    /// `$-1`, `*-1`, `_`
    Nil,
    Bulk(Blob),
    /// `=` verbatim string, with its `txt:` format prefix.
    Verbatim(Blob),
    /// `len` counts entries (pairs for maps); `items` holds the first elements (flat for maps).
    Agg {
        kind: AggKind,
        len: u64,
        items: Vec<Val>,
    },
}

impl Val {
    /// The kind of an aggregate.
    pub(super) fn agg_kind(&self) -> Option<AggKind> {
        match self {
            Self::Agg { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Kept items of an aggregate (empty for scalars).
    pub(super) fn items(&self) -> &[Val] {
        match self {
            Self::Agg { items, .. } => items,
            _ => &[],
        }
    }

    /// The bytes of a string-like value, when fully kept.
    pub(super) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Simple(b) | Self::Bulk(b) if !b.truncated() => Some(&b.head),
            _ => None,
        }
    }
}

/// A line being read up to `\n`: its length and a capped prefix.
#[derive(Debug, Default)]
struct LineBuf {
    buf: Vec<u8>,
    len: u64,
    last: u8,
}

impl LineBuf {
    /// Consumes input up to and including a `\n`; returns the bytes consumed and whether the line ended.
    fn feed(&mut self, input: &[u8], cap: usize) -> (usize, bool) {
        let (content, consumed, done) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (&input[..i], i + 1, true),
            None => (input, input.len(), false),
        };
        if let Some(&last) = content.last() {
            self.len += content.len() as u64;
            self.last = last;
            let room = cap.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&content[..content.len().min(room)]);
        }
        (consumed, done)
    }

    /// The finished line without its `\r`, as a blob-like (length, prefix) pair.
    fn take(&mut self) -> Blob {
        let mut len = self.len;
        let mut buf = std::mem::take(&mut self.buf);
        if len > 0 && self.last == b'\r' {
            len -= 1;
            if buf.len() as u64 > len {
                buf.pop();
            }
        }
        *self = Self::default();
        Blob { len, head: buf }
    }
}

fn parse_int(line: &Blob) -> Result<i64> {
    if line.truncated() || line.len > HEADER_MAX {
        return Err(Malformed);
    }
    std::str::from_utf8(&line.head).ok().and_then(|s| s.parse().ok()).ok_or(Malformed)
}

/// A length header: `-1` gives `None` (null), other negatives are malformed.
fn parse_len(line: &Blob) -> Result<Option<u64>> {
    match parse_int(line)? {
        -1 => Ok(None),
        n => u64::try_from(n).map(Some).map_err(|_| Malformed),
    }
}

/// Where the reply decoder is within the current value.
#[derive(Debug, Default, Clone, Copy)]
enum RState {
    /// Expecting a type byte.
    #[default]
    Start,
    /// Reading the line after the type byte.
    Line,
    /// Reading this many more payload bytes of a blob.
    Payload(u64),
    /// Expecting the `\r` after a payload.
    Cr,
    /// Expecting the `\n` after a payload.
    Lf,
}

/// An aggregate being filled.
#[derive(Debug)]
struct Frame {
    kind: AggKind,
    /// Elements still expected; `None` for streamed aggregates (ended by `.`).
    left: Option<u64>,
    /// Elements seen.
    count: u64,
    items: Vec<Val>,
    /// Whether its items are kept.
    keep: bool,
}

impl Frame {
    fn cap(&self) -> usize {
        if self.kind.paired() { 2 * ITEMS_KEEP } else { ITEMS_KEEP }
    }

    fn into_val(self) -> Val {
        let len = if self.kind.paired() { self.count / 2 } else { self.count };
        Val::Agg { kind: self.kind, len, items: self.items }
    }
}

/// Decodes the server's replies into top-level [`Val`]s (attributes are read and dropped).
#[derive(Debug, Default)]
pub(super) struct ReplyDecoder {
    state: RState,
    /// Type byte of the line being read.
    kind: u8,
    line: LineBuf,
    blob: Blob,
    blob_kind: u8,
    /// Inside a streamed string (`$?`): the next value must be a `;` chunk.
    streaming: bool,
    stack: Vec<Frame>,
    /// Values kept for the current top-level reply.
    nodes: usize,
}

impl ReplyDecoder {
    /// Decodes `input`, appending completed top-level replies to `out` (also those before an error).
    pub(super) fn feed(&mut self, mut input: &[u8], out: &mut Vec<Val>) -> Result<()> {
        while let Some(&byte) = input.first() {
            match self.state {
                RState::Start => {
                    let known = b"+-:,(#_$=!*%~|>.;".contains(&byte);
                    if !known || self.streaming != (byte == b';') {
                        return Err(Malformed);
                    }
                    self.kind = byte;
                    self.state = RState::Line;
                    input = &input[1..];
                }
                RState::Line => {
                    let (used, done) = self.line.feed(input, LINE_KEEP);
                    input = &input[used..];
                    let textual = matches!(self.kind, b'+' | b'-' | b',' | b'(');
                    if done {
                        self.state = RState::Start;
                        let line = self.line.take();
                        self.on_line(line, out)?;
                    } else if !textual && self.line.len > HEADER_MAX {
                        return Err(Malformed);
                    }
                }
                RState::Payload(left) => {
                    let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.blob.push(&input[..n]);
                    input = &input[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 { RState::Cr } else { RState::Payload(left) };
                }
                RState::Cr | RState::Lf => {
                    let want = if matches!(self.state, RState::Cr) { b'\r' } else { b'\n' };
                    if byte != want {
                        return Err(Malformed);
                    }
                    input = &input[1..];
                    if want == b'\r' {
                        self.state = RState::Lf;
                    } else {
                        self.state = RState::Start;
                        if !self.streaming {
                            let value = self.take_blob();
                            self.complete(value, out);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn take_blob(&mut self) -> Val {
        let blob = std::mem::take(&mut self.blob);
        match self.blob_kind {
            b'=' => Val::Verbatim(blob),
            b'!' => Val::Error(blob),
            _ => Val::Bulk(blob),
        }
    }

    fn start_blob(&mut self, kind: u8, len: u64) {
        self.blob = Blob::default();
        self.blob_kind = kind;
        self.state = if len == 0 { RState::Cr } else { RState::Payload(len) };
    }

    fn on_line(&mut self, line: Blob, out: &mut Vec<Val>) -> Result<()> {
        let text = |line: &Blob| String::from_utf8_lossy(&line.head).into_owned();
        let value = match self.kind {
            b'+' => Val::Simple(line),
            b'-' => Val::Error(line),
            b':' => Val::Int(parse_int(&line)?),
            b',' if !line.head.is_empty() && line.head.iter().all(u8::is_ascii_graphic) => Val::Double(text(&line)),
            b'(' if valid_big(&line.head) => Val::Big(text(&line)),
            b'#' if line.head == b"t" => Val::Bool(true),
            b'#' if line.head == b"f" => Val::Bool(false),
            b'_' if line.len == 0 => Val::Nil,
            b'.' if line.len == 0 => match self.stack.last() {
                Some(frame) if frame.left.is_none() && (!frame.kind.paired() || frame.count % 2 == 0) => {
                    self.stack.pop().map(Frame::into_val).ok_or(Malformed)?
                }
                _ => return Err(Malformed),
            },
            b'$' if line.head == b"?" && line.len == 1 => {
                self.blob = Blob::default();
                self.blob_kind = b'$';
                self.streaming = true;
                return Ok(());
            }
            b'$' | b'=' | b'!' => match parse_len(&line)? {
                Some(len) => {
                    self.start_blob(self.kind, len);
                    return Ok(());
                }
                None if self.kind == b'$' => Val::Nil,
                None => return Err(Malformed),
            },
            b';' => match parse_len(&line)? {
                Some(0) => {
                    self.streaming = false;
                    self.take_blob()
                }
                Some(len) => {
                    self.state = RState::Payload(len);
                    return Ok(());
                }
                None => return Err(Malformed),
            },
            kind @ (b'*' | b'%' | b'~' | b'|' | b'>') => {
                let agg = AggKind::from_type(kind).ok_or(Malformed)?;
                let left = if line.head == b"?" && line.len == 1 {
                    None
                } else {
                    match parse_len(&line)? {
                        None if agg == AggKind::Attribute => return Err(Malformed),
                        None => {
                            self.complete(Val::Nil, out);
                            return Ok(());
                        }
                        Some(n) if agg.paired() => Some(n.checked_mul(2).ok_or(Malformed)?),
                        Some(n) => Some(n),
                    }
                };
                if left == Some(0) {
                    Val::Agg { kind: agg, len: 0, items: Vec::new() }
                } else {
                    self.open(agg, left)?;
                    return Ok(());
                }
            }
            _ => return Err(Malformed),
        };
        self.complete(value, out);
        Ok(())
    }

    fn open(&mut self, kind: AggKind, left: Option<u64>) -> Result<()> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Malformed);
        }
        let parent_keeps = self.stack.last().is_none_or(|p| p.keep && p.items.len() < p.cap());
        let keep =
            parent_keeps && kind != AggKind::Attribute && self.stack.len() < DEPTH_KEEP && self.nodes < NODES_KEEP;
        self.stack.push(Frame { kind, left, count: 0, items: Vec::new(), keep });
        Ok(())
    }

    /// A value ended: add it to the open aggregate (closing those it fills) or emit it.
    fn complete(&mut self, mut value: Val, out: &mut Vec<Val>) {
        loop {
            let is_attribute = value.agg_kind() == Some(AggKind::Attribute);
            let Some(top) = self.stack.last_mut() else {
                self.nodes = 0;
                if !is_attribute {
                    out.push(value);
                }
                return;
            };
            if is_attribute {
                // An attribute annotates the next value; it is not an element itself.
                return;
            }
            if top.keep && top.items.len() < top.cap() && self.nodes < NODES_KEEP {
                top.items.push(value);
                self.nodes += 1;
            }
            top.count += 1;
            match top.left {
                Some(1) => match self.stack.pop() {
                    Some(frame) => value = frame.into_val(),
                    None => return,
                },
                Some(n) => {
                    top.left = Some(n - 1);
                    return;
                }
                None => return,
            }
        }
    }
}

fn valid_big(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").or_else(|| text.strip_prefix(b"+")).unwrap_or(text);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// A client command: its first arguments (name first) and how many there were.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Command {
    pub(super) argv: Vec<Blob>,
    pub(super) argc: u64,
    pub(super) started_at: Micros,
}

/// Where the command decoder is.
#[derive(Debug, Default, Clone, Copy)]
enum CState {
    /// Expecting the first byte of a command.
    #[default]
    Start,
    /// Reading an inline command line.
    Inline,
    /// Reading the `*N` header.
    Count,
    /// Reading a `$len` header.
    ArgLen,
    Payload(u64),
    Cr,
    Lf,
}

/// Decodes client commands: RESP arrays of bulk strings, and inline commands as telnet sends them.
#[derive(Debug, Default)]
pub(super) struct CommandDecoder {
    state: CState,
    line: LineBuf,
    argv: Vec<Blob>,
    argc: u64,
    left: u64,
    arg: Blob,
    started_at: Micros,
}

impl CommandDecoder {
    /// Decodes `input` seen at `at`, appending completed commands to `out` (also those before an error).
    pub(super) fn feed(&mut self, mut input: &[u8], at: Micros, out: &mut Vec<Command>) -> Result<()> {
        while let Some(&byte) = input.first() {
            match self.state {
                CState::Start => {
                    self.started_at = at;
                    if byte == b'*' {
                        self.state = CState::Count;
                        input = &input[1..];
                    } else {
                        self.state = CState::Inline;
                    }
                }
                CState::Inline => {
                    let (used, done) = self.line.feed(input, INLINE_MAX);
                    input = &input[used..];
                    if done {
                        self.state = CState::Start;
                        let line = self.line.take();
                        let args = split_args(&line.head, false).ok_or(Malformed)?;
                        if !args.is_empty() {
                            let argc = args.len() as u64;
                            let argv = args.iter().take(ARGS_KEEP).map(|a| Blob::from_bytes(a)).collect();
                            out.push(Command { argv, argc, started_at: self.started_at });
                        }
                    } else if self.line.len > INLINE_MAX as u64 {
                        return Err(Malformed);
                    }
                }
                CState::Count | CState::ArgLen => {
                    let (used, done) = self.line.feed(input, HEADER_MAX as usize);
                    input = &input[used..];
                    if !done {
                        if self.line.len > HEADER_MAX {
                            return Err(Malformed);
                        }
                        continue;
                    }
                    let line = self.line.take();
                    if matches!(self.state, CState::Count) {
                        match parse_int(&line)? {
                            // Redis ignores empty and negative multibulk counts.
                            n if n <= 0 => self.state = CState::Start,
                            n => {
                                self.argc = n as u64;
                                self.left = n as u64;
                                self.argv.clear();
                                self.state = CState::ArgLen;
                            }
                        }
                    } else {
                        let digits = Blob {
                            len: line.len.saturating_sub(1),
                            head: line.head.get(1..).unwrap_or_default().to_vec(),
                        };
                        if line.head.first() != Some(&b'$') {
                            return Err(Malformed);
                        }
                        let len = parse_len(&digits)?.ok_or(Malformed)?;
                        self.arg = Blob::default();
                        self.state = if len == 0 { CState::Cr } else { CState::Payload(len) };
                    }
                }
                CState::Payload(left) => {
                    let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.arg.push(&input[..n]);
                    input = &input[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 { CState::Cr } else { CState::Payload(left) };
                }
                CState::Cr => {
                    if byte != b'\r' {
                        return Err(Malformed);
                    }
                    input = &input[1..];
                    self.state = CState::Lf;
                }
                CState::Lf => {
                    if byte != b'\n' {
                        return Err(Malformed);
                    }
                    input = &input[1..];
                    let arg = std::mem::take(&mut self.arg);
                    if self.argv.len() < ARGS_KEEP {
                        self.argv.push(arg);
                    }
                    self.left -= 1;
                    if self.left == 0 {
                        let argv = std::mem::take(&mut self.argv);
                        out.push(Command { argv, argc: self.argc, started_at: self.started_at });
                        self.state = CState::Start;
                    } else {
                        self.state = CState::ArgLen;
                    }
                }
            }
        }
        Ok(())
    }
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(byte: Option<&u8>) -> Option<u8> {
    let byte = *byte?;
    char::from(byte).to_digit(16).map(|d| d as u8)
}

/// Splits a line into arguments the way Redis does for inline commands (`sdssplitargs`): spaces
/// separate, `"..."` understands `\n`, `\xHH`..., `'...'` only `\'`. `None` on unbalanced quotes,
/// unless `lenient` (for truncated MONITOR lines), where an open quote ends with the line.
pub(super) fn split_args(line: &[u8], lenient: bool) -> Option<Vec<Vec<u8>>> {
    // Redis reads the line as a C string: a NUL ends it.
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        let (mut double, mut single) = (false, false);
        loop {
            let Some(&c) = line.get(i) else {
                if (double || single) && !lenient {
                    return None;
                }
                break;
            };
            if double {
                if c == b'\\'
                    && line.get(i + 1) == Some(&b'x')
                    && let (Some(hi), Some(lo)) = (hex_value(line.get(i + 2)), hex_value(line.get(i + 3)))
                {
                    arg.push(hi * 16 + lo);
                    i += 3;
                } else if c == b'\\' && i + 1 < line.len() {
                    i += 1;
                    arg.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if line.get(i + 1).is_some_and(|&b| !is_space(b)) && !lenient {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    arg.push(c);
                }
            } else if single {
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    i += 1;
                    arg.push(b'\'');
                } else if c == b'\'' {
                    if line.get(i + 1).is_some_and(|&b| !is_space(b)) && !lenient {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    arg.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => double = true,
                    b'\'' => single = true,
                    _ => arg.push(c),
                }
            }
            i += 1;
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(input: &[u8]) -> (Vec<Val>, Result<()>) {
        let mut decoder = ReplyDecoder::default();
        let mut out = Vec::new();
        let result = decoder.feed(input, &mut out);
        (out, result)
    }

    fn bulk(text: &str) -> Val {
        Val::Bulk(Blob::from_bytes(text.as_bytes()))
    }

    #[test]
    fn redis_resp_scalars_and_nulls() {
        let (out, result) =
            replies(b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\nfoo\r\n$-1\r\n*-1\r\n_\r\n#t\r\n,3.5\r\n(123\r\n");
        assert_eq!(result, Ok(()));
        assert_eq!(out.len(), 10);
        assert_eq!(out[0], Val::Simple(Blob::from_bytes(b"OK")));
        assert_eq!(out[1], Val::Error(Blob::from_bytes(b"ERR bad")));
        assert_eq!(out[2], Val::Int(42));
        assert_eq!(out[3], bulk("foo"));
        assert_eq!(&out[4..7], &[Val::Nil, Val::Nil, Val::Nil]);
        assert_eq!(out[7], Val::Bool(true));
        assert_eq!(out[8], Val::Double("3.5".into()));
        assert_eq!(out[9], Val::Big("123".into()));
    }

    #[test]
    fn redis_resp_aggregates_streams_and_attributes() {
        let input = b"%1\r\n$1\r\nk\r\n*2\r\n:1\r\n:2\r\n|1\r\n+ttl\r\n:3\r\n+after\r\n$?\r\n;2\r\nab\r\n;1\r\nc\r\n;0\r\n*?\r\n:1\r\n.\r\n=8\r\ntxt:abcd\r\n!3\r\nBAD\r\n";
        let (out, result) = replies(input);
        assert_eq!(result, Ok(()));
        let map = Val::Agg {
            kind: AggKind::Map,
            len: 1,
            items: vec![bulk("k"), Val::Agg { kind: AggKind::Array, len: 2, items: vec![Val::Int(1), Val::Int(2)] }],
        };
        assert_eq!(out[0], map);
        assert_eq!(out[1], Val::Simple(Blob::from_bytes(b"after")));
        assert_eq!(out[2], bulk("abc"));
        assert_eq!(out[3], Val::Agg { kind: AggKind::Array, len: 1, items: vec![Val::Int(1)] });
        assert_eq!(out[4], Val::Verbatim(Blob::from_bytes(b"txt:abcd")));
        assert_eq!(out[5], Val::Error(Blob::from_bytes(b"BAD")));
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn redis_resp_malformed_and_deep_nesting() {
        assert_eq!(replies(b"?what\r\n").1, Err(Malformed));
        assert_eq!(replies(b"$3\r\nfooXY").1, Err(Malformed));
        assert_eq!(replies(b":12a\r\n").1, Err(Malformed));
        assert_eq!(replies(b"*1\r\n.\r\n").1, Err(Malformed));
        assert_eq!(replies(&b"*1\r\n".repeat(MAX_DEPTH + 1)).1, Err(Malformed));
        let (out, result) = replies(&[b"*1\r\n".repeat(MAX_DEPTH - 1), b":1\r\n".to_vec()].concat());
        assert_eq!((out.len(), result), (1, Ok(())));
    }

    #[test]
    fn redis_resp_commands_multibulk_and_inline() {
        let mut decoder = CommandDecoder::default();
        let mut out = Vec::new();
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\nSET a \"b c\\x41\" 'it\\'s'\r\n\r\n*0\r\n";
        assert_eq!(decoder.feed(input, 7, &mut out), Ok(()));
        let args: Vec<Vec<Vec<u8>>> = out.iter().map(|c| c.argv.iter().map(|a| a.head.clone()).collect()).collect();
        assert_eq!(
            args,
            vec![
                vec![b"GET".to_vec(), b"a".to_vec()],
                vec![b"SET".to_vec(), b"a".to_vec(), b"b cA".to_vec(), b"it's".to_vec()]
            ]
        );
        assert!(decoder.feed(b"GET \"open\r\n", 8, &mut out).is_err());
        assert_eq!(split_args(b"a \"b", true), Some(vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(split_args(b"\"a\"b", false), None);
    }
}
