//! The way out to a model over HTTPS: straight, or through the HTTP proxy `HTTPS_PROXY` names
//! (an HTTP/1.1 `CONNECT` tunnel, the convention curl and every SDK follow), unless `NO_PROXY`
//! lists the host.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest proxy answer head read before giving up.
const MAX_HEAD: usize = 8 * 1024;

/// A TCP connection to `host:port`, through the proxy when one applies to an HTTPS endpoint.
pub(crate) async fn dial(host: &str, port: u16, https: bool) -> Result<TcpStream, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let proxy = https.then(|| env("HTTPS_PROXY").or_else(|| env("https_proxy"))).flatten();
    let no_proxy = env("NO_PROXY").or_else(|| env("no_proxy")).unwrap_or_default();
    match proxy.filter(|_| !bypassed(host, &no_proxy)) {
        Some(proxy) => through(&proxy, host, port).await,
        None => TcpStream::connect((host, port)).await.map_err(|e| format!("could not reach {host}:{port}: {e}")),
    }
}

/// Whether `NO_PROXY` (comma-separated hosts or domain suffixes, `*` for all) covers `host`.
fn bypassed(host: &str, no_proxy: &str) -> bool {
    no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        let entry = entry.trim_start_matches('.').to_ascii_lowercase();
        let host = host.to_ascii_lowercase();
        entry == "*" || host == entry || host.ends_with(&format!(".{entry}"))
    })
}

/// Opens a `CONNECT host:port` tunnel through the proxy at `proxy` (`http://host:port`).
async fn through(proxy: &str, host: &str, port: u16) -> Result<TcpStream, String> {
    let authority = proxy.trim_start_matches("http://").trim_end_matches('/');
    if proxy.starts_with("https://") || authority.contains('@') {
        return Err(format!("HTTPS_PROXY={proxy}: only a plain http:// proxy without credentials is supported"));
    }
    let mut tcp =
        TcpStream::connect(authority).await.map_err(|e| format!("could not reach the proxy {authority}: {e}"))?;
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| format!("proxy {authority}: {e}"))?;
    // Read the answer head byte by byte: nothing after it may be consumed (TLS starts there).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(format!("proxy {authority} sent an answer head over {MAX_HEAD} bytes"));
        }
        let byte = tcp.read_u8().await.map_err(|e| format!("proxy {authority} closed the tunnel: {e}"))?;
        head.push(byte);
    }
    let status = String::from_utf8_lossy(&head);
    let status = status.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(tcp),
        _ => Err(format!("proxy {authority} refused the tunnel to {target}: {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn no_proxy_matches_hosts_and_domain_suffixes() {
        assert!(bypassed("api.openai.com", "localhost, .openai.com"));
        assert!(bypassed("openai.com", "openai.com"));
        assert!(bypassed("anything", "*"));
        assert!(!bypassed("notopenai.com", "openai.com"));
        assert!(!bypassed("api.openai.com", ""));
    }

    /// A proxy that answers `answer` to the CONNECT, then echoes what follows.
    async fn fake_proxy(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(socket.read_u8().await.unwrap());
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            let mut buf = [0u8; 5];
            if socket.read_exact(&mut buf).await.is_ok() {
                socket.write_all(&buf).await.unwrap();
            }
            String::from_utf8(head).unwrap()
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn a_connect_tunnel_carries_the_bytes_after_a_200() {
        let (proxy, seen) = fake_proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;
        let mut tcp = through(&proxy, "api.example.com", 443).await.unwrap();
        tcp.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        tcp.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        assert!(seen.await.unwrap().starts_with("CONNECT api.example.com:443 HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn a_refused_tunnel_says_what_the_proxy_answered() {
        let (proxy, _) = fake_proxy("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let error = through(&proxy, "api.example.com", 443).await.unwrap_err();
        assert!(error.contains("407"), "{error}");
    }
}
