//! Answering a request on a link: a status with a JSON body, or an [`ErrorBody`] with the status of
//! its code. Both sides of the link answer this way (the hub its RPCs, the agent the hub's calls).

use bytes::Bytes;
use h2::server::SendResponse;
use http::{Response, StatusCode};
use pconnect_proto::control::ErrorBody;

/// Sends `status` with `body` (JSON, or nothing when empty). False when the stream was already
/// gone (the peer reset it before the answer).
pub fn reply(respond: &mut SendResponse<Bytes>, status: StatusCode, body: Bytes) -> bool {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(())
        .expect("static response");
    let end = body.is_empty();
    match respond.send_response(response, end) {
        Ok(mut send) => end || send.send_data(body, true).is_ok(),
        Err(_) => false,
    }
}

/// Sends an error reply: the status of its code and the JSON body. False as for [`reply`].
pub fn reply_error(respond: &mut SendResponse<Bytes>, error: &ErrorBody) -> bool {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(respond, status, Bytes::from(serde_json::to_vec(error).unwrap_or_default()))
}
