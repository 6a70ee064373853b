//! An HTTP/2 stream pair as a byte stream (`AsyncRead + AsyncWrite`), for code that speaks a
//! protocol over a tunnel (the ingress speaks HTTP/1.1 to a service through one).
//!
//! Reads hand out received frames and release flow control as they are consumed; writes wait for
//! send capacity, so neither side buffers without bound.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use pconnect_proto::control::{ErrorBody, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A tunnel stream as a byte stream.
pub struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    eof: bool,
}

impl H2Io {
    pub fn new(recv: RecvStream, send: SendStream<Bytes>) -> Self {
        Self { send, recv, pending: Bytes::new(), eof: false }
    }
}

fn to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io().unwrap_or_else(|| io::Error::other("h2 io error"))
    } else {
        io::Error::new(io::ErrorKind::ConnectionReset, e)
    }
}

impl AsyncRead for H2Io {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(chunk)) => {
                    let _ = self.recv.flow_control().release_capacity(chunk.len());
                    self.pending = chunk;
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                None => self.eof = true,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        let granted = match ready!(self.send.poll_capacity(cx)) {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        };
        if granted == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = granted.min(buf.len());
        self.send.send_data(Bytes::copy_from_slice(&buf[..n]), false).map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.send.send_data(Bytes::new(), true).map_err(to_io)?;
        Poll::Ready(Ok(()))
    }
}

/// Why a whole body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadBodyError {
    #[error("stream failed: {0}")]
    Stream(#[from] h2::Error),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
}

/// Reads a whole (small) body, releasing flow control as it goes; refuses more than `cap` bytes.
pub async fn read_body(mut body: RecvStream, cap: usize) -> Result<Vec<u8>, ReadBodyError> {
    let mut buf = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() > cap {
            return Err(ReadBodyError::TooLarge(cap));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Largest error body read from a peer.
const ERROR_BODY_CAP: usize = 64 * 1024;

/// The JSON error a peer answered a request with, or a sentence naming the status (`peer`: who
/// answered, e.g. "the hub").
pub async fn read_error(body: RecvStream, status: http::StatusCode, peer: &str) -> ErrorBody {
    let bytes = read_body(body, ERROR_BODY_CAP).await.unwrap_or_default();
    error_body(&bytes, status, peer)
}

/// Parses an error body, or describes the status when it is not one.
pub fn error_body(bytes: &[u8], status: http::StatusCode, peer: &str) -> ErrorBody {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| ErrorBody::new(ErrorCode::Internal, format!("{peer} answered {status}")))
}
