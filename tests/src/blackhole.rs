//! [`BlackholeProxy`]: a TCP relay on loopback that can silently stop forwarding in both directions
//! while keeping every socket open (a half-open network path: no FIN, no RST, just silence), and
//! later resume as if the path came back.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

struct State {
    upstream: SocketAddr,
    stop: AtomicBool,
    accepted: AtomicUsize,
    /// Bytes forwarded, both directions together.
    forwarded: AtomicU64,
    /// `true` while the path is cut.
    cut: Mutex<bool>,
    changed: Condvar,
    /// Every socket (both ends of every relayed connection), so drop can close them.
    sockets: Mutex<Vec<TcpStream>>,
}

impl State {
    /// Blocks while the path is cut; false once the proxy is stopping.
    fn wait_open(&self) -> bool {
        let mut cut = self.cut.lock().unwrap_or_else(PoisonError::into_inner);
        while *cut && !self.stop.load(Ordering::SeqCst) {
            cut = self.changed.wait_timeout(cut, Duration::from_millis(100)).unwrap_or_else(PoisonError::into_inner).0;
        }
        !self.stop.load(Ordering::SeqCst)
    }
}

/// A TCP relay from `127.0.0.1:<port>` to an upstream address, with a switch that blackholes it.
///
/// While cut, connections are still accepted by the kernel (as a SYN would be answered by nobody,
/// the client's TLS handshake just hangs), no byte moves either way and no close is passed on.
/// Bytes already read are held and delivered once the path is restored, as TCP would retransmit
/// them. Dropping the proxy closes everything.
pub struct BlackholeProxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl std::fmt::Debug for BlackholeProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlackholeProxy").field("addr", &self.addr).field("upstream", &self.state.upstream).finish()
    }
}

impl BlackholeProxy {
    /// Starts relaying `127.0.0.1:0` to `upstream`.
    ///
    /// # Panics
    /// If it cannot bind.
    pub fn start(upstream: SocketAddr) -> BlackholeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("proxy cannot bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("proxy local address: {e}"));
        let state = Arc::new(State {
            upstream,
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            forwarded: AtomicU64::new(0),
            cut: Mutex::new(false),
            changed: Condvar::new(),
            sockets: Mutex::new(Vec::new()),
        });
        let st = Arc::clone(&state);
        std::thread::Builder::new()
            .name(format!("blackhole-accept-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &st))
            .unwrap_or_else(|e| panic!("spawning proxy thread: {e}"));
        BlackholeProxy { addr, state }
    }

    /// The address to dial instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port to dial instead of the upstream's.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Bytes relayed so far (both directions).
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Cuts the path: nothing moves and nothing is closed until [`BlackholeProxy::restore`].
    pub fn cut(&self) {
        *self.state.cut.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.state.changed.notify_all();
    }

    /// Brings the path back: held bytes and closes are delivered, relaying resumes.
    pub fn restore(&self) {
        *self.state.cut.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.state.changed.notify_all();
    }
}

impl Drop for BlackholeProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.changed.notify_all();
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        for socket in std::mem::take(&mut *self.state.sockets.lock().unwrap_or_else(PoisonError::into_inner)) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>) {
    for accepted in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = accepted else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        state.accepted.fetch_add(1, Ordering::SeqCst);
        let st = Arc::clone(state);
        let _ = std::thread::Builder::new().name("blackhole-conn".into()).spawn(move || relay(client, &st));
    }
}

fn relay(client: TcpStream, state: &Arc<State>) {
    // A new connection during a cut gets nowhere until the path is back.
    if !state.wait_open() {
        return;
    }
    let Ok(server) = TcpStream::connect(state.upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else { return };
    {
        let mut sockets = state.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        for s in [&client, &server] {
            if let Ok(clone) = s.try_clone() {
                sockets.push(clone);
            }
        }
    }
    let st = Arc::clone(state);
    let up = std::thread::Builder::new().name("blackhole-up".into()).spawn(move || pump(client, server2, &st));
    pump(server, client2, state);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

/// Copies `from` to `to`, holding everything while the path is cut; passes EOF on as a half-close
/// and an error as a full close, once the path is open.
fn pump(mut from: TcpStream, mut to: TcpStream, state: &State) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !state.wait_open() {
            return;
        }
        let n = match from.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                if state.wait_open() {
                    let _ = to.shutdown(Shutdown::Both);
                }
                return;
            }
        };
        if !state.wait_open() {
            return;
        }
        if n == 0 {
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
        state.forwarded.fetch_add(n as u64, Ordering::SeqCst);
    }
}
