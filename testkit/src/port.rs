//! Free TCP ports on loopback, for servers a test starts.

use std::net::TcpListener;

/// A currently free TCP port on 127.0.0.1 (bind port 0, read it, release it).
///
/// # Panics
/// If binding fails.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A currently free TCP port on `ip` (e.g. `127.0.0.2`).
///
/// # Panics
/// If binding fails.
pub fn free_port_on(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind {ip}:0 to find a free port: {e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("cannot read local address of {ip}:0 listener: {e}")).port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let p = free_port();
        assert_ne!(p, 0);
        TcpListener::bind(("127.0.0.1", p)).expect("free port is bindable");
    }
}
