//! The RPC layer of forward links: a call's typed request read from its stream (size-capped), its
//! typed reply or error written back, and the one sentence a store failure becomes. Features use
//! this layer; it uses no feature.

use std::future::Future;

use bytes::Bytes;
use h2::RecvStream;
use http::StatusCode;
use pconnect_link::h2io;
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::rpc::Call;

pub(crate) use pconnect_link::reply::{reply, reply_error};

/// Largest control request body.
const MAX_BODY: usize = 64 * 1024;

/// Runs call `C`: reads its request, runs `handler`, encodes its reply (`()` is `204 No Content`).
pub(crate) async fn serve<C, F, Fut, E>(body: RecvStream, handler: F) -> Result<(StatusCode, Bytes), ErrorBody>
where
    C: Call,
    F: FnOnce(C::Request) -> Fut,
    Fut: Future<Output = Result<C::Reply, E>>,
    E: Into<ErrorBody>,
{
    let request: C::Request = read(body).await?;
    let reply = handler(request).await.map_err(Into::into)?;
    let json = serde_json::to_vec(&reply).map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    Ok(match json.as_slice() {
        b"null" => (StatusCode::NO_CONTENT, Bytes::new()),
        _ => (StatusCode::OK, Bytes::from(json)),
    })
}

/// A JSON request body (an empty one reads as `null`, the `()` of calls without a body).
async fn read<T: serde::de::DeserializeOwned>(body: RecvStream) -> Result<T, ErrorBody> {
    let buf = h2io::read_body(body, MAX_BODY)
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::BadRequest, format!("request {e}")))?;
    let buf: &[u8] = if buf.is_empty() { b"null" } else { &buf };
    serde_json::from_slice(buf).map_err(|e| ErrorBody::new(ErrorCode::BadRequest, format!("bad request body: {e}")))
}

/// The error a client sees when the store fails (details go to the log, never over the wire).
pub(crate) fn store_error(e: crate::store::StoreError) -> ErrorBody {
    tracing::error!(error = %e, "store error");
    ErrorBody::new(ErrorCode::Internal, "the hub could not read its store; try again")
}
