//! Header blocks in the lane's profile of HPACK (RFC 7541): every field is a literal without
//! indexing and without Huffman coding (§6.2.2, §5.2), so no compression state exists on either
//! side and a block decodes on its own. A block in any other representation (indexed fields,
//! Huffman strings, a dynamic table) is a COMPRESSION_ERROR: both ends are lanes, which never send
//! one. What a peer sends is checked as RFC 9113 §8.2 asks (lowercase names of token characters, no
//! NUL, CR or LF in values) and bounded in count and size.

use crate::tuning::MAX_HEADER_LIST;

/// Most fields in one block (a tunnel request carries six).
const MAX_FIELDS: usize = 32;
/// What each field counts towards the header list size besides its bytes (RFC 7541 §4.1).
const FIELD_OVERHEAD: usize = 32;

/// Why a header block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("a header block outside the lane's HPACK profile (indexed, Huffman-coded or truncated)")]
    Representation,
    #[error("a header block larger than {MAX_HEADER_LIST} bytes or {MAX_FIELDS} fields")]
    TooLarge,
    #[error("a header field with a malformed name or value")]
    Malformed,
}

/// Appends `fields` to `out` as a header block.
pub(crate) fn encode<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>, out: &mut Vec<u8>) {
    for (name, value) in fields {
        out.push(0);
        put_string(out, name.as_bytes());
        put_string(out, value.as_bytes());
    }
}

/// `text` as a field value: control characters become spaces, the ends are trimmed, and at most
/// 512 bytes are kept (on a character boundary).
pub(crate) fn field_value(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut value = clean.trim();
    while value.len() > 512 {
        let mut end = 512;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value = value[..end].trim_end();
    }
    value.to_string()
}

/// The fields of `block`, checked.
pub(crate) fn decode(block: &[u8]) -> Result<Vec<(String, String)>, FieldsError> {
    let mut fields = Vec::new();
    let (mut at, mut size) = (0, 0);
    while at < block.len() {
        let first = block[at];
        match first >> 4 {
            // Literal without indexing, or never indexed: the name must be new (index 0).
            0 | 1 => {
                if get_int(block, &mut at, 4)? != 0 {
                    return Err(FieldsError::Representation);
                }
                let name = get_string(block, &mut at)?;
                let value = get_string(block, &mut at)?;
                size += name.len() + value.len() + FIELD_OVERHEAD;
                if size > MAX_HEADER_LIST as usize || fields.len() == MAX_FIELDS {
                    return Err(FieldsError::TooLarge);
                }
                fields.push(checked(name, value)?);
            }
            // A dynamic table size update: only to zero, the size this side allows.
            2 | 3 => {
                if get_int(block, &mut at, 5)? != 0 {
                    return Err(FieldsError::Representation);
                }
            }
            _ => return Err(FieldsError::Representation),
        }
    }
    Ok(fields)
}

fn checked(name: &[u8], value: &[u8]) -> Result<(String, String), FieldsError> {
    let bare = name.strip_prefix(b":").unwrap_or(name);
    let token = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(c);
    if bare.is_empty()
        || !bare.iter().all(token)
        || (bare.len() < name.len() && !bare.iter().all(u8::is_ascii_lowercase))
    {
        return Err(FieldsError::Malformed);
    }
    let edge = |c: Option<&u8>| matches!(c, Some(b' ' | b'\t'));
    if value.iter().any(|c| matches!(c, 0 | b'\r' | b'\n')) || edge(value.first()) || edge(value.last()) {
        return Err(FieldsError::Malformed);
    }
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| FieldsError::Malformed);
    Ok((text(name)?, text(value)?))
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    put_int(out, 0, 7, bytes.len());
    out.extend_from_slice(bytes);
}

/// RFC 7541 §5.1: `value` with an N-bit prefix after `high` bits.
fn put_int(out: &mut Vec<u8>, high: u8, prefix: u32, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_int(block: &[u8], at: &mut usize, prefix: u32) -> Result<usize, FieldsError> {
    let max = (1usize << prefix) - 1;
    let first = usize::from(*block.get(*at).ok_or(FieldsError::Representation)?) & max;
    *at += 1;
    if first < max {
        return Ok(first);
    }
    let mut value = max;
    for shift in (0..28).step_by(7) {
        let byte = *block.get(*at).ok_or(FieldsError::Representation)?;
        *at += 1;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(FieldsError::TooLarge)
}

fn get_string<'b>(block: &'b [u8], at: &mut usize) -> Result<&'b [u8], FieldsError> {
    let huffman = block.get(*at).ok_or(FieldsError::Representation)? & 0x80 != 0;
    if huffman {
        return Err(FieldsError::Representation);
    }
    let len = get_int(block, at, 7)?;
    let bytes = block.get(*at..at.saturating_add(len)).ok_or(FieldsError::Representation)?;
    *at += len;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(fields.iter().copied(), &mut out);
        out
    }

    #[test]
    fn fields_round_trip_including_long_values() {
        let long = "t".repeat(300);
        let fields = [(":method", "CONNECT"), (":path", "/v1/tunnel/db"), ("pconnect-ticket", long.as_str())];
        let decoded = decode(&block(&fields)).unwrap();
        let expected: Vec<(String, String)> = fields.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(decoded, expected);
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        put_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
    }

    #[test]
    fn other_representations_are_refused() {
        assert_eq!(decode(&[0x82]), Err(FieldsError::Representation), "indexed");
        assert_eq!(decode(&[0x41, 0x01, b'a']), Err(FieldsError::Representation), "incremental indexing");
        assert_eq!(decode(&[0x04, 0x01, b'a']), Err(FieldsError::Representation), "an indexed name");
        assert_eq!(decode(&[0x00, 0x81, 0xff, 0x00]), Err(FieldsError::Representation), "Huffman");
        assert_eq!(decode(&[0x3f, 0xe1, 0x1f]), Err(FieldsError::Representation), "a table of 4096");
        assert_eq!(decode(&[0x20]), Ok(vec![]), "a table of zero");
        let whole = block(&[("name", "value")]);
        for cut in 1..whole.len() {
            assert!(decode(&whole[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn malformed_names_and_values_and_oversized_blocks_are_refused() {
        for (name, value) in [
            ("Upper", "v"),
            ("", "v"),
            (":", "v"),
            (":pa1h", "v"),
            ("sp ace", "v"),
            ("n", "a\r\nb"),
            ("n", " v"),
            ("n", "v\t"),
        ] {
            assert_eq!(decode(&block(&[(name, value)])), Err(FieldsError::Malformed), "{name:?}: {value:?}");
        }
        assert!(decode(&block(&[("x-ok", "a value; with=things")])).is_ok());
        let big = "v".repeat(MAX_HEADER_LIST as usize);
        assert_eq!(decode(&block(&[("n", big.as_str())])), Err(FieldsError::TooLarge));
        let reason = field_value("  line one\r\nline two\0 ");
        assert_eq!(reason, "line one  line two");
        assert!(decode(&block(&[("n", reason.as_str())])).is_ok());
        assert_eq!(field_value(&"é".repeat(400)).len(), 512);
        let many = vec![("n", "v"); MAX_FIELDS + 1];
        assert_eq!(decode(&block(&many)), Err(FieldsError::TooLarge));
        let mut huge = vec![0x00, 0x7f];
        huge.extend([0xff; 8]);
        assert!(decode(&huge).is_err(), "an integer past any length");
    }
}
