//! Smoke tests of the e2e fixtures themselves: processes, echo server, PostgreSQL, Redis, and
//! locating (building) the workspace binaries.

use std::process::Command;
use std::time::{Duration, Instant};

use pconnect_e2e::{
    CONNECT, EchoServer, HUB, Postgres, Proc, Redis, bin, listen_port, psql, redis_cli, roundtrip, wait_for_port, which,
};

const T: Duration = Duration::from_secs(10);

#[test]
fn postgres_select_1() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    assert_eq!(psql("127.0.0.1", pg.port(), "select 1")?, "1");
    pg.psql("create table t (id int primary key, v text)")?;
    pg.psql("insert into t values (1, 'a'), (2, 'b')")?;
    assert_eq!(pg.psql("select id, v from t order by id")?, "1|a\n2|b");
    let err = pg.psql("select * from missing_table").unwrap_err();
    assert!(format!("{err:#}").contains("missing_table"), "{err:#}");
    // Two clusters side by side.
    let pg2 = Postgres::start()?;
    assert_ne!(pg.port(), pg2.port());
    assert_eq!(pg2.psql("select 2")?, "2");
    let port = pg.port();
    drop(pg);
    assert!(psql("127.0.0.1", port, "select 1").is_err(), "server still up after drop");
    Ok(())
}

#[test]
fn redis_set_get() -> anyhow::Result<()> {
    if which("redis-server").is_none() || which("redis-cli").is_none() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("skipping redis_set_get: redis-server/redis-cli not on PATH");
        }
        return Ok(());
    }
    let redis = Redis::start()?;
    assert_eq!(redis_cli("127.0.0.1", redis.port(), &["SET", "k", "hello world"])?, "OK");
    assert_eq!(redis.cli(&["GET", "k"])?, "hello world");
    assert!(redis.cli(&["NOSUCHCOMMAND"]).is_err());
    let port = redis.port();
    drop(redis);
    assert!(redis_cli("127.0.0.1", port, &["ping"]).is_err(), "server still up after drop");
    Ok(())
}

#[test]
fn echo_round_trip() -> anyhow::Result<()> {
    let echo = EchoServer::start();
    let addr = format!("127.0.0.1:{}", echo.port());
    wait_for_port(&addr, T)?;
    assert_eq!(roundtrip(&addr, b"hello", T)?, b"hello");
    // Large payload: the writer and reader overlap, and half-close ends the exchange.
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    assert!(roundtrip(&addr, &big, T)? == big);
    // Many concurrent connections.
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let payload = format!("conn {i} ").repeat(1000).into_bytes();
                roundtrip(&addr, &payload, T).map(|got| got == payload)
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().expect("thread")?);
    }
    assert!(echo.accepted() >= 35, "accepted {}", echo.accepted());
    drop(echo);
    assert!(roundtrip(&addr, b"x", Duration::from_secs(2)).is_err(), "still up after drop");
    Ok(())
}

#[test]
fn proc_lines_signals_and_exit() -> anyhow::Result<()> {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "echo one; echo '[ok] Listening on localhost:5433' >&2; echo one; trap 'echo bye; exit 3' TERM; while :; do sleep 0.05; done",
    ]);
    let mut p = Proc::spawn(cmd)?;
    let line = p.wait_for_line("Listening on", T)?;
    assert_eq!(listen_port(&line), Some(5433));
    // The same pattern matches each occurrence once.
    assert_eq!(p.wait_for_line("one", T)?, "one");
    assert_eq!(p.wait_for_line("one", T)?, "one");
    let err = p.wait_for_line("one", Duration::from_millis(200)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("still running") && msg.contains("Listening on localhost"), "{msg}");
    assert!(p.is_running());
    p.terminate();
    let status = p.wait_exit(T)?;
    assert_eq!(status.code(), Some(3));
    assert_eq!(p.wait_for_line("bye", T)?, "bye");
    assert!(p.output_so_far().contains("[ok] Listening"));
    assert_eq!(p.stderr_so_far(), "[ok] Listening on localhost:5433");

    // A process that exits without printing the line fails fast, saying so.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo starting; echo 'fatal: boom' >&2; exit 1"]);
    let mut p = Proc::spawn(cmd)?;
    let start = Instant::now();
    let err = p.wait_for_line("ready", Duration::from_secs(30)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(msg.contains("exited") && msg.contains("fatal: boom"), "{msg}");

    // kill() and drop kill for real.
    let mut p = Proc::spawn(sleep_600())?;
    p.kill();
    assert!(!p.is_running());
    let p = Proc::spawn(sleep_600())?;
    let pid = p.pid();
    drop(p);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} survived");
    Ok(())
}

#[test]
fn workspace_binaries_are_built() {
    for name in [CONNECT, HUB] {
        let path = bin(name);
        assert!(path.is_file(), "{}", path.display());
    }
}

fn sleep_600() -> Command {
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    cmd
}

#[tokio::test]
async fn fixtures_work_under_tokio() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = EchoServer::start();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", echo.port())).await?;
    s.write_all(b"ping").await?;
    s.shutdown().await?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).await?;
    assert_eq!(got, b"ping");
    let redis_missing = which("redis-server").is_none();
    if !redis_missing {
        let redis = tokio::task::spawn_blocking(Redis::start).await??;
        assert_eq!(redis.cli(&["ping"])?, "PONG");
    }
    Ok(())
}
