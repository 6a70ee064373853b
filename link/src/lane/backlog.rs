//! What DATA a stream's socket has not taken yet. Large chunks are held as slices of the lane's
//! input (no copy); small ones are copied together. So the memory held stays close to the bytes
//! held, however the peer splits them into frames: a peer sending one-byte DATA frames to a
//! socket that does not read makes this side hold those bytes, not a slice and a buffer per byte.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Chunks at least this large, and at least half of their frame's DATA, are held as slices of the
/// input ([`slices`]). A slice keeps alive the input buffer it lies in: a read's room (64 KiB)
/// and the frame around it. Held only from this size and that share up, a held byte costs at most
/// about four.
const SLICE_MIN: usize = 32 * 1024;
/// Copied chunks are gathered into buffers of about this size.
const GATHER: usize = 64 * 1024;

/// Whether the `rest` of a frame's `data` that its socket did not take is held as a slice of the
/// input (else it is copied).
pub(crate) fn slices(rest: usize, data: usize) -> bool {
    rest >= SLICE_MIN && rest * 2 >= data
}

/// A stream's bytes waiting for its socket, in order.
#[derive(Default)]
pub(crate) struct Backlog {
    /// Held chunks, oldest first; all before `gathering`.
    chunks: VecDeque<Bytes>,
    /// Small chunks copied together, after `chunks`.
    gathering: BytesMut,
    len: usize,
}

impl Backlog {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Holds `slice` after everything held (a slice of the input that [`slices`] allowed).
    pub(crate) fn hold_slice(&mut self, slice: Bytes) {
        self.seal_gathering();
        self.len += slice.len();
        self.chunks.push_back(slice);
    }

    /// Holds a copy of `data` after everything held.
    pub(crate) fn hold_copy(&mut self, data: &[u8]) {
        if self.gathering.len() + data.len() > GATHER {
            self.seal_gathering();
        }
        self.gathering.extend_from_slice(data);
        self.len += data.len();
    }

    fn seal_gathering(&mut self) {
        if !self.gathering.is_empty() {
            self.chunks.push_back(self.gathering.split().freeze());
        }
    }

    /// The oldest bytes held (empty when none).
    pub(crate) fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&self.gathering[..], |chunk| &chunk[..])
    }

    /// Lets go of the first `n` bytes of [`Backlog::front`].
    pub(crate) fn advance(&mut self, n: usize) {
        self.len -= n;
        match self.chunks.front_mut() {
            Some(chunk) => {
                chunk.advance(n);
                if chunk.is_empty() {
                    self.chunks.pop_front();
                }
            }
            None => self.gathering.advance(n),
        }
    }

    /// Every chunk held, oldest first.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = Bytes> + '_ {
        let gathering = Some(&self.gathering).filter(|g| !g.is_empty()).map(|g| Bytes::copy_from_slice(g));
        self.chunks.iter().cloned().chain(gathering)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(backlog: &mut Backlog) -> Vec<u8> {
        let mut out = Vec::new();
        while !backlog.is_empty() {
            let n = backlog.front().len().min(5000);
            out.extend_from_slice(&backlog.front()[..n]);
            backlog.advance(n);
        }
        out
    }

    #[test]
    fn slices_and_copies_come_out_in_the_order_they_were_held() {
        let mut backlog = Backlog::default();
        let big = Bytes::from(vec![b'b'; SLICE_MIN]);
        backlog.hold_copy(b"one ");
        backlog.hold_copy(b"two ");
        backlog.hold_slice(big.clone());
        backlog.hold_copy(b" three");
        assert_eq!(backlog.len(), 8 + SLICE_MIN + 6);
        let chunks: Vec<u8> = backlog.chunks().flat_map(|c| c.to_vec()).collect();
        let mut expected = b"one two ".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b" three");
        assert_eq!(chunks, expected);
        assert_eq!(drain(&mut backlog), expected);
        assert_eq!(backlog.len(), 0);
    }

    #[test]
    fn only_large_rests_that_are_most_of_their_frame_are_sliced() {
        // Held whole (the socket took none of it), from 32 KiB up.
        assert!(slices(SLICE_MIN, SLICE_MIN));
        assert!(!slices(SLICE_MIN - 1, SLICE_MIN - 1));
        // The rest of a 256 KiB frame the socket took most of would keep the whole frame's buffer
        // alive: copied.
        assert!(!slices(64 * 1024, 256 * 1024));
        assert!(slices(128 * 1024, 256 * 1024));
    }

    #[test]
    fn a_million_one_byte_frames_are_held_in_a_few_buffers() {
        let mut backlog = Backlog::default();
        for i in 0..1_000_000u32 {
            backlog.hold_copy(&[i as u8]);
        }
        assert_eq!(backlog.len(), 1_000_000);
        // 1 MB in buffers of 64 KiB: 16 of them (15 sealed, one gathering), not a million.
        assert_eq!(backlog.chunks.len(), 1_000_000 / GATHER);
        let held: usize = backlog.chunks.iter().map(Bytes::len).sum::<usize>() + backlog.gathering.len();
        assert_eq!(held, 1_000_000);
        let out = drain(&mut backlog);
        assert!(out.iter().enumerate().all(|(i, b)| *b == i as u8));
    }
}
