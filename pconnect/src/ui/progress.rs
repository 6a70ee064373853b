//! Progress for waits longer than a second (starting the local hub, `up --detach`): a spinner on
//! stderr, only when stderr is a terminal (so never in a pipe or a log, and never mixed into
//! `--json` output on stdout); erased when the wait ends.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// A wait shorter than this shows nothing.
const QUIET_FOR: Duration = Duration::from_secs(1);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Runs `work`; if it takes longer than a second, shows `message` with a spinner meanwhile.
pub(crate) async fn while_waiting<T>(message: &str, work: impl Future<Output = T>) -> T {
    {
        if !std::io::stderr().is_terminal() {
            return work.await;
        }
        tokio::pin!(work);
        tokio::select! {
            out = &mut work => return out,
            () = tokio::time::sleep(QUIET_FOR) => {}
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut frame = 0;
        let out = loop {
            tokio::select! {
                out = &mut work => break out,
                _ = tick.tick() => {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r{} {}", FRAMES[frame % FRAMES.len()], super::terminal_safe(message));
                    let _ = err.flush();
                    frame += 1;
                }
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
        out
    }
}
