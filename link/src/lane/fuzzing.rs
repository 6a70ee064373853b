//! Fuzzing the lane: a server lane after a real TLS handshake on loopback, fed what a teammate's
//! agent holding the keys could send after the preface and its SETTINGS.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::{self, Head};
use crate::sealed;

/// Feeds `input` (frames, or anything) to a server lane, which accepts every request (half of them
/// spliced to a local socket that reads all it gets, half refused). Nothing may panic, and the lane
/// must end once the peer has gone.
pub fn fuzz_peer_frames(input: &[u8]) {
    static LISTENER: OnceLock<std::net::TcpListener> = OnceLock::new();
    static CONFIGS: OnceLock<(Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>)> = OnceLock::new();
    let listener = LISTENER.get_or_init(|| std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port"));
    let (client_config, server_config) = CONFIGS.get_or_init(|| sealed::throwaway_configs(0)).clone();
    let client = std::net::TcpStream::connect(listener.local_addr().expect("an address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for socket in [&client, &server] {
        // No TIME_WAIT left behind by a run of thousands of inputs.
        let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
        socket.set_nonblocking(true).expect("non-blocking");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let (client, server) =
            (TcpStream::from_std(client).expect("tokio"), TcpStream::from_std(server).expect("tokio"));
        let name = ServerName::try_from("link.test").expect("a name");
        let (peer, server) =
            tokio::join!(sealed::connect(client_config, name, client), sealed::accept(server_config, server));
        let (mut peer, server) = (peer.expect("client handshake"), server.expect("server handshake"));
        let mut wire = frame::PREFACE.to_vec();
        let settings = frame::settings(&[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)]);
        wire.extend(Head::new(frame::SETTINGS, 0, 0, settings.len()).encode());
        wire.extend(settings);
        wire.extend_from_slice(input);
        let peer_side = async move {
            let _ = peer.write_all(&wire).await;
            let _ = peer.shutdown().await;
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(peer.read(&mut sink).await, Ok(1..)) {}
        };
        let serving = async {
            let Ok((lane, driver)) = super::handle::server(server).await else { return };
            let driving = tokio::spawn(driver);
            let mut odd = false;
            while let Some(request) = lane.accept().await {
                let stream = request.into_stream();
                odd = !odd;
                if odd {
                    let _ = stream.refuse(403, "refused while fuzzing");
                    continue;
                }
                let _ = stream.accept();
                let Ok(local) = tokio::net::TcpListener::bind("127.0.0.1:0").await else { continue };
                let Ok(addr) = local.local_addr() else { continue };
                let Ok(socket) = TcpStream::connect(addr).await else { continue };
                if let Ok((mut far, _)) = local.accept().await {
                    tokio::spawn(async move {
                        let mut sink = vec![0u8; 64 * 1024];
                        while matches!(far.read(&mut sink).await, Ok(1..)) {}
                    });
                }
                tokio::spawn(stream.splice(socket, None, None));
            }
            let _ = driving.await;
        };
        let ended = tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(peer_side, serving) }).await;
        assert!(ended.is_ok(), "the lane outlived its peer");
    });
}
