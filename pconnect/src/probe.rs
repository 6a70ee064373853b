//! Tells which protocol a local TCP service speaks (HTTP, PostgreSQL, MySQL, Redis, MongoDB) by talking to it briefly.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// What a probed service speaks: the same kinds a `pconnect.yml` service declares (`Tcp` when it
/// accepts connections but speaks none of the others).
pub use pconnect_proto::project::ServiceKind as Kind;

/// Ports that are never published as public links (protected database ports).
pub const PROTECTED_PORTS: &[(u16, &str)] = &[
    (5432, "PostgreSQL"),
    (3306, "MySQL"),
    (27017, "MongoDB"),
    (6379, "Redis"),
    (6380, "Redis"),
    (26257, "CockroachDB"),
    (9042, "Cassandra"),
    (8529, "ArangoDB"),
    (7687, "Neo4j"),
    (1433, "SQL Server"),
    (1521, "Oracle"),
    (50000, "DB2"),
];

/// The database usually found on `port`, when it is a protected port.
pub fn protected_port(port: u16) -> Option<&'static str> {
    PROTECTED_PORTS.iter().find(|(p, _)| *p == port).map(|(_, name)| *name)
}

/// How long a server may take to speak first (MySQL does).
const GREETING_WAIT: Duration = Duration::from_millis(300);
/// How long each connect, and each reply to a probe, may take.
const STEP_WAIT: Duration = Duration::from_millis(500);
/// Replies are read up to this many bytes: the answers we look for are short.
const MAX_READ: usize = 1024;

/// PostgreSQL SSLRequest: int32 length 8, int32 code 80877103.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const REDIS_PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const HTTP_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
const MONGO_OP_MSG: i32 = 2013;
const MONGO_OP_REPLY: i32 = 1;
const MONGO_REQUEST_ID: i32 = 0x7063_6f6e;

/// Probes host:port; None when nothing accepts connections. Never takes longer than `timeout` overall.
pub async fn detect(host: &str, port: u16, timeout: Duration) -> Option<Kind> {
    let mut accepted = false;
    let probed = tokio::time::timeout(timeout, probe(host, port, &mut accepted)).await;
    match probed {
        Ok(kind) => kind,
        Err(_) => accepted.then_some(Kind::Tcp),
    }
}

async fn probe(host: &str, port: u16, accepted: &mut bool) -> Option<Kind> {
    let mut stream = connect(host, port).await?;
    *accepted = true;
    // MySQL (and SSH, SMTP, ...) speak first; the others wait for the client.
    let greeting = read_until(&mut stream, GREETING_WAIT, mysql_packet_complete).await;
    if !greeting.is_empty() {
        return Some(if is_mysql_greeting(&greeting) { Kind::Mysql } else { Kind::Tcp });
    }
    let reply = send(&mut stream, &PG_SSL_REQUEST, |b| !b.is_empty()).await;
    if is_postgres_ssl_answer(&reply) {
        return Some(Kind::Postgres);
    }
    if is_mysql_greeting(&reply) {
        return Some(Kind::Mysql); // a greeting slower than GREETING_WAIT
    }
    drop(stream);
    if redis(host, port).await {
        return Some(Kind::Redis);
    }
    if http(host, port).await {
        return Some(Kind::Http);
    }
    if mongo(host, port).await {
        return Some(Kind::Mongo);
    }
    Some(Kind::Tcp)
}

/// A MySQL initial handshake (protocol 10, NUL-terminated printable version), or the error packet MySQL sends
/// instead when it refuses the client outright (too many connections, host not allowed).
fn is_mysql_greeting(bytes: &[u8]) -> bool {
    let [l0, l1, l2, sequence, tag, rest @ ..] = bytes else {
        return false;
    };
    let len = u32::from_le_bytes([*l0, *l1, *l2, 0]) as usize;
    let payload = &rest[..rest.len().min(len.saturating_sub(1))];
    match (*sequence, *tag) {
        (0, 0x0a) => match payload.iter().position(|&b| b == 0) {
            Some(end) => end > 0 && payload[..end].iter().all(u8::is_ascii_graphic),
            None => false,
        },
        (0, 0xff) => payload.len() >= 2,
        _ => false,
    }
}

/// Whether a whole first MySQL packet has arrived (or enough bytes to stop waiting).
fn mysql_packet_complete(bytes: &[u8]) -> bool {
    match bytes {
        [l0, l1, l2, ..] => bytes.len() >= 4 + u32::from_le_bytes([*l0, *l1, *l2, 0]) as usize,
        _ => false,
    }
}

/// PostgreSQL answers an SSLRequest (sent on the silent first connection) with a single 'S' or 'N'.
fn is_postgres_ssl_answer(reply: &[u8]) -> bool {
    reply == b"S" || reply == b"N"
}

/// Redis answers PING with +PONG, or with an error such as -NOAUTH.
async fn redis(host: &str, port: u16) -> bool {
    let reply = exchange(host, port, REDIS_PING, |b| b.len() >= 5 || b.contains(&b'\n')).await;
    reply.starts_with(b"+PONG") || reply.starts_with(b"-")
}

async fn http(host: &str, port: u16) -> bool {
    exchange(host, port, HTTP_GET, |b| b.len() >= 7).await.starts_with(b"HTTP/1.")
}

/// MongoDB answers an OP_MSG `hello` with an OP_MSG (or, for old servers, OP_REPLY) to our request.
async fn mongo(host: &str, port: u16) -> bool {
    let reply = exchange(host, port, &mongo_hello(), |b| b.len() >= 16).await;
    let Some(header) = reply.get(..16) else {
        return false;
    };
    let field = |i: usize| i32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    field(0) >= 16 && field(8) == MONGO_REQUEST_ID && matches!(field(12), MONGO_OP_MSG | MONGO_OP_REPLY)
}

/// OP_MSG with flagBits 0 and one kind-0 section holding the BSON document `{hello: 1, $db: "admin"}`.
fn mongo_hello() -> Vec<u8> {
    let mut doc = vec![0; 4];
    doc.push(0x10); // int32
    doc.extend_from_slice(b"hello\0");
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.push(0x02); // string
    doc.extend_from_slice(b"$db\0");
    doc.extend_from_slice(&6i32.to_le_bytes());
    doc.extend_from_slice(b"admin\0");
    doc.push(0);
    let doc_len = doc.len() as i32;
    doc[..4].copy_from_slice(&doc_len.to_le_bytes());

    let mut msg = vec![0; 4];
    msg.extend_from_slice(&MONGO_REQUEST_ID.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes()); // responseTo
    msg.extend_from_slice(&MONGO_OP_MSG.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes()); // flagBits
    msg.push(0); // section kind 0: body
    msg.extend_from_slice(&doc);
    let msg_len = msg.len() as i32;
    msg[..4].copy_from_slice(&msg_len.to_le_bytes());
    msg
}

async fn connect(host: &str, port: u16) -> Option<TcpStream> {
    tokio::time::timeout(STEP_WAIT, TcpStream::connect((host, port))).await.ok()?.ok()
}

/// Sends `request` on a fresh connection and returns what came back (empty when nothing did).
async fn exchange(host: &str, port: u16, request: &[u8], enough: fn(&[u8]) -> bool) -> Vec<u8> {
    match connect(host, port).await {
        Some(mut stream) => send(&mut stream, request, enough).await,
        None => Vec::new(),
    }
}

async fn send(stream: &mut TcpStream, request: &[u8], enough: fn(&[u8]) -> bool) -> Vec<u8> {
    if stream.write_all(request).await.is_err() {
        return Vec::new();
    }
    read_until(stream, STEP_WAIT, enough).await
}

/// Reads until `enough` says so, the peer closes or errs, MAX_READ bytes arrived, or `wait` elapsed.
async fn read_until(stream: &mut TcpStream, wait: Duration, enough: fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !enough(&buf) && buf.len() < MAX_READ {
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::process::Stdio;

    use tokio::net::TcpListener;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    /// Serves every connection to 127.0.0.1:<free port> with `handler`; returns the port.
    async fn serve<F, Fut>(handler: F) -> u16
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handler(stream));
            }
        });
        port
    }

    /// Reads until the client goes away, answering nothing.
    async fn drain(mut stream: TcpStream) {
        let mut buf = [0u8; 512];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    }

    /// Reads until `buf` ends up containing `needle`; false when the client goes away first.
    async fn read_to(stream: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> bool {
        let mut chunk = [0u8; 512];
        while !buf.windows(needle.len()).any(|w| w == needle) {
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return false,
            }
        }
        true
    }

    fn mysql_greeting() -> Vec<u8> {
        let mut payload = vec![0x0a];
        payload.extend_from_slice(b"8.0.36\0");
        payload.extend_from_slice(&7u32.to_le_bytes()); // connection id
        payload.extend_from_slice(b"abcdefgh\0"); // auth-plugin-data part 1 + filler
        payload.extend_from_slice(&[0xff, 0xf7, 0xff, 0x02, 0x00]);
        let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        packet.push(0); // sequence id
        packet.extend_from_slice(&payload);
        packet
    }

    async fn fake_mysql(mut stream: TcpStream) {
        let _ = stream.write_all(&mysql_greeting()).await;
        drain(stream).await;
    }

    async fn fake_postgres(mut stream: TcpStream, answer: u8) {
        let mut request = [0u8; 8];
        if stream.read_exact(&mut request).await.is_ok() && request == PG_SSL_REQUEST {
            let _ = stream.write_all(&[answer]).await;
        }
        drain(stream).await;
    }

    async fn fake_redis(mut stream: TcpStream, answer: &'static [u8]) {
        if read_to(&mut stream, &mut Vec::new(), b"PING\r\n").await {
            let _ = stream.write_all(answer).await;
        }
        drain(stream).await;
    }

    /// Answers 400 to a request line that is not HTTP (like hyper does), 200 to a GET.
    async fn fake_http(mut stream: TcpStream) {
        let mut buf = Vec::new();
        if !read_to(&mut stream, &mut buf, b"\r\n").await {
            return;
        }
        if !buf.starts_with(b"GET ") {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
            return;
        }
        if read_to(&mut stream, &mut buf, b"\r\n\r\n").await {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
        }
    }

    /// Reads one wire-protocol message (closing on an absurd length, like mongod) and answers an OP_MSG.
    async fn fake_mongo(mut stream: TcpStream) {
        let mut header = [0u8; 16];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if !(16..=48_000_000).contains(&len) {
            return;
        }
        let mut body = vec![0u8; len as usize - 16];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut reply = Vec::new();
        reply.extend_from_slice(&26i32.to_le_bytes());
        reply.extend_from_slice(&1i32.to_le_bytes());
        reply.extend_from_slice(&header[4..8]); // responseTo = their requestID
        reply.extend_from_slice(&MONGO_OP_MSG.to_le_bytes());
        reply.extend_from_slice(&[0, 0, 0, 0, 0]); // flagBits, section kind 0
        reply.extend_from_slice(&[5, 0, 0, 0, 0]); // {}
        let _ = stream.write_all(&reply).await;
        drain(stream).await;
    }

    async fn detect_local(port: u16) -> Option<Kind> {
        detect("127.0.0.1", port, WAIT).await
    }

    #[tokio::test]
    async fn detects_mysql_greeting() {
        let port = serve(fake_mysql).await;
        assert_eq!(detect_local(port).await, Some(Kind::Mysql));
    }

    #[tokio::test]
    async fn detects_mysql_greeting_sent_late() {
        let port = serve(|stream: TcpStream| async move {
            tokio::time::sleep(GREETING_WAIT + Duration::from_millis(100)).await;
            fake_mysql(stream).await;
        })
        .await;
        assert_eq!(detect_local(port).await, Some(Kind::Mysql));
    }

    #[tokio::test]
    async fn detects_mysql_refusal_error_packet() {
        let port = serve(|mut stream: TcpStream| async move {
            let msg = b"\xff\x10\x04Too many connections";
            let mut packet = vec![msg.len() as u8, 0, 0, 0];
            packet.extend_from_slice(msg);
            let _ = stream.write_all(&packet).await;
        })
        .await;
        assert_eq!(detect_local(port).await, Some(Kind::Mysql));
    }

    #[tokio::test]
    async fn detects_postgres_ssl_answers() {
        let no = serve(|s| fake_postgres(s, b'N')).await;
        let yes = serve(|s| fake_postgres(s, b'S')).await;
        assert_eq!(detect_local(no).await, Some(Kind::Postgres));
        assert_eq!(detect_local(yes).await, Some(Kind::Postgres));
    }

    #[tokio::test]
    async fn detects_redis_pong_and_noauth() {
        let pong = serve(|s| fake_redis(s, b"+PONG\r\n")).await;
        let noauth = serve(|s| fake_redis(s, b"-NOAUTH Authentication required.\r\n")).await;
        assert_eq!(detect_local(pong).await, Some(Kind::Redis));
        assert_eq!(detect_local(noauth).await, Some(Kind::Redis));
    }

    #[tokio::test]
    async fn detects_http() {
        let port = serve(fake_http).await;
        assert_eq!(detect_local(port).await, Some(Kind::Http));
    }

    #[tokio::test]
    async fn detects_mongo_op_msg() {
        let port = serve(fake_mongo).await;
        assert_eq!(detect_local(port).await, Some(Kind::Mongo));
    }

    #[tokio::test]
    async fn silent_server_is_tcp() {
        let port = serve(drain).await;
        assert_eq!(detect_local(port).await, Some(Kind::Tcp));
    }

    #[tokio::test]
    async fn ssh_banner_is_tcp() {
        let port = serve(|mut stream: TcpStream| async move {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            drain(stream).await;
        })
        .await;
        assert_eq!(detect_local(port).await, Some(Kind::Tcp));
    }

    #[tokio::test]
    async fn garbage_replies_are_tcp() {
        // Speaks a truncated MySQL-like header first, then closes.
        let truncated = serve(|mut stream: TcpStream| async move {
            let _ = stream.write_all(&[0xff, 0xff, 0xff, 0, 0x0a, b'8']).await;
        })
        .await;
        // Answers every probe with the same noise.
        let noisy = serve(|mut stream: TcpStream| async move {
            let mut buf = [0u8; 512];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                let _ = stream.write_all(b"\x00\x01?PONG\xff\r\n").await;
            }
        })
        .await;
        assert_eq!(detect_local(truncated).await, Some(Kind::Tcp));
        assert_eq!(detect_local(noisy).await, Some(Kind::Tcp));
    }

    #[tokio::test]
    async fn closed_port_is_none() {
        // Bound but not listening: connections are refused, and no other test can take the port
        // while it is held (a dropped listener's port could be reused in between).
        let held = tokio::net::TcpSocket::new_v4().unwrap();
        held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = held.local_addr().unwrap().port();
        assert_eq!(detect_local(port).await, None);
        drop(held);
    }

    #[tokio::test]
    async fn overall_timeout_is_honoured() {
        let port = serve(drain).await;
        let started = Instant::now();
        assert_eq!(detect("127.0.0.1", port, Duration::from_millis(200)).await, Some(Kind::Tcp));
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn real_redis_server() {
        if std::process::Command::new("redis-server").arg("--version").output().is_err() {
            return; // not installed
        }
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let mut child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(child.try_wait().unwrap().is_none(), "redis-server exited");
            assert!(Instant::now() < deadline, "redis-server did not start listening");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let kind = detect_local(port).await;
        child.kill().await.unwrap();
        assert_eq!(kind, Some(Kind::Redis));
    }

    #[test]
    fn mysql_greeting_parsing_never_panics() {
        let greeting = mysql_greeting();
        assert!(is_mysql_greeting(&greeting));
        for end in 0..greeting.len() {
            let _ = is_mysql_greeting(&greeting[..end]);
            let _ = mysql_packet_complete(&greeting[..end]);
        }
        assert!(!is_mysql_greeting(b"SSH-2.0-OpenSSH_9.6\r\n"));
        assert!(!is_mysql_greeting(&[1, 0, 0, 0, 0x0a]));
        assert!(!is_mysql_greeting(&[0, 0, 0, 0, 0x0a, b'8', 0]));
        assert!(!is_mysql_greeting(&[0xff, 0xff, 0xff, 0, 0x0a, b'8']));
        assert!(!is_mysql_greeting(&[10, 0, 0, 1, 0x0a, b'8', 0]));
    }

    #[test]
    fn mongo_hello_is_well_formed() {
        let msg = mongo_hello();
        assert_eq!(msg.len(), 52);
        assert_eq!(&msg[..4], &52i32.to_le_bytes());
        assert_eq!(&msg[12..16], &MONGO_OP_MSG.to_le_bytes());
        assert_eq!(&msg[21..25], &31i32.to_le_bytes()); // BSON document length
        assert_eq!(msg.last(), Some(&0));
    }

    #[test]
    fn protected_ports() {
        let expected = [
            (5432, "PostgreSQL"),
            (3306, "MySQL"),
            (27017, "MongoDB"),
            (6379, "Redis"),
            (6380, "Redis"),
            (26257, "CockroachDB"),
            (9042, "Cassandra"),
            (8529, "ArangoDB"),
            (7687, "Neo4j"),
            (1433, "SQL Server"),
            (1521, "Oracle"),
            (50000, "DB2"),
        ];
        assert_eq!(PROTECTED_PORTS.len(), expected.len());
        for (port, name) in expected {
            assert_eq!(protected_port(port), Some(name), "port {port}");
        }
        assert_eq!(protected_port(8080), None);
        assert_eq!(protected_port(0), None);
    }

    #[test]
    fn kind_names() {
        for kind in [Kind::Http, Kind::Postgres, Kind::Mysql, Kind::Redis, Kind::Mongo, Kind::Tcp] {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<Kind>(&format!("\"{}\"", kind.as_str())).unwrap(), kind);
        }
        assert!(Kind::Postgres.is_database() && Kind::Mongo.is_database());
        assert!(!Kind::Http.is_database() && !Kind::Tcp.is_database());
    }
}
