//! Connections from this replica to its peers: one HTTP/2 link per peer (mutual TLS with the
//! cluster credential), dialed when first needed and kept while it lives; every forwarded tunnel
//! or request to that peer is a stream on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use h2::client::SendRequest;
use pconnect_link::barrier::{self, ClientLink};
use pconnect_link::read_ahead::ReadAhead;
use pconnect_link::tuning::HANDSHAKE_TIMEOUT;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::credential::PEER_NAME;
use crate::sync::lock;

/// Live links to peers, by replica id.
pub(crate) struct PeerPool {
    tls: TlsConnector,
    links: Mutex<HashMap<String, SendRequest<Bytes>>>,
    /// Ends every link (hub shutdown).
    shutdown: CancellationToken,
}

impl PeerPool {
    pub(crate) fn new(tls: Arc<ClientConfig>, shutdown: CancellationToken) -> PeerPool {
        PeerPool { tls: TlsConnector::from(tls), links: Mutex::default(), shutdown }
    }

    /// A ready link to `replica` at `addr`: the live one, or a new one.
    pub(crate) async fn link(self: &Arc<Self>, replica: &str, addr: &str) -> anyhow::Result<SendRequest<Bytes>> {
        let live = lock(&self.links).get(replica).cloned();
        if let Some(sender) = live {
            match sender.ready().await {
                Ok(sender) => return Ok(sender),
                Err(_) => self.forget(replica),
            }
        }
        let sender = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.dial(replica, addr)).await.map_err(|_| {
            anyhow::anyhow!("replica {replica} at {addr} did not answer within {HANDSHAKE_TIMEOUT:?}")
        })??;
        lock(&self.links).insert(replica.to_string(), sender.clone());
        Ok(sender)
    }

    /// Ends every link.
    pub(crate) fn close(&self) {
        self.shutdown.cancel();
        lock(&self.links).clear();
    }

    fn forget(&self, replica: &str) {
        lock(&self.links).remove(replica);
    }

    async fn dial(self: &Arc<Self>, replica: &str, addr: &str) -> anyhow::Result<SendRequest<Bytes>> {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(PEER_NAME).expect("a valid DNS name");
        let tls = self.tls.connect(name, ReadAhead::new(tcp)).await?;
        let cancel = self.shutdown.child_token();
        let Some(ClientLink { sender, conn, heartbeat }) = barrier::open_client(tls, true, &cancel).await? else {
            anyhow::bail!("the hub is shutting down");
        };
        let pool = self.clone();
        let replica = replica.to_string();
        tokio::spawn(async move {
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(%replica, error = %e, "peer link ended");
                },
                reason = heartbeat => tracing::warn!(%replica, %reason, "peer link is dead"),
                _ = cancel.cancelled() => {}
            }
            pool.forget(&replica);
        });
        Ok(sender)
    }
}
