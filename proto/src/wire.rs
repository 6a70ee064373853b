//! Constants of the agent <-> hub link: ALPN ids, version, request paths, tunnel protocol token.

/// ALPN id of a forward connection: the agent is the HTTP/2 client (RPCs, outbound tunnels).
pub const ALPN_FORWARD: &[u8] = b"pconnect/1";
/// ALPN id of a reverse connection: the agent is the HTTP/2 server (inbound tunnels to its services).
pub const ALPN_REVERSE: &[u8] = b"pconnect-reverse/1";

/// Version carried in every hello; the hub refuses versions it does not speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// The `:protocol` pseudo-header of an extended CONNECT (RFC 8441) that carries one TCP connection.
pub const TUNNEL_PROTOCOL: &str = "pconnect-tcp";

/// Authority used in requests on the link (the peer is known; this only fills `:authority`).
pub const LINK_AUTHORITY: &str = "pconnect.link";

/// Path prefix of a tunnel stream; the service name follows: `/v1/tunnel/<service>`.
pub const TUNNEL_PATH_PREFIX: &str = "/v1/tunnel/";
/// First request on every link: answers once both sides' SETTINGS are known (protocol barrier).
pub const READY_PATH: &str = "/v1/ready";
/// `POST` hub -> agent on a reverse link: its services are now routed to this connection.
pub const ROUTED_PATH: &str = "/v1/routed";
/// `GET`: who the hub says this agent is.
pub const WHOAMI_PATH: &str = "/v1/whoami";
/// `GET`: the workspace's services.
pub const SERVICES_PATH: &str = "/v1/services";
/// `POST` [`crate::control::Unregister`]: stop serving services and forget them.
pub const UNREGISTER_PATH: &str = "/v1/services/unregister";

/// `POST` [`crate::share::CreateShare`] / `GET` [`crate::share::ShareListing`].
pub const SHARES_PATH: &str = "/v1/shares";
/// `POST` [`crate::share::ShareCode`]: revoke a share.
pub const SHARE_REVOKE_PATH: &str = "/v1/shares/revoke";
/// `POST` [`crate::share::ShareId`]: revoke one of the caller's shares by id.
pub const SHARE_REVOKE_ID_PATH: &str = "/v1/shares/revoke-id";
/// `POST` [`crate::share::UpdateShare`]: change a share's expiry in place; replies
/// [`crate::share::ShareInfo`].
pub const SHARE_UPDATE_PATH: &str = "/v1/shares/update";
/// `POST` [`crate::share::ShareCode`]: join a share; replies [`crate::share::Joined`].
pub const SHARE_JOIN_PATH: &str = "/v1/shares/join";
/// `POST` with [`HEADER_JOIN`]: a long-lived stream that counts the joiner and carries
/// [`crate::share::ShareEvent`] lines.
pub const SHARE_ATTACH_PATH: &str = "/v1/shares/attach";

/// `POST` [`crate::link::CreateLink`] / `GET` [`crate::link::LinkListing`].
pub const LINKS_PATH: &str = "/v1/links";
/// `POST` [`crate::link::RevokeLink`].
pub const LINK_REVOKE_PATH: &str = "/v1/links/revoke";
/// `POST` [`crate::link::UpdateLink`]: change a link's expiry or policy in place; replies
/// [`crate::link::LinkInfo`].
pub const LINK_UPDATE_PATH: &str = "/v1/links/update";

/// `POST` [`crate::debug::StartDebug`] / `GET` the caller's [`crate::debug::DebugSummary`] list.
pub const DEBUG_PATH: &str = "/v1/debug";
/// `POST` [`crate::debug::StartDebug`]: start a debug session; replies [`crate::debug::DebugStarted`].
pub const DEBUG_START_PATH: &str = "/v1/debug/start";
/// `POST` [`crate::debug::StopDebug`].
pub const DEBUG_STOP_PATH: &str = "/v1/debug/stop";
/// Hub -> agent on a reverse link: [`crate::debug::ReplayCall`].
pub const DEBUG_REPLAY_PATH: &str = "/v1/debug/replay";
/// Hub -> agent on a reverse link: [`crate::debug::AskCall`].
pub const DEBUG_ASK_PATH: &str = "/v1/debug/ask";

/// A per-session stream of the debug API: `/v1/debug/<id>/events` (agent -> hub, NDJSON
/// [`crate::debug::AgentEvent`]) or `/v1/debug/<id>/tail` (hub -> CLI, NDJSON
/// [`crate::debug::Captured`]).
pub fn debug_stream_path(id: &str, stream: DebugStream) -> String {
    format!("{DEBUG_PATH}/{id}/{}", stream.as_str())
}

/// The two long-lived streams of a debug session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugStream {
    /// `POST`: the exposing agent's captured exchanges, NDJSON, agent -> hub.
    Events,
    /// `GET`: every new exchange, NDJSON, hub -> `connect debug tail`.
    Tail,
}

impl DebugStream {
    pub fn as_str(self) -> &'static str {
        match self {
            DebugStream::Events => "events",
            DebugStream::Tail => "tail",
        }
    }
}

/// The session id and stream of a [`debug_stream_path`].
pub fn parse_debug_stream_path(path: &str) -> Option<(&str, DebugStream)> {
    let rest = path.strip_prefix(DEBUG_PATH)?.strip_prefix('/')?;
    let (id, stream) = rest.split_once('/')?;
    let stream = match stream {
        "events" => DebugStream::Events,
        "tail" => DebugStream::Tail,
        _ => return None,
    };
    (!id.is_empty()).then_some((id, stream))
}

/// Request header carrying a join token: on a tunnel it routes through (and is cut with) the share.
pub const HEADER_JOIN: &str = "pconnect-join";

/// Tunnel request header naming the member whose service the tunnel is for (`connect clone`,
/// `reach: - teammate:`): the hub refuses it as offline when someone else serves that name now.
pub const HEADER_EXPECT_OWNER: &str = "pconnect-expect-owner";

/// Response header naming the member that owns the service a tunnel reached.
pub const HEADER_SERVICE_OWNER: &str = "pconnect-owner";

/// Path prefix of public-link requests on a reverse link: `<method> /v1/http/<service>` carries one
/// HTTP request for `service` (its own method, headers and body; its target in
/// [`HEADER_HTTP_TARGET`]).
pub const HTTP_PATH_PREFIX: &str = "/v1/http/";

/// Header of a public-link request on a reverse link: the request target (`/path?query`) the
/// service is asked for.
pub const HEADER_HTTP_TARGET: &str = "pconnect-target";

/// Header of an agent's answer to a public-link request that is the agent's own error (an
/// [`crate::control::ErrorBody`]), not the service's response.
pub const HEADER_AGENT_ERROR: &str = "pconnect-agent-error";

/// The public-link request path for a service.
pub fn http_path(service: &str) -> String {
    format!("{HTTP_PATH_PREFIX}{service}")
}

/// The service named by a public-link request path, if the path is one.
pub fn service_from_http_path(path: &str) -> Option<&str> {
    path.strip_prefix(HTTP_PATH_PREFIX).filter(|name| !name.is_empty() && !name.contains('/'))
}

/// The tunnel path for a service.
pub fn tunnel_path(service: &str) -> String {
    format!("{TUNNEL_PATH_PREFIX}{service}")
}

/// The service named by a tunnel path, if the path is one.
pub fn service_from_tunnel_path(path: &str) -> Option<&str> {
    path.strip_prefix(TUNNEL_PATH_PREFIX).filter(|name| !name.is_empty() && !name.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_path_round_trips() {
        assert_eq!(service_from_tunnel_path(&tunnel_path("prod-db")), Some("prod-db"));
        assert_eq!(service_from_tunnel_path("/v1/tunnel/"), None);
        assert_eq!(service_from_tunnel_path("/v1/tunnel/a/b"), None);
        assert_eq!(service_from_tunnel_path("/v1/services"), None);
        assert_eq!(service_from_http_path(&http_path("web")), Some("web"));
        assert_eq!(service_from_http_path("/v1/http/a/b"), None);
        assert_eq!(service_from_http_path(&tunnel_path("web")), None);
    }

    #[test]
    fn debug_stream_paths_round_trip() {
        let events = debug_stream_path("d3", DebugStream::Events);
        assert_eq!(parse_debug_stream_path(&events), Some(("d3", DebugStream::Events)));
        assert_eq!(parse_debug_stream_path("/v1/debug/d3/tail"), Some(("d3", DebugStream::Tail)));
        assert_eq!(parse_debug_stream_path("/v1/debug/start"), None);
        assert_eq!(parse_debug_stream_path("/v1/debug//events"), None);
        assert_eq!(parse_debug_stream_path("/v1/debug/d3/other"), None);
    }
}
