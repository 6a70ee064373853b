//! Body capture and presentation: a capped prefix of the (de-chunked) wire bytes, decoded from
//! gzip / deflate / br with an output cap, then shown as text, redacted JSON or a redacted form.

use std::io::Read;

use super::media::Media;
use crate::{BODY_CAP, Body, redact};

/// Most decoded bytes produced from one captured prefix.
const DECODED_CAP: usize = 1024 * 1024;
/// Most decoded bytes per captured byte (zip-bomb guard), above a floor of [`BODY_CAP`].
const RATIO_CAP: usize = 256;

/// The wire bytes of one message body: a prefix up to [`BODY_CAP`] plus the total count.
#[derive(Debug, Clone, Default)]
pub(super) struct Capture {
    pub(super) len: u64,
    pub(super) prefix: Vec<u8>,
    /// Bytes were dropped at [`BODY_CAP`].
    pub(super) capped: bool,
    /// The body ended by its framing (not cut by the connection closing).
    pub(super) complete: bool,
}

impl Capture {
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.len = self.len.saturating_add(bytes.len() as u64);
        let room = BODY_CAP.saturating_sub(self.prefix.len());
        let keep = room.min(bytes.len());
        self.prefix.extend_from_slice(&bytes[..keep]);
        if keep < bytes.len() {
            self.capped = true;
        }
    }

    /// Whether the prefix holds the whole body.
    fn whole(&self) -> bool {
        self.complete && !self.capped
    }
}

/// A body after content decoding.
#[derive(Debug, Clone, Default)]
pub(super) struct Decoded {
    pub(super) bytes: Vec<u8>,
    /// The codings that were undone (`gzip`, `br`, ...), when any.
    pub(super) encoding: Option<String>,
    /// Decoding failed or the coding is unknown: nothing can be shown.
    pub(super) failed: bool,
    /// `bytes` is only a prefix of the decoded body.
    pub(super) partial: bool,
}

impl Decoded {
    /// Whether `bytes` is the whole decoded body.
    pub(super) fn whole(&self) -> bool {
        !self.failed && !self.partial
    }
}

/// Undoes the `Content-Encoding` codings (applied in order, so decoded in reverse) on the captured prefix.
pub(super) fn decode(capture: &Capture, content_encoding: Option<&str>) -> Decoded {
    let codings: Vec<String> = content_encoding
        .unwrap_or("")
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let mut partial = !capture.whole();
    if codings.is_empty() {
        return Decoded { bytes: capture.prefix.clone(), encoding: None, failed: false, partial };
    }
    let failed = Decoded { failed: true, partial, ..Decoded::default() };
    let mut bytes = capture.prefix.clone();
    for coding in codings.iter().rev() {
        let limit = DECODED_CAP.min(bytes.len().saturating_mul(RATIO_CAP).max(BODY_CAP));
        let attempt = match coding.as_str() {
            "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(&bytes[..]), limit, partial),
            "deflate" => inflate(flate2::read::ZlibDecoder::new(&bytes[..]), limit, partial)
                .or_else(|| inflate(flate2::read::DeflateDecoder::new(&bytes[..]), limit, partial)),
            "br" => inflate(brotli_decompressor::Decompressor::new(&bytes[..], 4096), limit, partial),
            _ => None,
        };
        let Some((out, cut)) = attempt else { return failed };
        bytes = out;
        partial |= cut;
    }
    Decoded { bytes, encoding: Some(codings.join(", ")), failed: false, partial }
}

/// Reads a decoder to its end or to `limit` bytes. A stream that breaks off is accepted as a prefix
/// only when its input was itself a prefix; returns the output and whether it is partial.
fn inflate(mut reader: impl Read, limit: usize, input_partial: bool) -> Option<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Some((out, input_partial)),
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                if out.len() >= limit {
                    out.truncate(limit);
                    return Some((out, true));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) if input_partial && !out.is_empty() => return Some((out, true)),
            Err(_) => return None,
        }
    }
}

/// The valid UTF-8 text of `bytes`, tolerating a character cut at the end of a partial prefix.
pub(super) fn text_of(bytes: &[u8], partial: bool) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) if partial && e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
        Err(_) => None,
    }
}

/// Builds the shown [`Body`]. `graphql` marks a GraphQL request whose query documents are redacted too.
pub(super) fn view(capture: &Capture, decoded: &Decoded, media: Media, graphql: bool) -> Body {
    let mut body = Body {
        len: capture.len,
        truncated: capture.capped || (decoded.partial && capture.complete),
        ..Body::default()
    };
    if capture.len == 0 {
        body.truncated = false;
        return body;
    }
    if decoded.failed {
        body.binary = true;
        return body;
    }
    body.encoding = decoded.encoding.clone();
    let Some(text) = text_of(&decoded.bytes, decoded.partial) else {
        body.binary = true;
        return body;
    };
    let (text, json) = present(text, media, decoded.whole(), graphql);
    body.text = Some(text);
    body.json = json;
    body
}

/// The shown text of a decoded body, redacted, and its JSON value when it is JSON. What the body
/// *is* decides, not only what its `Content-Type` claims: servers echo JSON and forms without one.
fn present(text: &str, media: Media, whole: bool, graphql: bool) -> (String, Option<serde_json::Value>) {
    if whole && let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) {
        // A bare scalar is JSON only when declared so: `42` or `"hi"` in text/plain stay text.
        if media == Media::Json || value.is_object() || value.is_array() {
            redact::json(&mut value);
            if graphql {
                super::graphql::redact_json_queries(&mut value);
            }
            return (serde_json::to_string_pretty(&value).unwrap_or_default(), Some(value));
        }
    }
    let shown = match media {
        Media::Json => json_text(text),
        Media::Form => redact::form(text),
        Media::Graphql => super::graphql::redact_document(text),
        Media::Other if looks_like_json(text) => json_text(text),
        Media::Other if looks_like_form(text) => redact::form(text),
        Media::Other => text.to_string(),
    };
    (shown, None)
}

/// Text that starts like a JSON object or array (a cut or invalid one still gets its secrets masked).
fn looks_like_json(text: &str) -> bool {
    matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['))
}

/// Text shaped like `name=value&name=value` (URL-encoded form), with no whitespace inside.
fn looks_like_form(text: &str) -> bool {
    let text = text.trim_end_matches(['\r', '\n']);
    !text.is_empty()
        && text.split('&').all(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.[]%+*~".contains(&b))
                && !value.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        })
        && text.contains('=')
}

/// Masks the values of secret-looking fields in JSON text that does not parse (e.g. a cut prefix):
/// a scalar after `"name":` is replaced, objects and arrays are left to be scanned.
pub(super) fn json_text(text: &str) -> String {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut last_string: Option<(usize, usize)> = None;
    let mut mask_next = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            let end = string_end(b, i);
            if mask_next {
                out.extend_from_slice(format!("\"{}\"", redact::MASK).as_bytes());
                mask_next = false;
                last_string = None;
            } else {
                out.extend_from_slice(&b[i..end]);
                last_string = Some((i + 1, end.saturating_sub(1).max(i + 1)));
            }
            i = end;
            continue;
        }
        if c.is_ascii_whitespace() {
            out.push(c);
            i += 1;
            continue;
        }
        if c == b':' {
            if let Some((start, end)) = last_string.take() {
                mask_next = redact::is_secret_name(&String::from_utf8_lossy(&b[start..end]));
            }
        } else if mask_next {
            mask_next = false;
            if c != b'{' && c != b'[' {
                while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                out.extend_from_slice(format!("\"{}\"", redact::MASK).as_bytes());
                continue;
            }
        }
        last_string = None;
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The index just past the string literal starting at `start` (a `"`), or the end of input.
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_masks_secret_scalars_in_cut_json() {
        assert_eq!(
            json_text(r#"{"user":"a","password" : "p\"q","otp":1234,"nested":{"apiKey":true},"list":["tok"#),
            r#"{"user":"a","password" : "[redacted]","otp":"[redacted]","nested":{"apiKey":"[redacted]"},"list":["tok"#
        );
        assert_eq!(json_text(r#"{"token": "abc"#), r#"{"token": "[redacted]""#);
        assert_eq!(json_text("[\"é\", \"secret\"]"), "[\"é\", \"secret\"]");
    }

    fn shown(text: &str, media: Media) -> (String, Option<serde_json::Value>) {
        let capture =
            Capture { len: text.len() as u64, prefix: text.as_bytes().to_vec(), capped: false, complete: true };
        let body = view(&capture, &decode(&capture, None), media, false);
        (body.text.unwrap_or_default(), body.json)
    }

    #[test]
    fn json_and_form_bodies_are_redacted_whatever_their_content_type_says() {
        for media in [Media::Other, Media::Form, Media::Graphql, Media::Json] {
            let (text, json) = shown(r#"{"a":1,"password":"p"}"#, media);
            assert_eq!(json, Some(serde_json::json!({"a": 1, "password": redact::MASK})), "{media:?}");
            assert!(!text.contains("\"p\""), "{media:?}: {text}");
        }
        let (text, json) = shown(r#"[{"token":"t1"}]"#, Media::Other);
        assert_eq!((text.contains("t1"), json.is_some()), (false, true));
        // Cut or invalid JSON without a content type still has its secret scalars masked.
        assert_eq!(shown(r#" {"apiKey":"k1","n":"#, Media::Other), (r#" {"apiKey":"[redacted]","n":"#.into(), None));
        // Forms without a content type.
        assert_eq!(shown("a=1&password=p&token=t", Media::Other).0, "a=1&password=[redacted]&token=[redacted]");
        assert_eq!(shown("password=p\r\n", Media::Other).0, "password=[redacted]");
        // Plain text and scalars stay as they are.
        for text in ["hello password=p world", "42", "\"password\"", "x = password"] {
            assert_eq!(shown(text, Media::Other), (text.to_string(), None));
        }
        assert_eq!(shown("42", Media::Json), ("42".into(), Some(serde_json::json!(42))));
    }

    #[test]
    fn decode_tolerates_garbage_and_unknown_codings() {
        let capture = Capture { len: 4, prefix: b"abcd".to_vec(), capped: false, complete: true };
        assert!(decode(&capture, Some("gzip")).failed);
        assert!(decode(&capture, Some("zstd")).failed);
        assert!(decode(&capture, Some("br")).failed);
        assert!(decode(&capture, Some("deflate")).failed);
        let plain = decode(&capture, Some("identity"));
        assert!(!plain.failed && plain.bytes == b"abcd" && plain.encoding.is_none());
    }
}
