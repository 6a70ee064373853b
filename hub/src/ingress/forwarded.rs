//! What a request carries from the ingress to the service: who the client is (`X-Forwarded-For`,
//! `X-Real-IP`, `Forwarded`, set by the hub and never taken from an untrusted client), no hop-by-hop
//! headers, and an upgrade only when it is a WebSocket one (anything else, `h2c` above all, would
//! let the client speak past the link's policies once the service switched protocols).

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use pconnect_proto::link::Cidr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers that describe the client's connection: set by the hub, dropped when a client sends them.
const CLIENT_HEADERS: [HeaderName; 5] =
    [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, X_REAL_IP, header::FORWARDED];
/// Hop-by-hop headers (RFC 9110 7.6.1 and common non-standard ones): never forwarded. Names, not
/// strings, so removing them parses nothing per request.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
    header::PROXY_AUTHORIZATION,
];

/// The address a request comes from: the peer, or, when the peer is a proxy the hub was told to
/// trust, the last address in its `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| item.trim().parse().ok())
        .collect();
    chain.push(peer);
    chain.into_iter().rev().find(|ip| !is_trusted(*ip)).unwrap_or(peer)
}

/// Whether a request asks for a WebSocket upgrade (the only one forwarded).
pub(crate) fn wants_websocket<B>(req: &Request<B>) -> bool {
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let connection_upgrade = tokens(req.headers(), header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"));
    connection_upgrade && upgrade.trim().eq_ignore_ascii_case("websocket")
}

/// Whether a service's 101 answer switches to WebSocket.
pub(crate) fn switches_to_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Rewrites a request's headers for the service: hop-by-hop ones out (with every header the
/// `Connection` header names), the hub's own client headers in. A WebSocket upgrade keeps exactly
/// `Connection: upgrade` and `Upgrade: websocket`; any other upgrade is dropped, so the service
/// answers the request as it is.
pub(crate) fn prepare(headers: &mut HeaderMap, websocket: bool, forwarded: &Forwarded<'_>, trusted_peer: bool) {
    let named: Vec<HeaderName> =
        tokens(headers, header::CONNECTION).filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()).collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    let previous_for: Vec<String> = if trusted_peer {
        headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    } else {
        Vec::new()
    };
    for name in &CLIENT_HEADERS {
        headers.remove(name);
    }
    forwarded.apply(headers, &previous_for);
}

/// The hub's own view of the client, written into every forwarded request.
pub(crate) struct Forwarded<'a> {
    /// The direct peer of the ingress.
    pub(crate) peer: IpAddr,
    /// The client as resolved by [`client_ip`].
    pub(crate) client: IpAddr,
    pub(crate) https: bool,
    pub(crate) host: &'a str,
}

impl Forwarded<'_> {
    fn apply(&self, headers: &mut HeaderMap, previous_for: &[String]) {
        let proto = if self.https { "https" } else { "http" };
        let peer = self.peer.to_string();
        let client = if self.client == self.peer { peer.clone() } else { self.client.to_string() };
        let forwarded_for = match previous_for {
            [] => peer,
            _ => format!("{}, {peer}", previous_for.join(", ")),
        };
        set(headers, X_FORWARDED_FOR, &forwarded_for);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        set(headers, X_FORWARDED_HOST, self.host);
        let host = self.host.replace(['"', '\\'], "");
        let forwarded = match self.client {
            IpAddr::V4(_) => format!("for={client};host=\"{host}\";proto={proto}"),
            IpAddr::V6(_) => format!("for=\"[{client}]\";host=\"{host}\";proto={proto}"),
        };
        set(headers, header::FORWARDED, &forwarded);
        set(headers, X_REAL_IP, &client);
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The comma-separated tokens of every `name` header.
fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri("/");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap()
    }

    fn forwarded(peer: [u8; 4]) -> Forwarded<'static> {
        Forwarded { peer: IpAddr::from(peer), client: IpAddr::from(peer), https: true, host: "abc123.example.com" }
    }

    #[test]
    fn client_copies_of_forwarding_headers_are_replaced() {
        let mut req = request(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "gopher"),
        ]);
        prepare(req.headers_mut(), false, &forwarded([203, 0, 113, 9]), false);
        let h = req.headers();
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        assert_eq!(h["x-forwarded-host"], "abc123.example.com");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=203.0.113.9;host=\"abc123.example.com\";proto=https");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn an_ipv6_client_is_bracketed_and_quoted_in_forwarded_only() {
        let client: IpAddr = "2001:db8::1".parse().unwrap();
        let mut req = request(&[]);
        prepare(req.headers_mut(), false, &Forwarded { peer: client, client, https: false, host: "h" }, false);
        let h = req.headers();
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";host=\"h\";proto=http");
        assert_eq!(h["x-real-ip"], "2001:db8::1");
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
    }

    #[test]
    fn a_trusted_proxy_chain_is_kept_and_its_client_used() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = [10, 1, 2, 3].into();
        let headers = request(&[("x-forwarded-for", "198.51.100.7, 10.9.9.9")]).headers().clone();
        assert_eq!(client_ip(peer, &headers, &trusted), IpAddr::from([198, 51, 100, 7]));
        // An untrusted peer's header means nothing.
        assert_eq!(client_ip([203, 0, 113, 1].into(), &headers, &trusted), IpAddr::from([203, 0, 113, 1]));
        let mut req = request(&[("x-forwarded-for", "198.51.100.7")]);
        let fwd = Forwarded { peer, client: [198, 51, 100, 7].into(), https: false, host: "h" };
        prepare(req.headers_mut(), false, &fwd, true);
        assert_eq!(req.headers()["x-forwarded-for"], "198.51.100.7, 10.1.2.3");
        assert_eq!(req.headers()["x-real-ip"], "198.51.100.7");
    }

    #[test]
    fn only_websocket_upgrades_survive() {
        let h2c = request(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQ"),
        ]);
        assert!(!wants_websocket(&h2c));
        let mut h2c = h2c;
        prepare(h2c.headers_mut(), false, &forwarded([127, 0, 0, 1]), false);
        for gone in ["connection", "upgrade", "http2-settings"] {
            assert!(!h2c.headers().contains_key(gone), "{gone} kept");
        }
        let ws =
            request(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket"), ("sec-websocket-key", "k")]);
        assert!(wants_websocket(&ws));
        let mut ws = ws;
        prepare(ws.headers_mut(), true, &forwarded([127, 0, 0, 1]), false);
        assert_eq!(ws.headers()["connection"], "upgrade");
        assert_eq!(ws.headers()["upgrade"], "websocket");
        assert_eq!(ws.headers()["sec-websocket-key"], "k");
        // `Connection: x-secret` removes x-secret too.
        let mut named = request(&[("connection", "x-secret"), ("x-secret", "1")]);
        prepare(named.headers_mut(), false, &forwarded([127, 0, 0, 1]), false);
        assert!(!named.headers().contains_key("x-secret"));
    }
}
