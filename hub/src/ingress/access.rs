//! The access log and request metrics of public links: one line per request, written when its
//! response body has ended (so it carries the bytes sent and the whole duration), at `info` under
//! the `pconnect_hub::access` target.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http::{Request, Response};
use hyper::body::{Body, Frame, SizeHint};

use crate::metrics::HubMetrics;

/// A public-link request, noted when it arrived; rides in the response's extensions until the
/// connection's service wraps the body.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    method: http::Method,
    host: String,
    path: String,
    client: IpAddr,
    started: Instant,
}

impl Entry {
    pub(super) fn start<B>(req: &Request<B>, host: &str, client: IpAddr) -> Self {
        Self {
            method: req.method().clone(),
            host: host.to_owned(),
            path: req.uri().path().to_owned(),
            client,
            started: Instant::now(),
        }
    }

    /// The request's Host, as the ingress routed it.
    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// The client's address (the peer, or what a trusted proxy said).
    pub(super) fn client(&self) -> IpAddr {
        self.client
    }
}

/// Counts the request's status and, if it was a public-link request, wraps the body so its end
/// writes the access line.
pub(super) fn observe<B>(mut response: Response<B>, metrics: &HubMetrics) -> Response<Logged<B>> {
    let entry = response.extensions_mut().remove::<Entry>();
    let status = response.status().as_u16();
    if entry.is_some() {
        metrics.link_request(status);
    }
    response.map(|body| Logged { body, line: entry.map(|entry| Line { entry, status, bytes: 0 }) })
}

struct Line {
    entry: Entry,
    status: u16,
    bytes: u64,
}

impl Drop for Line {
    fn drop(&mut self) {
        let Entry { method, host, path, client, started } = &self.entry;
        tracing::info!(
            target: "pconnect_hub::access",
            %method,
            host = %host,
            path = %path,
            status = self.status,
            bytes = self.bytes,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            client = %client,
            "request"
        );
    }
}

/// A response body that counts what it sends and logs the request when dropped (ended, or cut).
pub(crate) struct Logged<B> {
    body: B,
    line: Option<Line>,
}

impl<B> Body for Logged<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(line)) = (&polled, self.line.as_mut())
            && let Some(data) = frame.data_ref()
        {
            line.bytes += data.remaining() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
