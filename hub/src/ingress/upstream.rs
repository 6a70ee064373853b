//! The ingress's HTTP/1.1 client to services: a pooled hyper client whose "connections" are tunnel
//! streams opened on the owning agent's reverse link. The pool key (URI authority) names the
//! workspace, the link's owner and the service, so kept-alive upstream connections are reused
//! across client requests, and never across owners: a link reaches only its owner's service.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pconnect_proto::control::{ErrorBody, ErrorCode};

use crate::conn::reverse;
use crate::state::Hub;
use crate::store::{MemberId, WorkspaceId};
use pconnect_link::h2io::H2Io;

/// Suffix of pool-key authorities; never resolved, only parsed back by the connector.
const TUNNEL_HOST_SUFFIX: &str = ".tunnel.pconnect";

pub(crate) type Upstream = Client<TunnelConnector, Incoming>;

/// The pooled client.
pub(crate) fn client(hub: Arc<Hub>) -> Upstream {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .set_host(false)
        .http1_preserve_header_case(true)
        .build(TunnelConnector { hub })
}

/// The URI authority that makes the pool (and the connector) pick `owner`'s `service` of
/// `workspace`.
pub(crate) fn authority(workspace: WorkspaceId, owner: MemberId, service: &str) -> String {
    format!("w{workspace}.o{owner}.{service}{TUNNEL_HOST_SUFFIX}")
}

fn parse_authority(host: &str) -> Option<(WorkspaceId, MemberId, &str)> {
    let rest = host.strip_suffix(TUNNEL_HOST_SUFFIX)?.strip_prefix('w')?;
    let (workspace, rest) = rest.split_once('.')?;
    let (owner, service) = rest.strip_prefix('o')?.split_once('.')?;
    Some((workspace.parse().ok()?, owner.parse().ok()?, service))
}

/// Opens a tunnel stream to the service an authority names.
#[derive(Clone)]
pub(crate) struct TunnelConnector {
    hub: Arc<Hub>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for TunnelConnector {
    type Response = TokioIo<TunnelIo>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let hub = self.hub.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let (workspace, owner, service) = parse_authority(host).ok_or("bad upstream authority")?;
            let conn = hub.routes.pick_owned(workspace, service, owner).ok_or_else(|| {
                ErrorBody::new(ErrorCode::Offline, format!("the agent serving '{service}' is not connected"))
            })?;
            let (recv, send) = reverse::open_tunnel(&conn, service).await?;
            Ok(TokioIo::new(TunnelIo(H2Io::new(recv, send))))
        })
    }
}

/// A tunnel stream as one of the pooled client's connections.
pub(crate) struct TunnelIo(H2Io);

impl tokio::io::AsyncRead for TunnelIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TunnelIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl hyper_util::client::legacy::connect::Connection for TunnelIo {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// The hub error behind a failed upstream request, if the connector produced one.
pub(crate) fn cause(error: &hyper_util::client::legacy::Error) -> Option<ErrorBody> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(body) = e.downcast_ref::<ErrorBody>() {
            return Some(body.clone());
        }
        source = e.source();
    }
    None
}

/// Whether a failed upstream request failed because the client's own request body was
/// malformed (a bad chunk size, a body cut short): that is the client's error (400), not the
/// service's (502).
pub(crate) fn client_body_failed(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_user()
            && h.source().is_some_and(|inner| inner.downcast_ref::<hyper::Error>().is_some())
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_round_trip() {
        let a = authority(7, 42, "my-app");
        assert_eq!(parse_authority(&a), Some((7, 42, "my-app")));
        assert_eq!(parse_authority("example.com"), None);
    }
}
