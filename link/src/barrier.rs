//! The ready barrier: the first request on every link is `GET /v1/ready` from its HTTP/2 client. Once
//! it is answered, the client knows the server's SETTINGS (extended CONNECT among them), so nothing
//! is sent before the link can carry it.

use bytes::Bytes;
use h2::RecvStream;
use h2::client::SendRequest;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use pconnect_proto::wire::{self, LINK_AUTHORITY};

/// The client side: sends the barrier request and waits for 200. With `needs_connect`, the server
/// must also offer extended CONNECT (tunnels are opened by this side).
pub async fn wait_ready(sender: SendRequest<Bytes>, needs_connect: bool) -> anyhow::Result<SendRequest<Bytes>> {
    let mut sender = sender.ready().await?;
    let request =
        Request::builder().method(Method::GET).uri(format!("https://{LINK_AUTHORITY}{}", wire::READY_PATH)).body(())?;
    let (response, _) = sender.send_request(request, true)?;
    let status = response.await?.status();
    anyhow::ensure!(status == StatusCode::OK, "the peer answered the ready barrier with {status}");
    anyhow::ensure!(
        !needs_connect || sender.is_extended_connect_protocol_enabled(),
        "the peer does not offer extended CONNECT"
    );
    Ok(sender)
}

/// The server side: answers the barrier request, if that is what `request` is (true when it was).
pub fn answer_ready(request: &Request<RecvStream>, respond: &mut SendResponse<Bytes>) -> bool {
    if request.method() != Method::GET || request.uri().path() != wire::READY_PATH {
        return false;
    }
    let _ = respond.send_response(Response::new(()), true);
    true
}

/// The HTTP/2 client side of a link once it is ready: the sender, the connection to drive, and
/// its heartbeat (resolves with a reason when the peer stopped answering).
pub struct ClientLink<T> {
    pub sender: SendRequest<Bytes>,
    pub conn: h2::client::Connection<T, Bytes>,
    pub heartbeat: std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>,
}

/// Starts the client side of a link over `io`: HTTP/2 handshake with the link's tuning, the
/// heartbeat, and the ready barrier (the connection is driven while it is in flight). `None` when
/// `cancel` fired first.
pub async fn open_client<T>(
    io: T,
    needs_connect: bool,
    cancel: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<ClientLink<T>>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, mut conn) = crate::tuning::client_builder().handshake::<_, Bytes>(io).await?;
    let heartbeat = Box::pin(crate::heartbeat::until_dead(conn.ping_pong().expect("ping_pong is taken once")));
    let ready = wait_ready(sender, needs_connect);
    tokio::pin!(ready);
    let sender = tokio::select! {
        result = &mut ready => result?,
        result = &mut conn => { result?; anyhow::bail!("the link closed before it was ready") }
        _ = cancel.cancelled() => return Ok(None),
    };
    Ok(Some(ClientLink { sender, conn, heartbeat }))
}
