//! Debug viewer requests on the ingress: answered here when this replica holds the session,
//! carried to the replica that does (its WebSocket spliced after the holder's 101, as a link's is),
//! or the session taken up here when its holder is gone.

use http_body_util::Either;
use hyper::body::Incoming;

use super::{Body, Ingress, forwarded, splice_upgrade};
use crate::cluster::carry;
use crate::features::debug::http::{self as viewer_http, Routed};
use ::http::{Request, Response, StatusCode};

/// Serves one request under `/debug/`.
pub(super) async fn request(ingress: &Ingress, req: Request<Incoming>) -> Response<Body> {
    let debug = &ingress.hub.debug;
    let (holder, mut req) = match viewer_http::handle(debug, req).await {
        Routed::Answered(response) => return response.map(Either::Right),
        Routed::HeldBy { holder, req } => (holder, req),
    };
    let stream = match ingress.hub.cluster() {
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
            response.map(|body| Either::Left(Either::Right(body)))
        }
        Err(e) => {
            tracing::warn!(replica = %holder, error = %e, "a carried debug viewer request failed");
            viewer_http::unavailable().map(Either::Right)
        }
    }
}
