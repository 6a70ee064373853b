//! HTTP messages carried as one HTTP/2 stream each (public-link requests, hub → agent): a received
//! stream as an [`http_body::Body`], a body sent onto a stream under flow control, and the
//! connection-specific headers HTTP/2 forbids.
//!
//! No copies: DATA frames become body frames as the `Bytes` they arrived in, and body frames are
//! sent as they come. Flow control is released when the consumer takes a frame, so a slow reader
//! (a slow client, a slow service) holds the sender back through the window.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, header};
use http_body::{Body, Frame};

use crate::pump::{PumpError, send_all_then};

/// A received HTTP/2 stream as a body: its DATA frames, then its trailers.
pub struct H2Body {
    recv: RecvStream,
    data_done: bool,
}

impl H2Body {
    pub fn new(recv: RecvStream) -> Self {
        let data_done = recv.is_end_stream();
        Self { recv, data_done }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => self.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        match self.recv.poll_trailers(cx) {
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// Why sending a body onto a stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum SendBodyError<E> {
    /// The body itself failed (a client's malformed chunked upload, a service that hung up).
    #[error("the body failed: {0}")]
    Body(E),
    /// The stream failed (the peer reset it, the link died).
    #[error(transparent)]
    Stream(#[from] PumpError),
}

/// A body whose first frame was already read (to see that it is well-formed before anything is
/// sent on), followed by the rest.
pub struct Prefetched<B> {
    first: Option<Frame<Bytes>>,
    rest: B,
}

impl<B: Body<Data = Bytes> + Unpin> Prefetched<B> {
    /// Reads the first frame of `body`: its error when it is malformed (nothing was sent anywhere
    /// yet), else the body with that frame put back in front.
    pub async fn read_first(mut body: B) -> Result<Prefetched<B>, B::Error> {
        let first = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await.transpose()?;
        Ok(Prefetched { first, rest: body })
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Prefetched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        match this.first.take() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

/// Sends `body` on `send` frame by frame, waiting for flow-control capacity, then ends the stream
/// (with its trailers, if any). On an error the caller resets the stream (once it has noted why),
/// so the far side sees an error and never a body that merely ended early.
pub async fn send_body<B>(mut body: B, send: &mut SendStream<Bytes>) -> Result<u64, SendBodyError<B::Error>>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut total = 0u64;
    loop {
        let frame = match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => {
                send.send_data(Bytes::new(), true).map_err(PumpError::from)?;
                return Ok(total);
            }
            Some(Err(e)) => return Err(SendBodyError::Body(e)),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                total += data.len() as u64;
                // A body that knows its length ends with its last bytes (END_STREAM on that
                // frame): the receiver's HTTP/1.1 side stops reading at the length, and a separate
                // empty frame would reach a stream it already dropped (a reset on each request).
                let end = body.is_end_stream();
                send_all_then(send, data, end).await?;
                if end {
                    return Ok(total);
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let mut trailers = trailers;
                    strip_connection_headers(&mut trailers);
                    send.send_trailers(trailers).map_err(PumpError::from)?;
                    return Ok(total);
                }
            }
        }
    }
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that only describe one HTTP/1.1 connection, which HTTP/2 forbids (RFC 9113 8.2.2):
/// `Connection` and every header it names, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`,
/// `Upgrade`, and `TE` other than `trailers`.
pub fn strip_connection_headers(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE] {
        headers.remove(name);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    let te_trailers_only = headers.get_all(header::TE).iter().all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers_only {
        headers.remove(header::TE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn connection_headers_and_the_ones_they_name_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-private", HeaderValue::from_static("secret"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert(header::TE, HeaderValue::from_static("gzip"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_connection_headers(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type"]);

        let mut trailers_only = HeaderMap::new();
        trailers_only.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_connection_headers(&mut trailers_only);
        assert!(trailers_only.contains_key(header::TE), "TE: trailers is allowed in HTTP/2");
    }
}
