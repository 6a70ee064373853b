//! Relaying one client stream to a stream already opened towards the agent (directly, or through
//! the replica that holds it), with early data: the client's body flows at once, the answer's head
//! goes back when it comes (or its error, if it never does), and then the answer's body flows back.
//! Local tunnels (`forward.rs`) and streams passed on by a peer replica (`cluster/peer_port.rs`)
//! share it.

use std::future::Future;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::Response;
use pconnect_link::pump::{self, PumpError};
use pconnect_link::reply::reply_error;
use pconnect_proto::control::ErrorBody;

use crate::metrics::HubMetrics;

/// Relays until both directions are done. `body` is the client's body and where it goes (`None`
/// when the request ended with its head); `answer` resolves to the head to send back and the
/// body to relay, or the error the client gets instead.
pub(crate) async fn with_early_data(
    metrics: &HubMetrics,
    body: Option<(RecvStream, SendStream<Bytes>)>,
    answer: impl Future<Output = Result<Response<RecvStream>, ErrorBody>>,
    mut respond: SendResponse<Bytes>,
) -> Result<(), PumpError> {
    let upstream = async {
        match body {
            Some((from, to)) => pump::stream_to_stream(from, to, &metrics.bytes_to_service).await,
            None => Ok(0),
        }
    };
    tokio::pin!(upstream);
    tokio::pin!(answer);
    let mut upstream_done = false;
    let response = loop {
        tokio::select! {
            answer = &mut answer => match answer {
                Ok(response) => break response,
                Err(error) => {
                    reply_error(&mut respond, &error);
                    return Ok(());
                }
            },
            // The client may send everything (and half-close) before the answer comes.
            done = &mut upstream, if !upstream_done => {
                done?;
                upstream_done = true;
            }
        }
    };
    let (head, recv) = response.into_parts();
    let end = recv.is_end_stream();
    let send_back = respond.send_response(Response::from_parts(head, ()), end)?;
    let downstream = async {
        match end {
            true => Ok(0),
            false => pump::stream_to_stream(recv, send_back, &metrics.bytes_to_client).await,
        }
    };
    if upstream_done {
        downstream.await?;
    } else {
        tokio::try_join!(upstream, downstream)?;
    }
    Ok(())
}
