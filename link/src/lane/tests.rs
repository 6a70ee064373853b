//! The lane over real TLS on loopback: tunnels byte-exact both ways past every window, early bytes
//! kept until the answer, refusals, resets at both ends, pings and closes, and a peer that breaks
//! the protocol.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::sealed::{self, Sealed};

const TUNNEL: [(&str, &str); 5] = [
    (":method", "CONNECT"),
    (":protocol", "pconnect-tunnel"),
    (":scheme", "https"),
    (":authority", "link"),
    (":path", "/v1/tunnel/echo"),
];

/// Two sealed TCP connections' ends on loopback.
async fn sealed_pair() -> (Sealed<TcpStream>, Sealed<TcpStream>) {
    let (client, server) = sealed::throwaway_configs(0);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        sealed::accept(server, tcp).await.unwrap()
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = sealed::connect(client, ServerName::try_from("link.test").unwrap(), tcp).await.unwrap();
    (client, accepting.await.unwrap())
}

/// A client lane and a server lane, their drivers spawned.
async fn lanes() -> (Lane, Lane) {
    let (client_io, server_io) = sealed_pair().await;
    let (client, server) = tokio::join!(super::client(client_io), super::server(server_io));
    let ((client, client_driver), (server, server_driver)) = (client.unwrap(), server.unwrap());
    tokio::spawn(client_driver);
    tokio::spawn(server_driver);
    (client, server)
}

/// The two ends of a local TCP connection.
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let connecting = TcpStream::connect(listener.local_addr().unwrap());
    let (connected, accepted) = tokio::join!(connecting, listener.accept());
    (connected.unwrap(), accepted.unwrap().0)
}

/// `work`, or a failure after 20 s: a tunnel that hangs fails its test instead of hanging it.
async fn within<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), work).await.expect("still waiting after 20 s")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Serves every request on `server` with an echo: its "service" end echoes what it reads.
fn serve_echo(server: Lane) {
    tokio::spawn(async move {
        while let Some(request) = server.accept().await {
            tokio::spawn(async move {
                assert_eq!(request.path(), "/v1/tunnel/echo");
                let (service, mut backend) = socket_pair().await;
                tokio::spawn(async move {
                    let (mut read, mut write) = backend.split();
                    tokio::io::copy(&mut read, &mut write).await.unwrap();
                    write.shutdown().await.unwrap();
                });
                let stream = request.into_stream();
                stream.accept().unwrap();
                stream.splice(service, None, None).await
            });
        }
    });
}

/// Opens a tunnel and splices it to one end of a local pair; the other end is returned.
async fn tunnel(client: &Lane) -> (TcpStream, tokio::task::JoinHandle<Result<(u64, u64), LaneError>>) {
    let stream = client.open(&TUNNEL).unwrap();
    assert_eq!(stream.answer().await.unwrap().status, OK);
    let (app, agent_end) = socket_pair().await;
    (app, tokio::spawn(stream.splice(agent_end, None, None)))
}

#[tokio::test]
async fn a_tunnel_carries_bytes_both_ways_exactly_past_every_window_and_ends_with_half_closes() {
    let (client, server) = lanes().await;
    serve_echo(server);
    let (app, splice) = tunnel(&client).await;
    // More than a stream window (4 MiB) and a connection window's quarter, in both directions.
    let sent = pattern(9 * 1024 * 1024 + 123, 7);
    let (mut read, mut write) = app.into_split();
    let writing = {
        let sent = sent.clone();
        tokio::spawn(async move {
            write.write_all(&sent).await.unwrap();
            write.shutdown().await.unwrap();
        })
    };
    let mut echoed = Vec::new();
    within(read.read_to_end(&mut echoed)).await.unwrap();
    within(writing).await.unwrap();
    assert!(echoed == sent, "the echo differs: {} bytes of {}", echoed.len(), sent.len());
    assert_eq!(within(splice).await.unwrap().unwrap(), (sent.len() as u64, sent.len() as u64));
}

#[tokio::test]
async fn many_tunnels_share_one_lane_without_mixing_their_bytes() {
    let (client, server) = lanes().await;
    serve_echo(server);
    let mut tasks = Vec::new();
    for seed in 0..20u8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut app, _splice) = tunnel(&client).await;
            let sent = pattern(200_000 + usize::from(seed) * 1000, seed);
            let (mut read, mut write) = app.split();
            let (echoed, ()) = tokio::join!(
                async {
                    let mut echoed = vec![0; sent.len()];
                    within(read.read_exact(&mut echoed)).await.unwrap();
                    echoed
                },
                async { write.write_all(&sent).await.unwrap() }
            );
            assert!(echoed == sent, "tunnel {seed} mixed bytes");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn bytes_sent_before_the_answer_arrive_first_once_the_service_is_attached() {
    let (client, server) = lanes().await;
    let stream = client.open(&TUNNEL).unwrap();
    stream.send(b"early bytes ", false).await.unwrap();
    let request = server.accept().await.unwrap();
    // The service is reached only now; the early bytes waited in the lane.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (service, mut backend) = socket_pair().await;
    let served = request.into_stream();
    served.accept().unwrap();
    tokio::spawn(served.splice(service, None, None));
    assert_eq!(stream.answer().await.unwrap().status, OK);
    let (mut app, agent_end) = socket_pair().await;
    tokio::spawn(stream.splice(agent_end, None, None));
    app.write_all(b"and later ones").await.unwrap();
    app.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(backend.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"early bytes and later ones");
}

#[tokio::test]
async fn small_and_large_frames_held_before_the_service_is_attached_arrive_in_order() {
    let (client, server) = lanes().await;
    let stream = client.open(&TUNNEL).unwrap();
    // Frames from one byte to past the size held as slices of the input, all of them held by the
    // serving side until its service is attached: the small ones copied together, the large ones
    // kept as slices, in between.
    let mut sent = Vec::new();
    for (i, size) in [1, 5, 300, 20_000, 2, 17_000, 9, 40_000, 4_000, 1].iter().cycle().take(60).enumerate() {
        let chunk = pattern(*size, i as u8);
        stream.send(&chunk, false).await.unwrap();
        sent.extend_from_slice(&chunk);
    }
    stream.send(&[], true).await.unwrap();
    let request = within(server.accept()).await.unwrap();
    let (service, mut backend) = socket_pair().await;
    let served = request.into_stream();
    served.accept().unwrap();
    tokio::spawn(served.splice(service, None, None));
    let mut got = Vec::new();
    within(backend.read_to_end(&mut got)).await.unwrap();
    assert!(got == sent, "the service got {} bytes of {}, or in another order", got.len(), sent.len());
}

#[tokio::test]
async fn a_refusal_is_an_answer_and_a_dropped_stream_resets_both_ends() {
    let (client, server) = lanes().await;
    let refused = client.open(&TUNNEL).unwrap();
    let request = server.accept().await.unwrap();
    request.into_stream().refuse(403, "the ticket expired\r\n").unwrap();
    let answer = refused.answer().await.unwrap();
    assert_eq!((answer.status, answer.reason.as_deref()), (403, Some("the ticket expired")));

    // Accepted, then the serving side drops the stream mid-tunnel: the client's local socket is
    // reset, not closed cleanly.
    let stream = client.open(&TUNNEL).unwrap();
    let served = server.accept().await.unwrap().into_stream();
    served.accept().unwrap();
    assert_eq!(stream.answer().await.unwrap().status, OK);
    let (mut app, agent_end) = socket_pair().await;
    let splice = tokio::spawn(stream.splice(agent_end, None, None));
    app.write_all(b"hello").await.unwrap();
    drop(served);
    let ended = within(splice).await.unwrap();
    assert!(matches!(ended, Err(LaneError::Reset(_))), "{ended:?}");
    let mut buf = [0u8; 16];
    let read = within(app.read(&mut buf)).await;
    assert_eq!(read.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn a_request_reset_before_it_is_accepted_is_never_served() {
    let (client, server) = lanes().await;
    let reset = client.open(&TUNNEL).unwrap();
    drop(reset);
    let mut other = TUNNEL;
    other[4] = (":path", "/v1/tunnel/other");
    let _kept = client.open(&other).unwrap();
    let accepted = within(server.accept()).await.unwrap();
    assert_eq!(accepted.path(), "/v1/tunnel/other", "the reset request was handed out");
}

#[tokio::test]
async fn pings_are_answered_and_a_closed_lane_fails_its_streams_and_accepts() {
    let (client, server) = lanes().await;
    client.ping().await.unwrap();
    server.ping().await.unwrap();
    let stream = client.open(&TUNNEL).unwrap();
    let accepted = server.accept().await.unwrap();
    client.close();
    assert!(client.is_closed());
    assert!(stream.answer().await.is_err());
    assert!(client.open(&TUNNEL).is_err());
    let served = accepted.into_stream();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !server.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the server saw the close");
    assert!(served.accept().is_err());
    assert!(server.accept().await.is_none());
}

#[tokio::test]
async fn a_peer_that_breaks_the_protocol_ends_the_lane_with_a_reason() {
    let (mut client_io, server_io) = sealed_pair().await;
    let serving = tokio::spawn(super::server(server_io));
    client_io.write_all(b"GET / HTTP/1.1\r\n\r\nnot a preface at all").await.unwrap();
    client_io.flush().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), serving).await.unwrap().unwrap();
    assert_eq!(ended.err(), Some(LaneError::Protocol("not an HTTP/2 preface")));

    // A HEADERS frame whose block is Huffman-coded, after a proper opening.
    let (mut client_io, server_io) = sealed_pair().await;
    let serving = tokio::spawn(super::server(server_io));
    let mut opening = frame::PREFACE.to_vec();
    opening.extend(frame::Head::new(frame::SETTINGS, 0, 0, 0).encode());
    client_io.write_all(&opening).await.unwrap();
    client_io.flush().await.unwrap();
    let (_server, driver) = tokio::time::timeout(Duration::from_secs(5), serving).await.unwrap().unwrap().unwrap();
    let block = [0x00, 0x81, 0xff, 0x00];
    let mut bad = frame::Head::new(frame::HEADERS, frame::END_HEADERS, 1, block.len()).encode().to_vec();
    bad.extend(block);
    client_io.write_all(&bad).await.unwrap();
    client_io.flush().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), driver).await.unwrap();
    assert_eq!(ended, Err(LaneError::Protocol("a header block outside the lane's profile")));
}

#[tokio::test]
async fn the_tap_sees_both_directions_including_bytes_that_came_before_the_answer() {
    let (client, server) = lanes().await;
    let stream = client.open(&TUNNEL).unwrap();
    stream.send(b"early", false).await.unwrap();
    let served = server.accept().await.unwrap().into_stream();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let tap = Arc::new(TapSender::new(tx, Arc::default()));
    let (service, mut backend) = socket_pair().await;
    served.accept().unwrap();
    tokio::spawn(served.splice(service, Some(tap), None));
    let mut got = [0u8; 5];
    within(backend.read_exact(&mut got)).await.unwrap();
    backend.write_all(b"reply").await.unwrap();
    let first = within(rx.recv()).await.unwrap();
    assert_eq!((first.dir, &first.bytes[..]), (crate::pump::TapDirection::ToService, &b"early"[..]));
    let second = within(rx.recv()).await.unwrap();
    assert_eq!((second.dir, &second.bytes[..]), (crate::pump::TapDirection::ToClient, &b"reply"[..]));
}

use crate::pump::TapSender;
