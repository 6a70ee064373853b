//! Connections from this replica to its peers: one HTTP/2 link per peer (mutual TLS with the
//! cluster credential), dialed when first needed and kept while it lives; every forwarded tunnel
//! or request to that peer is a stream on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use pconnect_link::barrier::{self, ClientLink};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::credential::PEER_NAME;
use crate::sync::lock;

/// How long dialing a peer (TCP, TLS, HTTP/2 barrier) may take: replicas share a private network.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer that could not be dialed is not tried again for this long (a dead replica's routes
/// outlive it until its lease expires; requests go to the other holders meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(3);

/// Live links to peers, by replica id.
pub(crate) struct PeerPool {
    tls: Arc<ClientConfig>,
    links: Mutex<HashMap<String, SendRequest<Bytes>>>,
    /// When dialing a replica last failed.
    failed: Mutex<HashMap<String, Instant>>,
    /// Ends every link (hub shutdown).
    shutdown: CancellationToken,
}

impl PeerPool {
    pub(crate) fn new(tls: Arc<ClientConfig>, shutdown: CancellationToken) -> PeerPool {
        PeerPool { tls, links: Mutex::default(), failed: Mutex::default(), shutdown }
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
        if lock(&self.failed).get(replica).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            anyhow::bail!("replica {replica} at {addr} was unreachable moments ago");
        }
        let dialed = tokio::time::timeout(DIAL_TIMEOUT, self.dial(replica, addr)).await.unwrap_or_else(|_| {
            Err(anyhow::anyhow!("replica {replica} at {addr} did not answer within {DIAL_TIMEOUT:?}"))
        });
        match dialed {
            Ok(sender) => {
                lock(&self.failed).remove(replica);
                lock(&self.links).insert(replica.to_string(), sender.clone());
                Ok(sender)
            }
            Err(e) => {
                lock(&self.failed).insert(replica.to_string(), Instant::now());
                Err(e)
            }
        }
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
        let tls = pconnect_link::sealed::connect(self.tls.clone(), name, tcp).await?;
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
