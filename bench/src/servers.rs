//! The in-process targets on 127.0.0.1:0: an echo server and a byte-counting sink.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Addresses of the running targets; the accept loops stop when this drops.
pub(crate) struct Servers {
    pub(crate) echo: SocketAddr,
    pub(crate) sink: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts both servers.
pub(crate) async fn start() -> Result<Servers> {
    let echo_listener = TcpListener::bind("127.0.0.1:0").await?;
    let sink_listener = TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo_listener.local_addr()?;
    let sink_addr = sink_listener.local_addr()?;
    let tasks = vec![tokio::spawn(serve(echo_listener, echo)), tokio::spawn(serve(sink_listener, sink))];
    Ok(Servers { echo: echo_addr, sink: sink_addr, tasks })
}

async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Connection errors (resets by the peer) only end that connection.
                let conn = handle(stream);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            // E.g. out of file descriptors: back off instead of spinning or stopping.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Writes back everything it reads; closes after the peer does.
async fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Reads until end of file, then writes the byte count (8 bytes, big-endian) and closes.
async fn sink(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    stream.write_all(&total.to_be_bytes()).await?;
    stream.shutdown().await
}
