//! Connecting to an exposed service's target for each tunnel. A target named by host name (the
//! default `localhost`) is resolved once, not on a blocking thread for every tunnel, and again
//! when none of its addresses answers (the service may have moved between IPv4 and IPv6); the
//! address that answered is tried first next time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;

use super::http_forward::TARGET_CONNECT_TIMEOUT;
use crate::target::Target;

/// Resolved addresses of the targets this agent serves, by service name.
#[derive(Default)]
pub(crate) struct TargetDialer {
    resolved: Mutex<HashMap<String, Arc<[SocketAddr]>>>,
}

impl TargetDialer {
    /// A connection to `service`'s `target` (no delay on small writes), or why there is none.
    pub(crate) async fn connect(&self, service: &str, target: &Target) -> Result<TcpStream, String> {
        match tokio::time::timeout(TARGET_CONNECT_TIMEOUT, self.dial(service, target)).await {
            Ok(Ok(socket)) => {
                let _ = socket.set_nodelay(true);
                Ok(socket)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", TARGET_CONNECT_TIMEOUT.as_secs())),
        }
    }

    async fn dial(&self, service: &str, target: &Target) -> std::io::Result<TcpStream> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return TcpStream::connect((ip, target.port)).await;
        }
        let known = self.lock().get(service).cloned();
        if let Some(addrs) = known
            && let Ok(socket) = self.first_answering(service, &addrs).await
        {
            return Ok(socket);
        }
        let addrs: Arc<[SocketAddr]> = tokio::net::lookup_host((target.host.as_str(), target.port)).await?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::other(format!("{} resolves to no address", target.host)));
        }
        self.lock().insert(service.to_string(), addrs.clone());
        self.first_answering(service, &addrs).await
    }

    /// Tries `addrs` in order; the one that answers goes first from now on.
    async fn first_answering(&self, service: &str, addrs: &Arc<[SocketAddr]>) -> std::io::Result<TcpStream> {
        let mut last = None;
        for (i, addr) in addrs.iter().enumerate() {
            match TcpStream::connect(addr).await {
                Ok(socket) => {
                    if i > 0 {
                        let mut reordered = addrs.to_vec();
                        reordered[..=i].rotate_right(1);
                        self.lock().insert(service.to_string(), Arc::from(reordered));
                    }
                    return Ok(socket);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<[SocketAddr]>>> {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> Target {
        Target { host: host.into(), port }
    }

    #[tokio::test]
    async fn a_name_is_resolved_once_and_the_answering_address_goes_first() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dialer = TargetDialer::default();
        // Only IPv4 listens: whatever order `localhost` resolves in, 127.0.0.1 answers.
        dialer.connect("web", &target("localhost", port)).await.unwrap();
        let first = dialer.lock().get("web").unwrap()[0];
        assert_eq!(first, SocketAddr::from(([127, 0, 0, 1], port)));
        dialer.connect("web", &target("localhost", port)).await.unwrap();
        drop(listener);
        // A port bound but not listening (held, so no other test takes it): every address of the
        // name is tried, the name looked up again, and the cause comes back.
        let held = tokio::net::TcpSocket::new_v4().unwrap();
        held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let closed = held.local_addr().unwrap().port();
        let refused = dialer.connect("db", &target("localhost", closed)).await.unwrap_err();
        assert!(refused.to_lowercase().contains("refused"), "{refused}");
        let unknown = dialer.connect("x", &target("no-such-host.invalid", port)).await.unwrap_err();
        assert!(!unknown.is_empty());
    }
}
