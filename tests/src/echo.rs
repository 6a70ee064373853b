//! [`EchoServer`]: a threaded TCP echo server on loopback, half-close aware.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[derive(Default)]
struct State {
    stop: AtomicBool,
    accepted: AtomicUsize,
    next_id: AtomicU64,
    /// Open connections (clones), so drop can shut them down.
    conns: Mutex<HashMap<u64, TcpStream>>,
}

/// A TCP server that echoes every byte back on every connection (one thread per connection).
///
/// When a client half-closes (shuts down writing), the server finishes echoing and then shuts
/// down its own writing side. On drop it stops accepting and shuts down all open connections.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    state: Arc<State>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("accepted", &self.accepted).finish_non_exhaustive()
    }
}

impl EchoServer {
    /// Starts an echo server on `127.0.0.1:0`.
    ///
    /// # Panics
    /// If it cannot bind.
    pub fn start() -> EchoServer {
        EchoServer::start_on("127.0.0.1")
    }

    /// Starts an echo server on `<ip>:0` (e.g. `127.0.0.2`).
    ///
    /// # Panics
    /// If it cannot bind.
    pub fn start_on(ip: &str) -> EchoServer {
        let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("echo server cannot bind {ip}:0: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("echo server local address: {e}"));
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        std::thread::Builder::new()
            .name(format!("echo-accept-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &st))
            .unwrap_or_else(|e| panic!("spawning echo accept thread: {e}"));
        EchoServer { addr, state }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// How many connections are open right now.
    pub fn open_connections(&self) -> usize {
        self.state.conns.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        let conns = std::mem::take(&mut *self.state.conns.lock().unwrap_or_else(PoisonError::into_inner));
        for conn in conns.values() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>) {
    loop {
        let accepted = listener.accept();
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                // E.g. out of file descriptors: back off a little instead of spinning.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        state.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let id = state.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            state.conns.lock().unwrap_or_else(PoisonError::into_inner).insert(id, clone);
        }
        let st = Arc::clone(state);
        let spawned = std::thread::Builder::new().name(format!("echo-conn-{id}")).spawn(move || {
            echo(stream);
            st.conns.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        });
        if spawned.is_err() {
            state.conns.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        }
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                // Client half-closed: everything read was already echoed.
                let _ = stream.flush();
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
