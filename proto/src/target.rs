//! Parsing what the user exposes: `3000`, `:3000` or `host:port`.

use std::fmt;

/// A local address the agent forwards tunnels to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a target is not valid; the message says what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target '{input}': {reason}. Use a port (3000), :port (:3000) or host:port (localhost:3000)")]
pub struct TargetError {
    input: String,
    reason: String,
}

impl std::str::FromStr for Target {
    type Err = TargetError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| TargetError { input: input.to_string(), reason: reason.to_string() };
        let (host, port) = match input.rsplit_once(':') {
            Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
            None => ("localhost", input),
        };
        let host = if host.is_empty() { "localhost" } else { host };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail("no port number"));
        }
        let port: u32 = port.parse().map_err(|_| fail("port must be 1-65535"))?;
        if !(1..=65535).contains(&port) {
            return Err(fail("port must be 1-65535"));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(fail("the host is not a host name or address"));
        }
        Ok(Target { host: host.to_string(), port: port as u16 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_forms() {
        assert_eq!("3000".parse::<Target>().unwrap(), Target { host: "localhost".into(), port: 3000 });
        assert_eq!(":3000".parse::<Target>().unwrap(), Target { host: "localhost".into(), port: 3000 });
        assert_eq!("127.0.0.1:5432".parse::<Target>().unwrap(), Target { host: "127.0.0.1".into(), port: 5432 });
        assert_eq!("[::1]:80".parse::<Target>().unwrap().to_string(), "[::1]:80");
    }

    #[test]
    fn refuses_bad_targets_with_reasons() {
        for bad in ["localhost:99999", "foo", "localhost:", "0", ":0", "a b:80", ""] {
            let e = bad.parse::<Target>().unwrap_err().to_string();
            assert!(e.contains("invalid target"), "{bad}: {e}");
        }
        assert!("localhost:99999".parse::<Target>().unwrap_err().to_string().contains("1-65535"));
    }
}
