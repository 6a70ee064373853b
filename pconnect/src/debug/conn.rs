//! A dedicated forward connection for debug streams (the capture uplink, `connect debug tail`):
//! capture traffic never shares a TCP connection, nor its flow-control window, with tunnels.

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{Method, Request, StatusCode};
use pconnect_link::{h2io, heartbeat, pump, tuning};
use pconnect_proto::handshake::{Hello, Role};
use pconnect_proto::wire::{LINK_AUTHORITY, PROTOCOL_VERSION, READY_PATH};
use tokio::task::JoinHandle;

use crate::link::LinkError;
use crate::link::dial::{Credentials, dial};

/// One forward connection driven in the background; dropping it closes the connection.
pub(crate) struct DebugConn {
    sender: SendRequest<Bytes>,
    driver: JoinHandle<()>,
}

impl Drop for DebugConn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl DebugConn {
    /// Dials the hub (forward role), runs the HTTP/2 handshake and the protocol barrier.
    pub(crate) async fn open(creds: &Credentials, session: &str) -> anyhow::Result<Self> {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Forward,
            token: creds.token.clone(),
            session: session.to_string(),
            services: Vec::new(),
            direct: Vec::new(),
        };
        let (stream, _) = dial(creds, &hello).await?;
        let (sender, mut conn) = tuning::client_builder().handshake::<_, Bytes>(stream).await?;
        let heartbeat = heartbeat::until_dead(conn.ping_pong().expect("ping_pong is taken once"));
        let driver = tokio::spawn(async move {
            tokio::select! {
                result = &mut conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "debug connection ended");
                    }
                }
                reason = heartbeat => tracing::debug!(%reason, "debug connection is dead"),
            }
        });
        let conn = Self { sender, driver };
        let (status, _) = conn.request(Method::GET, READY_PATH, true).await?;
        anyhow::ensure!(status == StatusCode::OK, "the hub answered the barrier with {status}");
        Ok(conn)
    }

    /// Opens a request stream; returns the response status and its body stream, plus the send half
    /// when `end` is false.
    async fn request(
        &self,
        method: Method,
        path: &str,
        end: bool,
    ) -> Result<(StatusCode, (RecvStream, Option<SendStream<Bytes>>)), LinkError> {
        let mut sender = self.sender.clone().ready().await?;
        let request = Request::builder()
            .method(method)
            .uri(format!("https://{LINK_AUTHORITY}{path}"))
            .header("content-type", "application/x-ndjson")
            .body(())
            .expect("static request");
        let (response, send) = sender.send_request(request, end)?;
        let response = response.await?;
        let status = response.status();
        Ok((status, (response.into_body(), (!end).then_some(send))))
    }

    /// A long-lived upload: `POST path` whose body the caller streams. Fails with the hub's error
    /// when it refuses (e.g. an unknown session).
    pub(crate) async fn upload(&self, path: &str) -> Result<(SendStream<Bytes>, RecvStream), LinkError> {
        let (status, (body, send)) = self.request(Method::POST, path, false).await?;
        if !status.is_success() {
            return Err(LinkError::Hub(h2io::read_error(body, status, "the hub").await));
        }
        Ok((send.expect("requested with a body"), body))
    }

    /// A long-lived download: `GET path` whose reply body the hub streams.
    pub(crate) async fn download(&self, path: &str) -> Result<RecvStream, LinkError> {
        let (status, (body, _)) = self.request(Method::GET, path, true).await?;
        if !status.is_success() {
            return Err(LinkError::Hub(h2io::read_error(body, status, "the hub").await));
        }
        Ok(body)
    }
}

/// Sends `data` with flow control.
pub(crate) async fn send(stream: &mut SendStream<Bytes>, data: Bytes) -> Result<(), LinkError> {
    pump::send_all(stream, data).await.map_err(|e| match e {
        pump::PumpError::H2(e) => LinkError::Stream(e),
        other => LinkError::Down(other.to_string()),
    })
}

/// Reads newline-delimited lines from a body stream, releasing flow control as it goes.
pub(crate) struct Lines {
    body: RecvStream,
    buf: Vec<u8>,
}

/// Longest line accepted from the hub.
const LINE_CAP: usize = 4 * 1024 * 1024;

impl Lines {
    pub(crate) fn new(body: RecvStream) -> Self {
        Self { body, buf: Vec::new() }
    }

    /// The next line (without its newline); `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<u8>>, LinkError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                return Ok(Some(line));
            }
            match self.body.data().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.buf.extend_from_slice(&chunk);
                    if self.buf.len() > LINE_CAP {
                        return Err(LinkError::Decode("a line from the hub is too long".into()));
                    }
                }
                None if self.buf.is_empty() => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.buf))),
            }
        }
    }
}
