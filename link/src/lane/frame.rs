//! HTTP/2 frames as the lane writes and reads them (RFC 9113 §4.1, §6): the nine-byte header, the
//! frame types a tunnel connection uses, their flags, settings and error codes.

/// Bytes of a frame header.
pub(crate) const HEAD: usize = 9;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const PRIORITY: u8 = 0x2;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PUSH_PROMISE: u8 = 0x5;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const WINDOW_UPDATE: u8 = 0x8;
pub(crate) const CONTINUATION: u8 = 0x9;

pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY_FLAG: u8 = 0x20;

pub(crate) const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub(crate) const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub(crate) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(crate) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub(crate) const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
pub(crate) const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// Error codes (RFC 9113 §7).
pub(crate) const NO_ERROR: u32 = 0x0;
pub(crate) const PROTOCOL_ERROR: u32 = 0x1;
pub(crate) const FLOW_CONTROL_ERROR: u32 = 0x3;
pub(crate) const STREAM_CLOSED: u32 = 0x5;
pub(crate) const FRAME_SIZE_ERROR: u32 = 0x6;
pub(crate) const REFUSED_STREAM: u32 = 0x7;
pub(crate) const CANCEL: u32 = 0x8;
pub(crate) const COMPRESSION_ERROR: u32 = 0x9;

/// The window every stream and the connection start with (RFC 9113 §6.9.2).
pub(crate) const DEFAULT_WINDOW: i64 = 65_535;
/// The largest window flow control allows (RFC 9113 §6.9.1).
pub(crate) const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The frame size every peer accepts (RFC 9113 §4.2).
pub(crate) const DEFAULT_MAX_FRAME: usize = 16_384;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) len: usize,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) stream: u32,
}

impl Head {
    pub(crate) fn new(kind: u8, flags: u8, stream: u32, len: usize) -> Head {
        debug_assert!(len < 1 << 24);
        Head { len, kind, flags, stream }
    }

    pub(crate) fn encode(self) -> [u8; HEAD] {
        let len = (self.len as u32).to_be_bytes();
        let stream = (self.stream & 0x7fff_ffff).to_be_bytes();
        [len[1], len[2], len[3], self.kind, self.flags, stream[0], stream[1], stream[2], stream[3]]
    }

    /// The header at the front of `bytes`, if nine bytes are there (the reserved bit is ignored).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Head> {
        let b: &[u8; HEAD] = bytes.get(..HEAD)?.try_into().ok()?;
        Some(Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize,
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        })
    }
}

/// A SETTINGS payload of `pairs`.
pub(crate) fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    pairs.iter().flat_map(|(id, value)| id.to_be_bytes().into_iter().chain(value.to_be_bytes())).collect()
}

/// The (identifier, value) pairs of a SETTINGS payload; `None` unless its length is a multiple of
/// six.
pub(crate) fn parse_settings(payload: &[u8]) -> Option<impl Iterator<Item = (u16, u32)> + '_> {
    payload.len().is_multiple_of(6).then(|| {
        payload
            .chunks_exact(6)
            .map(|p| (u16::from_be_bytes([p[0], p[1]]), u32::from_be_bytes([p[2], p[3], p[4], p[5]])))
    })
}

/// The payload of a frame that may be padded (DATA, HEADERS), without its padding; `None` when the
/// padding is longer than the frame (a protocol error).
pub(crate) fn unpadded(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    unpadded_range(flags, payload).map(|range| &payload[range])
}

/// Where [`unpadded`]'s payload lies in `payload`.
pub(crate) fn unpadded_range(flags: u8, payload: &[u8]) -> Option<std::ops::Range<usize>> {
    if flags & PADDED == 0 {
        return Some(0..payload.len());
    }
    let (&pad, rest) = payload.split_first()?;
    rest.len().checked_sub(usize::from(pad)).map(|end| 1..1 + end)
}

/// A 31-bit big-endian value (stream id or window increment) at the front of `bytes`.
pub(crate) fn u31(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) & 0x7fff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_encodes_and_decodes_and_the_reserved_bit_is_ignored() {
        let head = Head::new(DATA, END_STREAM, 0x1234_5678, 0x00ab_cdef);
        let bytes = head.encode();
        assert_eq!(bytes, [0xab, 0xcd, 0xef, 0, 1, 0x12, 0x34, 0x56, 0x78]);
        assert_eq!(Head::decode(&bytes), Some(head));
        let mut reserved = bytes;
        reserved[5] |= 0x80;
        assert_eq!(Head::decode(&reserved), Some(head));
        assert_eq!(Head::decode(&bytes[..8]), None);
    }

    #[test]
    fn settings_round_trip_and_a_ragged_payload_is_refused() {
        let payload = settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 22), (SETTINGS_ENABLE_CONNECT_PROTOCOL, 1)]);
        let pairs: Vec<_> = parse_settings(&payload).unwrap().collect();
        assert_eq!(pairs, [(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 22), (SETTINGS_ENABLE_CONNECT_PROTOCOL, 1)]);
        assert!(parse_settings(&payload[..5]).is_none());
    }

    #[test]
    fn padding_is_stripped_and_too_much_of_it_refused() {
        assert_eq!(unpadded(0, b"abc"), Some(&b"abc"[..]));
        assert_eq!(unpadded(PADDED, b"\x02abcxx"), Some(&b"abc"[..]));
        assert_eq!(unpadded(PADDED, b"\x05abc"), None);
        assert_eq!(unpadded(PADDED, b""), None);
    }
}
