//! The tunnel data path: moving bytes between HTTP/2 streams and TCP sockets.
//!
//! Contract: a stream either completes (each direction's EOF is forwarded as a half-close) or fails
//! visibly at both ends (HTTP/2 RST_STREAM on the stream side, TCP RST on the socket side). Never a
//! silent truncation. No per-byte work: DATA frames are forwarded as the `Bytes` they arrived in, and a
//! socket read becomes one frame without a copy.

use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};

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
}

/// Sends `data` on `send`, waiting for flow-control capacity so nothing piles up unbounded.
pub async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), PumpError> {
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
        send.send_data(chunk, false)?;
    }
    Ok(())
}

/// Forwards one direction between two HTTP/2 streams, frame by frame, then half-closes.
async fn stream_to_stream(mut from: RecvStream, mut to: SendStream<Bytes>) -> Result<u64, PumpError> {
    let mut total = 0u64;
    while let Some(chunk) = from.data().await {
        let chunk = chunk?;
        let len = chunk.len();
        total += len as u64;
        send_all(&mut to, chunk).await?;
        // Released only once the bytes are queued on the other stream: the far peer's window is
        // the backpressure.
        from.flow_control().release_capacity(len)?;
    }
    to.send_data(Bytes::new(), true)?;
    Ok(total)
}

/// Relays two HTTP/2 streams into each other (the hub's half of every tunnel). Returns the bytes
/// moved each way. On failure both streams are dropped, which resets them at both peers.
pub async fn relay(
    a: (RecvStream, SendStream<Bytes>),
    b: (RecvStream, SendStream<Bytes>),
) -> Result<(u64, u64), PumpError> {
    let (a_recv, a_send) = a;
    let (b_recv, b_send) = b;
    tokio::try_join!(stream_to_stream(a_recv, b_send), stream_to_stream(b_recv, a_send))
}

/// Reads the socket into the stream until EOF, then half-closes the stream.
async fn socket_to_stream(read: &mut ReadHalf<'_>, send: &mut SendStream<Bytes>) -> Result<u64, PumpError> {
    let mut total = 0u64;
    let mut buf = BytesMut::new();
    loop {
        // Allocate only once data is waiting, so idle tunnels hold no buffer.
        read.readable().await?;
        buf.reserve(READ_CHUNK);
        match read.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                send_all(send, buf.split().freeze()).await?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
    send.send_data(Bytes::new(), true)?;
    Ok(total)
}

/// Writes the stream into the socket until the stream ends, then half-closes the socket.
async fn stream_to_socket(recv: &mut RecvStream, write: &mut WriteHalf<'_>) -> Result<u64, PumpError> {
    let mut total = 0u64;
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let len = chunk.len();
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
pub async fn splice(
    mut socket: TcpStream,
    mut recv: RecvStream,
    mut send: SendStream<Bytes>,
) -> Result<(u64, u64), PumpError> {
    let result = {
        let (mut read, mut write) = socket.split();
        tokio::try_join!(socket_to_stream(&mut read, &mut send), stream_to_socket(&mut recv, &mut write))
    };
    if result.is_err() {
        abort_socket(&socket);
        send.send_reset(h2::Reason::CANCEL);
    }
    result
}

/// Makes the coming close of `socket` an RST instead of a FIN.
pub fn abort_socket(socket: &TcpStream) {
    let _ = socket.set_zero_linger();
}
