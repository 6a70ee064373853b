//! Incremental decoder of the chunked transfer coding (RFC 9112 §7.1): chunk sizes with extensions,
//! chunk data, the last chunk and the trailer section, split across feeds at any byte.

/// Longest chunk-size line (size plus extensions) accepted.
const LINE_CAP: usize = 4096;
/// Largest trailer section accepted.
const TRAILER_CAP: usize = 64 * 1024;
/// Most hex digits in a chunk size (a u64).
const SIZE_DIGITS: u32 = 16;

/// Where the decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size {
        value: u64,
        digits: u32,
    },
    /// After the size: whitespace and `;name=value` extensions up to the end of the line.
    Ext {
        value: u64,
        len: usize,
    },
    /// Saw `\r` at the end of the size line.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// After chunk data, expecting `\r\n`.
    DataCr,
    DataLf,
    /// In the trailer section; `line` is the length of the current field line so far.
    Trailer {
        line: usize,
        total: usize,
    },
    /// Saw `\r` at the start of a trailer line (the final CRLF).
    TrailerLf,
    Done,
}

/// What a call to [`Chunked::decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// All input used, more needed.
    More,
    /// The body ended; the returned count is where, in this input.
    Done,
    /// The framing is broken.
    Invalid,
}

/// The decoder: feed it wire bytes, get data slices back through a callback.
#[derive(Debug, Clone)]
pub(super) struct Chunked {
    state: State,
}

impl Chunked {
    pub(super) fn new() -> Self {
        Chunked { state: State::Size { value: 0, digits: 0 } }
    }

    /// Decodes from `input`, passing chunk data to `data`; returns the step and the bytes consumed.
    pub(super) fn decode(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> (Step, usize) {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { remaining } = self.state {
                let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len() - i);
                data(&input[i..i + take]);
                i += take;
                let left = remaining - take as u64;
                self.state = if left == 0 { State::DataCr } else { State::Data { remaining: left } };
                continue;
            }
            let b = input[i];
            i += 1;
            let next = match self.state {
                State::Size { value, digits } => match hex(b) {
                    Some(d) if digits < SIZE_DIGITS => {
                        Some(State::Size { value: value << 4 | u64::from(d), digits: digits + 1 })
                    }
                    Some(_) => None,
                    None if digits == 0 => None,
                    None => match b {
                        b';' | b' ' | b'\t' => Some(State::Ext { value, len: 1 }),
                        b'\r' => Some(State::SizeLf { value }),
                        b'\n' => Some(line_end(value)),
                        _ => None,
                    },
                },
                State::Ext { value, len } => match b {
                    b'\r' => Some(State::SizeLf { value }),
                    b'\n' => Some(line_end(value)),
                    _ if len + 1 > LINE_CAP => None,
                    _ => Some(State::Ext { value, len: len + 1 }),
                },
                State::SizeLf { value } => (b == b'\n').then(|| line_end(value)),
                State::DataCr => match b {
                    b'\r' => Some(State::DataLf),
                    b'\n' => Some(State::Size { value: 0, digits: 0 }),
                    _ => None,
                },
                State::DataLf => (b == b'\n').then_some(State::Size { value: 0, digits: 0 }),
                State::Trailer { line, total } => match b {
                    _ if total + 1 > TRAILER_CAP => None,
                    b'\r' if line == 0 => Some(State::TrailerLf),
                    b'\n' if line == 0 => Some(State::Done),
                    b'\n' => Some(State::Trailer { line: 0, total: total + 1 }),
                    _ => Some(State::Trailer { line: line + 1, total: total + 1 }),
                },
                State::TrailerLf => (b == b'\n').then_some(State::Done),
                State::Data { .. } | State::Done => None,
            };
            match next {
                Some(State::Done) => {
                    self.state = State::Done;
                    return (Step::Done, i);
                }
                Some(state) => self.state = state,
                None => return (Step::Invalid, i),
            }
        }
        (Step::More, i)
    }
}

/// The state after a complete chunk-size line.
fn line_end(value: u64) -> State {
    if value == 0 { State::Trailer { line: 0, total: 0 } } else { State::Data { remaining: value } }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(wire: &[u8], split: usize) -> (Step, Vec<u8>, usize) {
        let mut dec = Chunked::new();
        let mut out = Vec::new();
        let (first, rest) = wire.split_at(split.min(wire.len()));
        let (step, used) = dec.decode(first, |d| out.extend_from_slice(d));
        if step != Step::More {
            return (step, out, used);
        }
        let (step, used2) = dec.decode(rest, |d| out.extend_from_slice(d));
        (step, out, used + used2)
    }

    #[test]
    fn chunked_decoder_handles_extensions_trailers_and_splits() {
        let wire = b"4;name=\"v;x\"\r\nWiki\r\n5 ; a=b\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n\
            0;end\r\nX-Sum: 1\r\nX-B: 2\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let (step, data, used) = run(wire, split);
            assert_eq!(step, Step::Done, "split {split}");
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.");
            assert_eq!(&wire[used..], b"NEXT");
        }
        assert_eq!(run(b"zz\r\n", 0).0, Step::Invalid);
        assert_eq!(run(b"11111111111111111\r\n", 0).0, Step::Invalid);
        assert_eq!(run(b"1\r\nab", 0).0, Step::Invalid);
        assert_eq!(run(b"0\n\n", 0).0, Step::Done);
    }
}
