//! Debug viewer requests on the ingress: answered here when this replica holds the session,
//! carried to the replica that does (its WebSocket spliced after the holder's 101, as a link's is),
//! or the session taken up here when its holder is gone.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::forwarded;
use super::upstream::splice_upgrade;
use crate::cluster::carry;
use crate::features::debug::http::{self as viewer_http, Routed};
use crate::state::Hub;
use ::http::{Request, Response, StatusCode};

/// What a viewer gets: the holder's answer as it streams in, or one made here.
type Body = Either<Incoming, Full<Bytes>>;

/// Serves one request under `/debug/`.
pub(super) async fn request(hub: &Hub, req: Request<Incoming>) -> Response<Body> {
    let debug = &hub.debug;
    let (holder, mut req) = match viewer_http::handle(debug, req).await {
        Routed::Answered(response) => return response.map(Either::Right),
        Routed::HeldBy { holder, req } => (holder, req),
    };
    let stream = match hub.cluster() {
        Some(cluster) => cluster.debug_viewer_stream(&holder).await,
        None => Ok(None),
    };
    let stream = match stream {
        Ok(Some(stream)) => stream,
        Ok(None) => return viewer_http::take_over(debug, req).await.map(Either::Right),
        Err(e) => {
            tracing::warn!(replica = %holder, error = %e, "cannot reach the replica holding a debug session");
            return viewer_http::unavailable().map(Either::Right);
        }
    };
    let client_upgrade = forwarded::wants_websocket(&req).then(|| hyper::upgrade::on(&mut req));
    match carry::send_over(stream, req).await {
        Ok(mut response) => {
            if let Some(client) = client_upgrade
                && response.status() == StatusCode::SWITCHING_PROTOCOLS
            {
                splice_upgrade(client, &mut response);
            }
            response.map(Either::Left)
        }
        Err(e) => {
            tracing::warn!(replica = %holder, error = %e, "a carried debug viewer request failed");
            viewer_http::unavailable().map(Either::Right)
        }
    }
}
