//! A lane's handle and its driver: opening a lane over a sealed TLS stream (either side), opening
//! and accepting streams, pings (the heartbeat's too), closing.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpStream;

use super::conn::{Shared, State};
use super::status::LaneError;
use super::stream::LaneStream;
use crate::heartbeat::Pinged;
use crate::sealed::Sealed;

/// A lane's handle. Cloning shares the lane.
#[derive(Clone)]
pub struct Lane {
    shared: Arc<Shared>,
}

/// Reads, delivers and writes for a lane while polled; ready when the lane ended (`Ok` for a
/// close by either side). Dropping it ends the lane.
pub struct Driver {
    shared: Arc<Shared>,
}

impl Future for Driver {
    type Output = Result<(), LaneError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.shared.lock().poll_drive(cx)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.shared.lock().close();
    }
}

/// Opens a lane as the client (the side that opens streams): the preface and SETTINGS go out, and
/// the lane is ready once the server's SETTINGS arrived (extended CONNECT among them).
pub async fn client(io: Sealed<TcpStream>) -> Result<(Lane, Driver), LaneError> {
    start(io, true).await
}

/// Opens a lane as the server (the side that accepts streams), once the client's preface and
/// SETTINGS arrived.
pub async fn server(io: Sealed<TcpStream>) -> Result<(Lane, Driver), LaneError> {
    start(io, false).await
}

async fn start(io: Sealed<TcpStream>, client: bool) -> Result<(Lane, Driver), LaneError> {
    let shared = Shared::new(State::new(io, client)?);
    let mut driver = Driver { shared: shared.clone() };
    poll_fn(|cx| match Pin::new(&mut driver).poll(cx) {
        Poll::Ready(ended) => Poll::Ready(Err(ended.err().unwrap_or(LaneError::Closed))),
        Poll::Pending if shared.lock().settings_seen => Poll::Ready(Ok(())),
        Poll::Pending => Poll::Pending,
    })
    .await?;
    Ok((Lane { shared }, driver))
}

/// A request the peer opened: its fields, and the stream to answer it on.
pub struct Request {
    fields: Vec<(String, String)>,
    stream: LaneStream,
}

impl Request {
    /// The value of field `name` (lowercase; pseudo-fields with their colon).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn method(&self) -> &str {
        self.field(":method").unwrap_or_default()
    }

    pub fn path(&self) -> &str {
        self.field(":path").unwrap_or_default()
    }

    /// The extended CONNECT protocol (RFC 8441), if any.
    pub fn protocol(&self) -> Option<&str> {
        self.field(":protocol")
    }

    pub fn into_stream(self) -> LaneStream {
        self.stream
    }
}

impl Lane {
    /// Opens a stream whose request is `fields` (pseudo-fields first).
    pub fn open(&self, fields: &[(&str, &str)]) -> Result<LaneStream, LaneError> {
        let id = self.shared.lock().open(fields)?;
        Ok(LaneStream::new(self.shared.clone(), id))
    }

    /// The next request the peer opened; `None` once the lane ended.
    pub async fn accept(&self) -> Option<Request> {
        let opened = poll_fn(|cx| self.shared.lock().poll_accept(cx)).await?;
        Some(Request { fields: opened.fields, stream: LaneStream::new(self.shared.clone(), opened.id) })
    }

    /// A PING the peer answered.
    pub async fn ping(&self) -> Result<(), LaneError> {
        let mut target = None;
        poll_fn(|cx| self.shared.lock().poll_ping(&mut target, cx)).await
    }

    /// Closes the lane (GOAWAY, then TLS close_notify); its streams fail.
    pub fn close(&self) {
        self.shared.lock().close();
    }

    /// Whether the lane ended.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().ended().is_some()
    }
}

/// A lane's heartbeat is the links' ([`crate::heartbeat::until_dead`]).
impl Pinged for Lane {
    async fn ping(&mut self) -> Result<(), String> {
        Lane::ping(self).await.map_err(|e| e.to_string())
    }
}
