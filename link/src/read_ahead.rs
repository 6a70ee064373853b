//! [`ReadAhead`]: one large socket read under TLS, served to rustls in the small pieces it asks for.
//!
//! rustls reads the socket in steps of at most 4 KiB (its deframer grows by that much per read), so
//! a 16 KiB record costs four `recvfrom` calls and a bulk transfer spends more time entering the
//! kernel than copying. Once a read fills the caller's buffer (more is waiting), this adapter reads
//! up to [`READ_AHEAD`] bytes at once and hands them out from memory, until a read comes back short
//! and is drained: then the buffer goes back to the allocator. Small exchanges never take one, and
//! an idle link (the common case on a hub with thousands of agents) keeps none.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes one socket read may bring in: four 16 KiB TLS records and their headers.
pub const READ_AHEAD: usize = 4 * (16 * 1024 + 256);

/// Reads ahead of its caller while the peer is streaming; writes go straight through.
#[derive(Debug)]
pub struct ReadAhead<T> {
    inner: T,
    /// Present while streaming; bytes read and not yet handed out are `buf[start..end]`.
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// The last read-ahead came back short of the buffer: the socket was drained.
    drained: bool,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> ReadAhead<T> {
        ReadAhead { inner, buf: None, start: 0, end: 0, drained: false }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Hands out up to `out.remaining()` buffered bytes; lets the buffer go once a short read-ahead
    /// is drained.
    fn serve(&mut self, out: &mut ReadBuf<'_>) {
        let Some(buf) = self.buf.as_deref() else { return };
        let n = out.remaining().min(self.end - self.start);
        out.put_slice(&buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.end && self.drained {
            self.buf = None;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            this.serve(out);
            return Poll::Ready(Ok(()));
        }
        let Some(buf) = this.buf.as_deref_mut() else {
            // Not streaming: read straight into the caller's buffer; a read that fills it says
            // more is waiting, so the next one reads ahead.
            let wanted = out.remaining();
            ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
            if wanted > 0 && out.remaining() == 0 && wanted < READ_AHEAD {
                this.buf = Some(vec![0u8; READ_AHEAD].into_boxed_slice());
            }
            return Poll::Ready(Ok(()));
        };
        let mut ahead = ReadBuf::new(buf);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
        let n = ahead.filled().len();
        (this.start, this.end, this.drained) = (0, n, n < READ_AHEAD);
        if n == 0 {
            this.buf = None;
            return Poll::Ready(Ok(()));
        }
        this.serve(out);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    #[tokio::test]
    async fn small_reads_see_every_byte_in_order_and_the_buffer_goes_when_drained() {
        let (mut writer, reader) = duplex(1 << 20);
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        writer.write_all(&sent).await.unwrap();
        drop(writer);
        let mut reader = ReadAhead::new(reader);
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        assert_eq!(reader.read(&mut piece).await.unwrap(), 4096);
        got.extend_from_slice(&piece);
        assert!(reader.buf.is_some(), "a full read did not switch to reading ahead");
        loop {
            let n = reader.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, sent);
        assert!(reader.buf.is_none(), "the buffer is kept after the stream ended");
    }

    #[tokio::test]
    async fn a_large_read_goes_straight_to_the_caller_and_writes_pass_through() {
        let (mut near, far) = duplex(1 << 20);
        let mut far = ReadAhead::new(far);
        near.write_all(b"ping").await.unwrap();
        let mut big = vec![0u8; READ_AHEAD];
        let n = far.read(&mut big).await.unwrap();
        assert_eq!(&big[..n], b"ping");
        assert!(far.buf.is_none());
        far.write_all(b"pong").await.unwrap();
        let mut back = [0u8; 4];
        near.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong");
    }
}
