//! Host header normalisation: which link (if any) a request is for.

/// What a request's host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `<subdomain>.<domain>`: a public link.
    Link(String),
    /// The hub itself (its domain, an IP, `localhost`): health and hub pages.
    Hub,
    /// `app.<domain>`: the hub's own pages (debug session viewers). Never a link.
    App,
    /// Anything else: no link, no agent is contacted.
    Unknown,
}

/// The reserved label of the hub's own pages: `app.<domain>` is never a link subdomain.
pub(crate) const APP_LABEL: &str = "app";

/// The host a request names: its `Host` header, or the URI's authority (HTTP/2).
pub(crate) fn of_request<B>(req: &http::Request<B>) -> Option<String> {
    req.headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

/// Lowercases, drops the port and a trailing dot, and maps the host to a target under `domain`.
pub(crate) fn classify(host: &str, domain: &str) -> Target {
    let host = strip_port(host.trim()).trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host == domain || host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
        return Target::Hub;
    }
    match host.strip_suffix(domain).and_then(|rest| rest.strip_suffix('.')) {
        Some(APP_LABEL) => Target::App,
        Some(label) if is_label(label) => Target::Link(label.to_string()),
        _ => Target::Unknown,
    }
}

/// The host part of `host[:port]` (IPv6 in brackets kept whole).
pub(crate) fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a request for `host` arrived on a TLS connection made for another name (`sni`, lower
/// case): such a request goes back to the client (421), never to another link.
pub(crate) fn misdirected(host: &str, sni: &str) -> bool {
    strip_port(host.trim()).trim_end_matches('.').to_ascii_lowercase() != sni
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_links_and_nothing_else() {
        assert_eq!(classify("x7k9m2.localhost:7780", "localhost"), Target::Link("x7k9m2".into()));
        assert_eq!(classify("X7K9M2.Example.COM.", "example.com"), Target::Link("x7k9m2".into()));
        assert_eq!(classify("localhost:7780", "localhost"), Target::Hub);
        assert_eq!(classify("APP.localhost:7780", "localhost"), Target::App);
        assert_eq!(classify("127.0.0.1:7780", "localhost"), Target::Hub);
        assert_eq!(classify("[::1]:7780", "localhost"), Target::Hub);
        assert_eq!(classify("a.b.example.com", "example.com"), Target::Unknown);
        assert_eq!(classify("evil.com", "example.com"), Target::Unknown);
        assert_eq!(classify("xexample.com", "example.com"), Target::Unknown);
        assert_eq!(classify("-a.example.com", "example.com"), Target::Unknown);
    }
}
