//! Capture of one debug-enabled service: every tunnel to it is spliced with a tap, and a task per
//! connection (a tunnel, or a connection that carries public-link requests) runs the
//! `pconnect-capture` parsers on the chunks and queues finished exchanges for
//! the uplink. Both queues are bounded and never waited on: what does not fit is dropped and
//! counted, so the data path runs at full speed whatever the capture does.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use pconnect_capture::Tap;
use pconnect_link::pump::{self, PumpError, TapChunk, TapDirection, TapSender};
use pconnect_proto::debug::AgentEvent;
use pconnect_proto::exchange::{Direction, Exchange, Micros, Protocol};
use pconnect_proto::project::ServiceKind;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::target::Target;

/// Chunks queued per connection between the data path and its parser (each at most one socket
/// read, 128 KiB): bounds what a slow parser can hold.
pub(crate) const TAP_QUEUE: usize = 64;
/// Exchanges queued for the uplink.
pub(crate) const EVENT_QUEUE: usize = 4096;

/// The capture of one service in one debug session.
pub struct ServiceCapture {
    /// The hub's session id (`d1`).
    pub(crate) session: String,
    pub(crate) service: String,
    pub(crate) target: Target,
    declared: Option<Protocol>,
    /// Time zero of the session's timestamps.
    epoch: Instant,
    next_conn: AtomicU64,
    events: mpsc::Sender<AgentEvent>,
    /// Chunks the data path could not queue.
    dropped_chunks: Arc<AtomicU64>,
    /// Exchanges the uplink could not queue.
    dropped_events: AtomicU64,
    bytes: AtomicU64,
}

impl ServiceCapture {
    pub(crate) fn new(
        session: String,
        service: String,
        target: Target,
        declared: Option<Protocol>,
        events: mpsc::Sender<AgentEvent>,
    ) -> Self {
        Self {
            session,
            service,
            target,
            declared,
            epoch: Instant::now(),
            next_conn: AtomicU64::new(1),
            events,
            dropped_chunks: Arc::default(),
            dropped_events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Splices a tunnel like [`pump::splice`], feeding a capture task on the side.
    pub async fn splice(
        self: &Arc<Self>,
        socket: TcpStream,
        recv: RecvStream,
        send: SendStream<Bytes>,
    ) -> Result<(u64, u64), PumpError> {
        let tap = self.start_tap();
        pump::splice_tapped(socket, recv, send, &tap).await
    }

    /// A connection to the service whose bytes, both ways, feed a capture task as a tunnel's
    /// would (public-link requests, which reach the service through an HTTP client).
    pub(crate) fn tapped(self: &Arc<Self>, socket: TcpStream) -> TappedStream {
        TappedStream { socket, tap: self.start_tap() }
    }

    /// A new connection's tap, with its capture task running until the tap is dropped.
    pub(crate) fn start_tap(self: &Arc<Self>) -> TapSender {
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let conn = self.next_conn();
        let span = tracing::debug_span!("capture", session = %self.session, conn);
        tokio::spawn(self.clone().capture(conn, rx).instrument(span));
        TapSender::new(tx, self.dropped_chunks.clone())
    }

    /// A new connection number (replays get one too).
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Microseconds since the session started.
    pub(crate) fn micros(&self, at: Instant) -> Micros {
        at.saturating_duration_since(self.epoch).as_micros() as Micros
    }

    /// Drops and bytes so far: (chunks + exchanges dropped, bytes seen).
    pub(crate) fn stats(&self) -> (u64, u64) {
        let dropped = self.dropped_chunks.load(Ordering::Relaxed) + self.dropped_events.load(Ordering::Relaxed);
        (dropped, self.bytes.load(Ordering::Relaxed))
    }

    /// A tap for one connection of this service.
    pub(crate) fn tap(&self) -> Tap {
        Tap::new(self.declared)
    }

    async fn capture(self: Arc<Self>, conn: u64, mut rx: mpsc::Receiver<TapChunk>) {
        let mut tap = self.tap();
        while let Some(chunk) = rx.recv().await {
            let at = self.micros(chunk.at);
            if chunk.gap {
                self.emit(conn, tap.on_gap(at));
            }
            self.bytes.fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
            let dir = match chunk.dir {
                TapDirection::ToService => Direction::ToService,
                TapDirection::ToClient => Direction::ToClient,
            };
            let done = tap.on_bytes(dir, &chunk.bytes, at);
            tracing::trace!(?dir, bytes = chunk.bytes.len(), exchanges = done.len(), "tapped");
            self.emit(conn, done);
        }
        let done = tap.on_close(self.micros(Instant::now()));
        tracing::trace!(exchanges = done.len(), protocol = ?tap.protocol(), "tapped connection closed");
        self.emit(conn, done);
    }

    fn emit(&self, conn: u64, exchanges: Vec<Exchange>) {
        for exchange in exchanges {
            if self
                .events
                .try_send(AgentEvent::Exchange { conn, replay_of: None, exchange: Box::new(exchange) })
                .is_err()
            {
                self.dropped_events.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A socket to the service that offers what it reads and writes to a capture. Copies each chunk
/// for the tap: it only runs while a debug session captures the service.
pub(crate) struct TappedStream {
    socket: TcpStream,
    tap: TapSender,
}

impl AsyncRead for TappedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.socket).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            self.tap.offer(TapDirection::ToClient, &Bytes::copy_from_slice(read));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TappedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.socket).poll_write(cx, data))?;
        if written > 0 {
            self.tap.offer(TapDirection::ToService, &Bytes::copy_from_slice(&data[..written]));
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// The capture protocol a declared service kind stands for.
pub fn declared_protocol(kind: Option<ServiceKind>) -> Option<Protocol> {
    match kind? {
        ServiceKind::Http => Some(Protocol::Http),
        ServiceKind::Postgres => Some(Protocol::Postgres),
        ServiceKind::Redis => Some(Protocol::Redis),
        ServiceKind::Mysql | ServiceKind::Mongo | ServiceKind::Tcp => None,
    }
}
