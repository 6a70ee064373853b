//! Framing of the PostgreSQL v3 wire protocol (a type byte and an int32 length, or a bare length
//! for the client's first packets), the check of each header (known type, sane length), plus
//! bounds-checked readers (integers, cstrings) and text helpers for message bodies.

use crate::{Direction, Micros};

/// Body bytes a message may have and still be buffered whole.
pub(super) const MAX_BUFFERED: usize = 16 << 20;
/// Prefix kept of a message larger than [`MAX_BUFFERED`]; the rest is only counted.
pub(super) const OVERSIZE_PREFIX: usize = 64 << 10;
/// The server rejects longer startup packets.
const MAX_STARTUP_LEN: usize = 10_000;
/// Longest message other than DataRow/CopyData a sane peer sends (PostgreSQL's MaxAllocSize).
const MAX_MESSAGE_LEN: usize = 1 << 30;

/// Message types a client sends after startup.
const CLIENT_TAGS: &[u8] = b"QPBDECSHXdcfpF";
/// Message types a server sends.
const SERVER_TAGS: &[u8] = b"RKSZTDCIENA123tnsGHWdcVv";

/// How the next message of a direction is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Startup packets: int32 length (counting itself), then the body.
    Untyped,
    /// Regular messages: a type byte, int32 length (counting itself, not the type byte), the body.
    Typed,
}

/// One complete message; `body` holds at most the prefix the parser asked to keep.
#[derive(Debug)]
pub(super) struct Frame {
    /// Type byte, 0 for startup packets.
    pub(super) tag: u8,
    /// Body length on the wire (without type byte and length).
    pub(super) len: usize,
    pub(super) body: Vec<u8>,
    /// When the first byte of the message was seen.
    pub(super) started_at: Micros,
}

/// What [`Framer::advance`] found.
#[derive(Debug)]
pub(super) enum Progress {
    /// All input consumed, the message is not complete yet.
    NeedMore,
    /// A header was read: the caller validates it and calls [`Framer::begin_body`].
    Header {
        tag: u8,
        len: i32,
    },
    Message(Frame),
}

/// Reassembles the messages of one direction from arbitrary chunks, keeping only a bounded prefix of
/// each body.
#[derive(Debug, Default)]
pub(super) struct Framer {
    header: [u8; 5],
    have: usize,
    in_body: bool,
    tag: u8,
    len: usize,
    remaining: usize,
    keep: usize,
    body: Vec<u8>,
    started_at: Micros,
}

impl Framer {
    /// Between messages (no byte of the next one seen).
    pub(super) fn idle(&self) -> bool {
        self.have == 0 && !self.in_body
    }

    /// Consumes input from the front of `input` until a header or a message is complete.
    pub(super) fn advance(&mut self, input: &mut &[u8], framing: Framing, at: Micros) -> Progress {
        if self.in_body {
            if self.remaining > 0 {
                if input.is_empty() {
                    return Progress::NeedMore;
                }
                let n = self.remaining.min(input.len());
                let kept = n.min(self.keep.saturating_sub(self.body.len()));
                self.body.extend_from_slice(&input[..kept]);
                self.remaining -= n;
                *input = &input[n..];
                if self.remaining > 0 {
                    return Progress::NeedMore;
                }
            }
            self.in_body = false;
            self.have = 0;
            return Progress::Message(Frame {
                tag: self.tag,
                len: self.len,
                body: std::mem::take(&mut self.body),
                started_at: self.started_at,
            });
        }
        if input.is_empty() {
            return Progress::NeedMore;
        }
        if self.have == 0 {
            self.started_at = at;
        }
        let need = match framing {
            Framing::Untyped => 4,
            Framing::Typed => 5,
        };
        let n = (need - self.have.min(need)).min(input.len());
        self.header[self.have..self.have + n].copy_from_slice(&input[..n]);
        self.have += n;
        *input = &input[n..];
        if self.have < need {
            return Progress::NeedMore;
        }
        let (tag, len) = match framing {
            Framing::Untyped => (0, &self.header[..4]),
            Framing::Typed => (self.header[0], &self.header[1..5]),
        };
        Progress::Header { tag, len: i32::from_be_bytes([len[0], len[1], len[2], len[3]]) }
    }

    /// Starts the body of the message whose header was just returned: `len` bytes, of which the first
    /// `keep` are buffered.
    pub(super) fn begin_body(&mut self, tag: u8, len: usize, keep: usize) {
        self.tag = tag;
        self.len = len;
        self.remaining = len;
        self.keep = keep.min(len);
        self.body = Vec::with_capacity(self.keep.min(OVERSIZE_PREFIX));
        self.in_body = true;
    }
}

/// Validates a header; returns the body length.
pub(super) fn body_len(dir: Direction, framing: Framing, tag: u8, len: i32) -> Option<usize> {
    let len = usize::try_from(len).ok().filter(|&l| l >= 4)?;
    let body = len - 4;
    if framing == Framing::Untyped {
        return (8..=MAX_STARTUP_LEN).contains(&len).then_some(body);
    }
    let (known, fixed): (&[u8], Option<usize>) = match dir {
        Direction::ToService => (CLIENT_TAGS, matches!(tag, b'S' | b'H' | b'X' | b'c').then_some(0)),
        Direction::ToClient => (
            SERVER_TAGS,
            match tag {
                b'Z' => Some(1),
                b'1' | b'2' | b'3' | b'n' | b's' | b'I' | b'c' => Some(0),
                _ => None,
            },
        ),
    };
    if !known.contains(&tag) || fixed.is_some_and(|f| f != body) {
        return None;
    }
    let large = tag == b'd' || (dir == Direction::ToClient && tag == b'D');
    (large || body <= MAX_MESSAGE_LEN).then_some(body)
}

/// Bounds-checked big-endian reader over a (possibly truncated) message body.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    pub(super) fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Exactly `n` bytes, or None (and nothing consumed) when fewer remain.
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    /// Up to `n` bytes (fewer when the body was truncated).
    pub(super) fn take_up_to(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.buf.len());
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        head
    }

    /// A NUL-terminated string without its NUL; a missing terminator (truncated body) yields the rest.
    pub(super) fn cstr(&mut self) -> Option<&'a [u8]> {
        if self.buf.is_empty() {
            return None;
        }
        match self.buf.iter().position(|&b| b == 0) {
            Some(end) => {
                let s = &self.buf[..end];
                self.buf = &self.buf[end + 1..];
                Some(s)
            }
            None => Some(std::mem::take(&mut self.buf)),
        }
    }
}

/// Marks a value cut at its cap.
pub(super) const ELLIPSIS: &str = "…";

/// Bytes as UTF-8 text (lossy), cut at `cap` bytes on a character boundary and marked when cut.
pub(super) fn text(bytes: &[u8], cap: usize) -> String {
    if bytes.len() <= cap {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut end = cap;
    // Do not split a multi-byte sequence: back up over continuation bytes (at most 3).
    while end > 0 && cap - end < 3 && bytes[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    let mut s = String::from_utf8_lossy(&bytes[..end]).into_owned();
    s.push_str(ELLIPSIS);
    s
}

/// Binary data as `\x`-prefixed hex (the way PostgreSQL prints bytea), at most `cap` characters.
pub(super) fn hex(bytes: &[u8], cap: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let shown = bytes.len().min(cap.saturating_sub(2) / 2);
    let mut s = String::with_capacity(2 + shown * 2 + 3);
    s.push_str("\\x");
    for &b in &bytes[..shown] {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    if shown < bytes.len() {
        s.push_str(ELLIPSIS);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_hex_are_capped_on_boundaries() {
        assert_eq!(text(b"abc", 3), "abc");
        assert_eq!(text("aé".as_bytes(), 2), "a…");
        assert_eq!(text(b"abcdef", 4), "abcd…");
        assert_eq!(hex(&[0, 0xff, 0x10], 64), "\\x00ff10");
        assert_eq!(hex(&[1, 2, 3, 4], 6), "\\x0102…");
    }

    #[test]
    fn framer_reassembles_split_headers_and_bodies() {
        let bytes = [b'Q', 0, 0, 0, 8, b'a', b'b', b'c', 0];
        let mut framer = Framer::default();
        let mut got = None;
        for (i, chunk) in bytes.chunks(2).enumerate() {
            let mut input = chunk;
            loop {
                match framer.advance(&mut input, Framing::Typed, i as u64) {
                    Progress::NeedMore => break,
                    Progress::Header { tag, len } => framer.begin_body(tag, len as usize - 4, 2),
                    Progress::Message(frame) => got = Some(frame),
                }
            }
        }
        let frame = got.expect("a message");
        assert_eq!((frame.tag, frame.len, frame.body.as_slice(), frame.started_at), (b'Q', 4, &b"ab"[..], 0));
    }
}
