//! Async reading and writing of the handshake frames defined in `pconnect_proto::handshake`.

use pconnect_proto::handshake::{self, FrameError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a handshake frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    #[error("connection closed during the handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Writes one frame and flushes it.
pub async fn write_frame<W, T>(io: &mut W, value: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    io.write_all(&handshake::encode(value)).await?;
    io.flush().await
}

/// Reads exactly one frame. Bytes after it stay in `io` (HTTP/2 starts there).
pub async fn read_frame<R, T>(io: &mut R) -> Result<T, ReadFrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = handshake::frame_len(prefix)?;
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(handshake::decode(&body)?)
}
