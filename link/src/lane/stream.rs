//! One lane stream's handle: the answer to the request it opened (or the answer it gives), bytes
//! sent before that answer, and the splice with the local socket that carries the tunnel.

use std::cell::RefCell;
use std::future::poll_fn;
use std::net::Shutdown;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::conn::Shared;
use super::status::{Answered, LaneError, OK};
use crate::pump::{TapDirection, TapSender, abort_socket};
use crate::tuning::READ_CHUNK;

thread_local! {
    /// Where a tunnel's socket is read: its bytes are sealed into the lane's output before the read
    /// returns, so one buffer per thread serves every tunnel (a tunnel keeps none of its own).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A stream of a lane. Dropped before both ends finished, it resets the stream (RST_STREAM).
pub struct LaneStream {
    shared: Arc<Shared>,
    id: u32,
}

/// One read of a tunnel's socket.
enum Step {
    Eof,
    Again,
    Sent(usize),
    /// Read `0` bytes, of which the lane took all but the rest (windows or output full).
    Rest(usize, Vec<u8>),
}

impl LaneStream {
    pub(super) fn new(shared: Arc<Shared>, id: u32) -> LaneStream {
        LaneStream { shared, id }
    }

    /// How the peer answered the stream's request.
    pub async fn answer(&self) -> Result<Answered, LaneError> {
        poll_fn(|cx| self.shared.lock().poll_answer(self.id, cx)).await
    }

    /// Accepts the stream's request (status 200): the tunnel is spliced next.
    pub fn accept(&self) -> Result<(), LaneError> {
        self.shared.lock().respond(self.id, OK, None)
    }

    /// Refuses the stream's request with `status`, saying why; the stream ends there.
    pub fn refuse(&self, status: u16, reason: &str) -> Result<(), LaneError> {
        self.shared.lock().respond(self.id, status, Some(reason))
    }

    /// Sends `data` (then END_STREAM when `end`), waiting for the windows as needed.
    pub async fn send(&self, data: &[u8], end: bool) -> Result<(), LaneError> {
        let mut sent = 0;
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            sent += state.send(self.id, &data[sent..], end, Some(cx))?;
            if sent == data.len() && (!end || state.sent_end(self.id)) {
                std::task::Poll::Ready(Ok(()))
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// Carries the tunnel between the stream and `socket` until both directions ended (each EOF
    /// forwarded as a half-close), offering every chunk to `tap` if any (from the stream: towards
    /// the service; from the socket: towards the client). On failure, or when `stop` fires, the
    /// socket is closed with a TCP RST and the stream reset. Returns the bytes moved (socket ->
    /// stream, stream -> socket).
    pub async fn splice(
        self,
        socket: TcpStream,
        tap: Option<Arc<TapSender>>,
        stop: Option<&CancellationToken>,
    ) -> Result<(u64, u64), LaneError> {
        let socket = Arc::new(socket);
        self.shared.lock().attach(self.id, socket.clone(), tap.clone());
        let inbound = async {
            let received = poll_fn(|cx| self.shared.lock().poll_inbound(self.id, cx)).await?;
            socket2::SockRef::from(&*socket).shutdown(Shutdown::Write).map_err(local)?;
            Ok(received)
        };
        let both = async { tokio::try_join!(self.outbound(&socket, tap.as_deref()), inbound) };
        let result = match stop {
            Some(stop) => tokio::select! {
                result = both => result,
                _ = stop.cancelled() => Err(LaneError::Stopped),
            },
            None => both.await,
        };
        if result.is_err() {
            abort_socket(&socket);
        }
        result
    }

    /// Reads the socket into the stream until EOF, then ends the stream.
    async fn outbound(&self, socket: &TcpStream, tap: Option<&TapSender>) -> Result<u64, LaneError> {
        let mut total = 0u64;
        loop {
            socket.readable().await.map_err(local)?;
            match SCRATCH.with_borrow_mut(|scratch| self.read_once(socket, scratch, tap))? {
                Step::Eof => break,
                Step::Again => {}
                Step::Sent(n) => total += n as u64,
                Step::Rest(n, rest) => {
                    total += n as u64;
                    self.send(&rest, false).await?;
                }
            }
        }
        self.send(&[], true).await?;
        Ok(total)
    }

    fn read_once(&self, socket: &TcpStream, scratch: &mut Vec<u8>, tap: Option<&TapSender>) -> Result<Step, LaneError> {
        if scratch.len() < READ_CHUNK {
            scratch.resize(READ_CHUNK, 0);
        }
        match socket.try_read(&mut scratch[..READ_CHUNK]) {
            Ok(0) => Ok(Step::Eof),
            Ok(n) => {
                if n < READ_CHUNK {
                    // A short read emptied the socket: forget its readiness (as tokio's own
                    // `poll_read` does), so the next loop waits instead of reading in vain.
                    let _ = socket
                        .try_io(tokio::io::Interest::READABLE, || Err::<(), _>(std::io::ErrorKind::WouldBlock.into()));
                }
                let chunk = &scratch[..n];
                if let Some(tap) = tap {
                    tap.offer(TapDirection::ToClient, &Bytes::copy_from_slice(chunk));
                }
                let sent = self.shared.lock().send(self.id, chunk, false, None)?;
                Ok(if sent == n { Step::Sent(n) } else { Step::Rest(n, chunk[sent..].to_vec()) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Step::Again),
            Err(e) => Err(local(e)),
        }
    }
}

fn local(e: std::io::Error) -> LaneError {
    LaneError::Local(e.kind())
}

impl Drop for LaneStream {
    fn drop(&mut self) {
        self.shared.lock().forget(self.id);
    }
}
