//! [`Proc`]: a spawned child process whose stdout and stderr are captured line by line, plus
//! helpers for running short commands with a timeout.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Which output stream a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One captured output line (without its line terminator and with ANSI escapes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The stream it was printed on.
    pub stream: Stream,
    /// The text.
    pub text: String,
}

#[derive(Default)]
struct Captured {
    lines: Vec<Line>,
    /// Whether `wait_for_line` already returned the line with the same index.
    consumed: Vec<bool>,
    /// Number of output streams not yet at end of file.
    open: usize,
}

type Shared = Arc<(Mutex<Captured>, Condvar)>;

fn lock(shared: &Shared) -> MutexGuard<'_, Captured> {
    shared.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running child process with captured output. Killed (SIGKILL) on drop.
pub struct Proc {
    child: Child,
    desc: String,
    shared: Shared,
    status: Option<ExitStatus>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("pid", &self.child.id())
            .field("cmd", &self.desc)
            .field("status", &self.status)
            .finish()
    }
}

impl Proc {
    /// Spawns `cmd` with stdin from `/dev/null` and stdout/stderr captured.
    pub fn spawn(mut cmd: Command) -> Result<Proc> {
        let desc = format!("{cmd:?}");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("failed to spawn {desc}"))?;
        let shared: Shared = Arc::new((Mutex::new(Captured { open: 2, ..Captured::default() }), Condvar::new()));
        let pid = child.id();
        let stdout = child.stdout.take().context("stdout not captured")?;
        let stderr = child.stderr.take().context("stderr not captured")?;
        for (stream, reader) in [
            (Stream::Stdout, Box::new(stdout) as Box<dyn Read + Send>),
            (Stream::Stderr, Box::new(stderr) as Box<dyn Read + Send>),
        ] {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("proc-{pid}-{stream:?}"))
                .spawn(move || pump(reader, stream, &shared));
            if let Err(e) = spawned {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).context("spawning output reader thread");
            }
        }
        Ok(Proc { child, desc, shared, status: None })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line this process was started with (for messages).
    pub fn description(&self) -> &str {
        &self.desc
    }

    /// Waits for the first stdout or stderr line containing `pattern` that no earlier call
    /// returned, and returns it.
    ///
    /// Lines printed before the call count too, and a line returned once is never returned
    /// again (so waiting twice for the same pattern waits for two occurrences). Fails on
    /// timeout, or soon after the process has exited without printing such a line; the error
    /// includes everything the process printed and whether it exited.
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        let mut deadline = start + timeout;
        let mut scanned = 0;
        loop {
            let streams_closed = {
                let mut cap = lock(&self.shared);
                let found =
                    (scanned..cap.lines.len()).find(|&i| !cap.consumed[i] && cap.lines[i].text.contains(pattern));
                if let Some(i) = found {
                    cap.consumed[i] = true;
                    return Ok(cap.lines[i].text.clone());
                }
                scanned = cap.lines.len();
                // `open` drops to 0 only after the last line was pushed, under this lock.
                cap.open == 0
            };
            if self.status.is_none() {
                self.status = self.child.try_wait().ok().flatten();
                if self.status.is_some() {
                    // Let the readers drain what is left in the pipes (which grandchildren may
                    // also hold open), but not for long.
                    deadline = deadline.min(Instant::now() + Duration::from_secs(1));
                }
            }
            let done = self.status.is_some() && streams_closed;
            let now = Instant::now();
            if done || now >= deadline {
                let state = self.state();
                bail!(
                    "{} (pid {}): no line containing {pattern:?} {}; {}\n--- output so far ---\n{}\n--- end of output ---",
                    self.desc,
                    self.pid(),
                    if done {
                        format!("before the process exited (after {:?})", start.elapsed())
                    } else {
                        format!("within {timeout:?}")
                    },
                    state,
                    self.output_so_far()
                );
            }
            let cap = lock(&self.shared);
            if cap.lines.len() == scanned && (cap.open == 0) == streams_closed {
                let wait = (deadline - now).min(Duration::from_millis(50));
                drop(self.shared.1.wait_timeout(cap, wait).unwrap_or_else(PoisonError::into_inner));
            }
        }
    }

    /// Whether any line printed so far (on either stream) contains `pattern`.
    pub fn has_line(&self, pattern: &str) -> bool {
        lock(&self.shared).lines.iter().any(|l| l.text.contains(pattern))
    }

    /// All captured lines so far, in arrival order.
    pub fn lines(&self) -> Vec<Line> {
        lock(&self.shared).lines.clone()
    }

    /// Everything printed so far on stdout and stderr, interleaved in arrival order.
    pub fn output_so_far(&self) -> String {
        join(lock(&self.shared).lines.iter())
    }

    /// Everything printed so far on stdout.
    pub fn stdout_so_far(&self) -> String {
        join(lock(&self.shared).lines.iter().filter(|l| l.stream == Stream::Stdout))
    }

    /// Everything printed so far on stderr.
    pub fn stderr_so_far(&self) -> String {
        join(lock(&self.shared).lines.iter().filter(|l| l.stream == Stream::Stderr))
    }

    /// Whether the process is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        self.poll_status().is_none()
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.poll_status()
    }

    fn poll_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    fn state(&mut self) -> String {
        match self.poll_status() {
            Some(s) => format!("process exited ({s})"),
            None => "process still running".to_owned(),
        }
    }

    /// Sends SIGKILL (if still running) and reaps the process.
    pub fn kill(&mut self) {
        if self.poll_status().is_some() {
            return;
        }
        let _ = self.child.kill();
        if let Ok(s) = self.child.wait() {
            self.status = Some(s);
        }
    }

    /// Sends SIGTERM (via `kill -TERM <pid>`) if the process is still running. Does not wait;
    /// follow with [`Proc::wait_exit`].
    ///
    /// # Panics
    /// If the `kill` command cannot be run or fails.
    pub fn terminate(&mut self) {
        if let Err(e) = self.signal("TERM") {
            panic!("{e:#}");
        }
    }

    /// Sends signal `sig` (a name like `TERM`, `INT`, `QUIT`, `HUP`, `KILL`, `STOP`, `CONT`)
    /// via `kill -<sig> <pid>`, unless the process has already exited.
    pub fn signal(&mut self, sig: &str) -> Result<()> {
        if self.poll_status().is_some() {
            return Ok(());
        }
        let out = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .output()
            .context("running `kill`")?;
        if !out.status.success() && self.poll_status().is_none() {
            bail!("`kill -{sig} {}` failed: {}", self.pid(), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.poll_status() {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} (pid {}) did not exit within {timeout:?}\n--- output so far ---\n{}\n--- end of output ---",
                    self.desc,
                    self.pid(),
                    self.output_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() && !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn join<'a>(lines: impl Iterator<Item = &'a Line>) -> String {
    lines.map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n")
}

fn pump(reader: Box<dyn Read + Send>, stream: Stream, shared: &Shared) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = clean_line(&buf);
                let mut cap = lock(shared);
                cap.lines.push(Line { stream, text });
                cap.consumed.push(false);
                drop(cap);
                shared.1.notify_all();
            }
        }
    }
    lock(shared).open -= 1;
    shared.1.notify_all();
}

/// Decodes a raw line lossily, strips the line terminator and ANSI CSI/OSC escape sequences.
fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\n', '\r']);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                // Parameters and intermediates, then one final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                chars.next();
                // Terminated by BEL or ESC '\'.
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' {
                        chars.next();
                        break;
                    }
                }
            }
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    out
}

/// Runs `cmd` to completion with stdin from `/dev/null`, capturing its output, killing it if
/// it runs longer than `timeout`.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("failed to spawn {desc}"))?;
    let collect = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        if let Some(mut r) = r {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
        }
        rx
    };
    let out_rx = collect(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err_rx = collect(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(s) = child.try_wait().with_context(|| format!("waiting for {desc}"))? {
            break (s, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break (child.wait().with_context(|| format!("reaping {desc}"))?, true);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Pipes may be held open by grandchildren: do not wait for them forever.
    let drain = Duration::from_secs(if timed_out { 2 } else { 10 });
    let output = Output {
        status,
        stdout: out_rx.recv_timeout(drain).unwrap_or_default(),
        stderr: err_rx.recv_timeout(drain).unwrap_or_default(),
    };
    if timed_out {
        bail!("{desc} did not finish within {timeout:?}; killed\n{}", describe_output(&output));
    }
    Ok(output)
}

/// A readable account of a finished command: status, stdout and stderr.
pub fn describe_output(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// The first executable file named `name` in a `PATH` directory.
pub fn which(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_lines() {
        assert_eq!(clean_line(b"\x1b[32m[ok]\x1b[0m Hub ready\r\n"), "[ok] Hub ready");
        assert_eq!(clean_line(b"\x1b]8;;http://x\x07link\x1b]8;;\x1b\\ end\n"), "link end");
        assert_eq!(clean_line(b"plain"), "plain");
    }
}
