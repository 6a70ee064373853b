//! Minimal RFC 6455 WebSocket server framing for the viewer: the handshake answer, masked client
//! frames in (text, ping, close; fragments joined up to a cap), unmasked server frames out. No
//! extensions, no subprotocols: the viewer sends small JSON text messages and receives JSON text.
//!
//! Hand-rolled rather than a crate: about 150 lines over what the hub already has (hyper's
//! upgrade, ring's SHA-1), and the viewer needs none of permessage-deflate, client mode or
//! streaming a crate would bring.

use base64::Engine;
use http::HeaderMap;
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The GUID RFC 6455 appends to `Sec-WebSocket-Key`.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message accepted from a viewer (questions and replay edits are small).
pub(crate) const MAX_MESSAGE: usize = 1024 * 1024;

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// The `Sec-WebSocket-Accept` value for a request's headers, when they ask for a WebSocket
/// (version 13, with a key).
pub(crate) fn accept_key(headers: &HeaderMap) -> Option<String> {
    let has = |name: &str, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has("upgrade", "websocket") || !has("connection", "upgrade") || !has("sec-websocket-version", "13") {
        return None;
    }
    let key = headers.get("sec-websocket-key")?.to_str().ok()?.trim();
    if key.is_empty() || key.len() > 64 {
        return None;
    }
    let hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, format!("{key}{GUID}").as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(hash.as_ref()))
}

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    Close,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

/// Reads one message (joining fragments). Control frames between fragments are returned first
/// (and the partial message is kept in `partial`).
pub(crate) async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    partial: &mut Option<(u8, Vec<u8>)>,
) -> Result<Incoming, WsError> {
    loop {
        let mut head = [0u8; 2];
        reader.read_exact(&mut head).await?;
        let fin = head[0] & 0x80 != 0;
        if head[0] & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let opcode = head[0] & 0x0f;
        if head[1] & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let len = match head[1] & 0x7f {
            126 => u64::from(reader.read_u16().await?),
            127 => reader.read_u64().await?,
            n => u64::from(n),
        };
        let control = opcode >= 0x8;
        if control && (len > 125 || !fin) {
            return Err(WsError::Protocol("bad control frame"));
        }
        let held = partial.as_ref().map_or(0, |(_, data)| data.len());
        if len > (MAX_MESSAGE - held) as u64 {
            return Err(WsError::Protocol("message too large"));
        }
        let mut mask = [0u8; 4];
        reader.read_exact(&mut mask).await?;
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload).await?;
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        match opcode {
            OP_CLOSE => return Ok(Incoming::Close),
            OP_PING => return Ok(Incoming::Ping(payload)),
            OP_PONG => return Ok(Incoming::Pong),
            OP_TEXT | OP_BINARY if partial.is_some() => {
                return Err(WsError::Protocol("new message inside a fragmented one"));
            }
            OP_TEXT | OP_BINARY => *partial = Some((opcode, payload)),
            OP_CONTINUATION => match partial.as_mut() {
                Some((_, data)) => data.extend_from_slice(&payload),
                None => return Err(WsError::Protocol("continuation without a message")),
            },
            _ => return Err(WsError::Protocol("unknown opcode")),
        }
        if fin {
            let (opcode, data) = partial.take().expect("set above");
            return match opcode {
                OP_TEXT => {
                    String::from_utf8(data).map(Incoming::Text).map_err(|_| WsError::Protocol("text is not UTF-8"))
                }
                _ => Ok(Incoming::Binary),
            };
        }
    }
}

/// One unmasked, final server frame.
pub(crate) fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Writes a text message.
pub(crate) async fn send_text<W: AsyncWrite + Unpin>(writer: &mut W, text: &str) -> std::io::Result<()> {
    writer.write_all(&frame(OP_TEXT, text.as_bytes())).await
}

/// Writes a close frame with status 1000 (normal) and flushes.
pub(crate) async fn send_close<W: AsyncWrite + Unpin>(writer: &mut W) -> std::io::Result<()> {
    writer.write_all(&frame(OP_CLOSE, &1000u16.to_be_bytes())).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![first, 0x80 | payload.len() as u8];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn the_handshake_answers_the_rfc_example() {
        let mut headers = HeaderMap::new();
        headers.insert("upgrade", "websocket".parse().unwrap());
        headers.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        headers.insert("sec-websocket-version", "13".parse().unwrap());
        headers.insert("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap());
        assert_eq!(accept_key(&headers).as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        headers.remove("sec-websocket-version");
        assert_eq!(accept_key(&headers), None);
    }

    #[tokio::test]
    async fn frames_are_unmasked_and_fragments_joined() {
        let mut input = masked(0x01, b"he");
        input.extend(masked(0x89, b"p"));
        input.extend(masked(0x80, b"llo"));
        input.extend(masked(0x88, &[3, 232]));
        let mut reader = &input[..];
        let mut partial = None;
        assert_eq!(read_message(&mut reader, &mut partial).await.unwrap(), Incoming::Ping(b"p".to_vec()));
        assert_eq!(read_message(&mut reader, &mut partial).await.unwrap(), Incoming::Text("hello".into()));
        assert_eq!(read_message(&mut reader, &mut partial).await.unwrap(), Incoming::Close);
        let unmasked = [0x81, 0x01, b'x'];
        assert!(read_message(&mut &unmasked[..], &mut None).await.is_err());
        assert_eq!(frame(OP_TEXT, b"hi"), vec![0x81, 2, b'h', b'i']);
        assert_eq!(frame(OP_TEXT, &[0; 300])[..4], [0x81, 126, 1, 44]);
    }
}
