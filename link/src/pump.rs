//! The tunnel data path: moving bytes between HTTP/2 streams and TCP sockets.
//!
//! Contract: a stream either completes (each direction's EOF is forwarded as a half-close) or fails
//! visibly at both ends (HTTP/2 RST_STREAM on the stream side, TCP RST on the socket side). Never a
//! silent truncation. No per-byte work: DATA frames are forwarded as the `Bytes` they arrived in, and a
//! socket read becomes one frame without a copy.
//!
//! A tapped splice ([`splice_tapped`], debug sessions) also offers each chunk to a [`TapSender`]:
//! a `Bytes` clone (a reference count) through a bounded queue with `try_send`. A full queue drops
//! the chunk and counts it; the data path never waits for the tap.

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::tuning::READ_CHUNK;

/// Why a tunnel stream ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("tunnel stream failed: {0}")]
    H2(#[from] h2::Error),
    #[error("tunnel stream was reset by the other side")]
    Reset,
    #[error("local connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("tunnel closed: the agent is shutting down")]
    Stopped,
    #[error("tunnel refused")]
    Refused,
}

/// How an early splice ([`splice_early`]) ended badly: the other side refused the tunnel (its
/// answer, as the caller's type), or the data path failed.
#[derive(Debug)]
pub enum EarlyError<E> {
    Refused(E),
    Pump(PumpError),
}

/// Sends `data` on `send`, waiting for flow-control capacity so nothing piles up unbounded.
pub async fn send_all(send: &mut SendStream<Bytes>, data: Bytes) -> Result<(), PumpError> {
    send_all_then(send, data, false).await
}

/// [`send_all`], with END_STREAM on the last piece when `end`: the peer learns the stream is done
/// with its last bytes, never in a frame of its own that may arrive after it stopped listening.
pub async fn send_all_then(send: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> Result<(), PumpError> {
    if data.is_empty() {
        if end {
            send.send_data(data, true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(PumpError::Reset),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        send.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// The most of a stream's first chunk that [`send_chunk`] queues without waiting for capacity:
/// HTTP/2's smallest initial stream window, so it never asks more of the peer than a new stream
/// is granted.
const FIRST_CHUNK_UNRESERVED: usize = 65_535;

/// Sends one chunk of a stream's data, waiting for capacity as [`send_all`] does, except the
/// `first` of a stream just opened: h2 grants a new stream its send capacity only when the
/// connection task next runs, and that run writes the HEADERS alone, so waiting for the grant
/// costs a second write (and the peer a second read and wake-up). Up to
/// [`FIRST_CHUNK_UNRESERVED`] bytes are queued at once instead, behind the HEADERS, and leave with
/// them in one write; h2 still sends no byte beyond the windows.
async fn send_chunk(send: &mut SendStream<Bytes>, data: Bytes, first: bool) -> Result<(), PumpError> {
    if first && data.len() <= FIRST_CHUNK_UNRESERVED {
        send.send_data(data, false)?;
        return Ok(());
    }
    send_all(send, data).await
}

/// Forwards one direction between two HTTP/2 streams, frame by frame, then half-closes. Returns the
/// bytes moved, and adds each frame's length to `relayed` as it goes (one relaxed add per frame,
/// so an operator's counter moves during a long transfer). The hub runs one per direction of
/// every tunnel (`conn/forward.rs::relay_early`).
pub async fn stream_to_stream(
    mut from: RecvStream,
    mut to: SendStream<Bytes>,
    relayed: &AtomicU64,
) -> Result<u64, PumpError> {
    let mut total = 0u64;
    while let Some(chunk) = from.data().await {
        let chunk = chunk?;
        let len = chunk.len();
        let first = total == 0;
        total += len as u64;
        relayed.fetch_add(len as u64, Ordering::Relaxed);
        send_chunk(&mut to, chunk, first).await?;
        // Released only once the bytes are queued on the other stream: the far peer's window is
        // the backpressure.
        from.flow_control().release_capacity(len)?;
    }
    to.send_data(Bytes::new(), true)?;
    Ok(total)
}

/// Which way a tapped chunk went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapDirection {
    /// From the tunnel (the remote client) to the local service.
    ToService,
    /// From the local service back into the tunnel.
    ToClient,
}

/// One chunk as the tap receives it.
#[derive(Debug)]
pub struct TapChunk {
    pub dir: TapDirection,
    pub bytes: Bytes,
    pub at: Instant,
    /// Chunks of this connection were dropped just before this one.
    pub gap: bool,
}

/// The data path's end of a tap: offers chunks without ever waiting.
#[derive(Debug)]
pub struct TapSender {
    tx: mpsc::Sender<TapChunk>,
    dropped: Arc<AtomicU64>,
    gap: AtomicBool,
}

impl TapSender {
    /// A tap feeding `tx`; chunks that do not fit are counted in `dropped`.
    pub fn new(tx: mpsc::Sender<TapChunk>, dropped: Arc<AtomicU64>) -> Self {
        Self { tx, dropped, gap: AtomicBool::new(false) }
    }

    pub fn offer(&self, dir: TapDirection, bytes: &Bytes) {
        let gap = self.gap.load(Ordering::Relaxed);
        match self.tx.try_send(TapChunk { dir, bytes: bytes.clone(), at: Instant::now(), gap }) {
            Ok(()) if gap => self.gap.store(false, Ordering::Relaxed),
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.gap.store(true, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The capture ended (session stopped): nothing to count.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Reads the socket into the stream until EOF, then half-closes the stream.
async fn socket_to_stream(
    read: &mut ReadHalf<'_>,
    send: &mut SendStream<Bytes>,
    tap: Option<&TapSender>,
) -> Result<u64, PumpError> {
    let mut total = 0u64;
    loop {
        // Allocate only once data is waiting, and keep nothing between reads (not even the unused
        // rest of a short read's buffer), so idle tunnels hold no buffer.
        read.readable().await?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match read.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let first = total == 0;
                total += n as u64;
                if n < READ_CHUNK {
                    // A short read emptied the socket: forget its readiness (as tokio's own
                    // `poll_read` does), so the next loop waits instead of reading in vain.
                    forget_readable(read);
                }
                let chunk = buf.freeze();
                if let Some(tap) = tap {
                    tap.offer(TapDirection::ToClient, &chunk);
                }
                send_chunk(send, chunk, first).await?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
    send.send_data(Bytes::new(), true)?;
    Ok(total)
}

/// Clears the socket's cached read readiness without a syscall. Data that arrived after the read
/// raised a new readiness event, which this does not clear.
fn forget_readable(read: &ReadHalf<'_>) {
    let stream: &TcpStream = read.as_ref();
    let _ = stream.try_io(tokio::io::Interest::READABLE, || Err::<(), _>(std::io::ErrorKind::WouldBlock.into()));
}

/// Writes the stream into the socket until the stream ends, then half-closes the socket.
async fn stream_to_socket(
    recv: &mut RecvStream,
    write: &mut WriteHalf<'_>,
    tap: Option<&TapSender>,
) -> Result<u64, PumpError> {
    let mut total = 0u64;
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let len = chunk.len();
        if let Some(tap) = tap {
            tap.offer(TapDirection::ToService, &chunk);
        }
        write.write_all(&chunk).await?;
        total += len as u64;
        recv.flow_control().release_capacity(len)?;
    }
    write.shutdown().await?;
    Ok(total)
}

/// Splices a local TCP connection and a tunnel stream (the agent's half of every tunnel).
///
/// On failure the socket is closed with a TCP RST (so the local program sees an error, not a clean
/// EOF) and the stream is reset. Returns the bytes moved (socket -> stream, stream -> socket).
pub async fn splice(socket: TcpStream, recv: RecvStream, send: SendStream<Bytes>) -> Result<(u64, u64), PumpError> {
    splice_inner(socket, recv, send, None, None).await
}

/// [`splice`], cut off with an error at both ends (RST on the socket, RST_STREAM on the stream) when
/// `stop` fires: the end of a shutdown's grace period.
pub async fn splice_until(
    socket: TcpStream,
    recv: RecvStream,
    send: SendStream<Bytes>,
    stop: &CancellationToken,
) -> Result<(u64, u64), PumpError> {
    splice_inner(socket, recv, send, None, Some(stop)).await
}

/// [`splice`], offering every chunk of both directions to `tap` on the way (debug sessions).
pub async fn splice_tapped(
    socket: TcpStream,
    recv: RecvStream,
    send: SendStream<Bytes>,
    tap: &TapSender,
) -> Result<(u64, u64), PumpError> {
    splice_inner(socket, recv, send, Some(tap), None).await
}

/// [`splice_until`] for a tunnel whose answer is still on its way (early data): the socket's first
/// bytes leave with the request instead of a round trip later; the stream's side is written to the
/// socket once `answer` resolves. A refused answer fails the splice (RST on the socket) and comes
/// back as [`EarlyError::Refused`].
pub async fn splice_early<E>(
    socket: TcpStream,
    answer: impl Future<Output = Result<RecvStream, E>>,
    send: SendStream<Bytes>,
    stop: &CancellationToken,
) -> Result<(u64, u64), EarlyError<E>> {
    splice_answered(socket, answer, send, None, Some(stop)).await
}

async fn splice_inner(
    socket: TcpStream,
    recv: RecvStream,
    send: SendStream<Bytes>,
    tap: Option<&TapSender>,
    stop: Option<&CancellationToken>,
) -> Result<(u64, u64), PumpError> {
    let answer = std::future::ready(Ok::<_, std::convert::Infallible>(recv));
    splice_answered(socket, answer, send, tap, stop).await.map_err(|e| match e {
        EarlyError::Pump(e) => e,
        EarlyError::Refused(never) => match never {},
    })
}

async fn splice_answered<E>(
    mut socket: TcpStream,
    answer: impl Future<Output = Result<RecvStream, E>>,
    mut send: SendStream<Bytes>,
    tap: Option<&TapSender>,
    stop: Option<&CancellationToken>,
) -> Result<(u64, u64), EarlyError<E>> {
    let mut refused = None;
    let result = {
        let (mut read, mut write) = socket.split();
        let inbound = async {
            let mut recv = answer.await.map_err(|e| {
                refused = Some(e);
                PumpError::Refused
            })?;
            stream_to_socket(&mut recv, &mut write, tap).await
        };
        let both = async { tokio::try_join!(socket_to_stream(&mut read, &mut send, tap), inbound) };
        match stop {
            Some(stop) => tokio::select! {
                result = both => result,
                _ = stop.cancelled() => Err(PumpError::Stopped),
            },
            None => both.await,
        }
    };
    if result.is_err() {
        abort_socket(&socket);
        send.send_reset(h2::Reason::CANCEL);
    }
    match (result, refused) {
        (_, Some(e)) => Err(EarlyError::Refused(e)),
        (result, None) => result.map_err(EarlyError::Pump),
    }
}

/// Makes the coming close of `socket` an RST instead of a FIN.
pub fn abort_socket(socket: &TcpStream) {
    let _ = socket.set_zero_linger();
}

#[cfg(test)]
mod tap_tests {
    use super::*;

    #[test]
    fn a_full_tap_drops_and_counts_and_marks_the_gap() {
        let (tx, mut rx) = mpsc::channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let tap = TapSender::new(tx, dropped.clone());
        for i in 0..4u8 {
            tap.offer(TapDirection::ToService, &Bytes::from(vec![i]));
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        let first = rx.try_recv().unwrap();
        assert_eq!((first.bytes.as_ref(), first.gap), (&[0u8][..], false));
        rx.try_recv().unwrap();
        tap.offer(TapDirection::ToClient, &Bytes::from_static(b"after"));
        let after = rx.try_recv().unwrap();
        assert!(after.gap && after.dir == TapDirection::ToClient, "the chunk after a drop says so");
        tap.offer(TapDirection::ToClient, &Bytes::from_static(b"next"));
        assert!(!rx.try_recv().unwrap().gap);
        drop(rx);
        tap.offer(TapDirection::ToClient, &Bytes::from_static(b"closed"));
        assert_eq!(dropped.load(Ordering::Relaxed), 2, "a closed capture is not a drop");
    }
}

#[cfg(test)]
mod first_chunk_tests {
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Poll};

    use http::{Method, Request, Response};
    use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

    use super::*;
    use crate::tuning;

    /// One end of an in-memory connection that counts the writes carrying bytes. Like the links'
    /// TLS, it takes a frame's header and payload in one vectored write.
    struct CountedWrites {
        io: DuplexStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for CountedWrites {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountedWrites {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let written = Pin::new(&mut self.io).poll_write(cx, buf);
            if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            written
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let gathered: Vec<u8> = bufs.iter().flat_map(|buf| buf.iter().copied()).collect();
            self.poll_write(cx, &gathered)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    fn tunnel_request() -> Request<()> {
        Request::builder().method(Method::POST).uri("https://link/tunnel").body(()).unwrap()
    }

    #[tokio::test]
    async fn a_new_streams_first_chunk_leaves_in_the_write_of_its_headers() {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(AtomicUsize::new(0));
        let client_io = CountedWrites { io: client_io, writes: writes.clone() };
        let (got_tx, mut got_rx) = mpsc::channel::<Bytes>(4);
        tokio::spawn(async move {
            let mut conn = tuning::server_builder().handshake::<_, Bytes>(server_io).await.unwrap();
            while let Some(Ok((request, mut respond))) = conn.accept().await {
                let got_tx = got_tx.clone();
                tokio::spawn(async move {
                    respond.send_response(Response::new(()), true).unwrap();
                    let mut body = request.into_body();
                    while let Some(Ok(chunk)) = body.data().await {
                        body.flow_control().release_capacity(chunk.len()).unwrap();
                        got_tx.send(chunk).await.unwrap();
                    }
                });
            }
        });
        let (sender, conn) = tuning::client_builder().handshake::<_, Bytes>(client_io).await.unwrap();
        tokio::spawn(conn);
        // A first stream settles the connection (SETTINGS and their acks written).
        let mut sender = sender.ready().await.unwrap();
        let (answer, mut send) = sender.send_request(tunnel_request(), false).unwrap();
        send_all(&mut send, Bytes::from_static(b"warm-up")).await.unwrap();
        assert_eq!(got_rx.recv().await.unwrap(), Bytes::from_static(b"warm-up"));
        answer.await.unwrap();

        let mut sender = sender.ready().await.unwrap();
        let before = writes.load(Ordering::Relaxed);
        let (_answer, mut send) = sender.send_request(tunnel_request(), false).unwrap();
        let first = Bytes::from(vec![7u8; 1024]);
        send_chunk(&mut send, first.clone(), true).await.unwrap();
        assert_eq!(got_rx.recv().await.unwrap(), first, "the first chunk arrives intact");
        assert_eq!(writes.load(Ordering::Relaxed) - before, 1, "HEADERS and the first chunk leave in one write");
    }
}
