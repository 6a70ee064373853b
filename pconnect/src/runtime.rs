//! The agent's runtime: tokio's current-thread scheduler that, after each wake-up, keeps polling
//! for a short window before it lets the thread sleep again.
//!
//! A tunnel's round trip passes four processes (client, reach agent, exposing agent, target) and
//! every hop that finds its process asleep pays a wake-up: the kernel's scheduler, and on a virtual
//! machine an inter-processor interrupt that exits to the host. Most of a round trip's answer
//! comes back within tens of microseconds, so an agent that has just been woken keeps checking
//! its sockets for [`DEFAULT_WINDOW`] instead of sleeping at once, as the Go runtime's spinning
//! threads and the kernel's halt polling do. While it spins it gives the CPU to any other runnable
//! thread at every turn (`sched_yield`), so the spin takes time other threads did not want.
//!
//! The window starts at each real wake-up and again after every turn that ran other tasks, so the
//! thread sleeps once a whole window has passed with nothing to do: an idle agent spins once per
//! heartbeat, a busy one a window past its last event. The price is CPU (10-20% more per round
//! trip, measured in ARCHITECTURE.md); `PCONNECT_SPIN_US` sets the window in microseconds, and `0`
//! turns spinning off.

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Runtime};

/// How long an agent keeps polling after a wake-up. Measured with `pconnect-bench --peers` on the
/// direct path; see ARCHITECTURE.md.
pub const DEFAULT_WINDOW: Duration = Duration::from_micros(50);

/// A turn of the spin that takes longer than this ran other tasks (an idle turn, one non-blocking
/// poll of the sockets and one `sched_yield`, takes about a microsecond).
const BUSY_TURN: Duration = Duration::from_micros(3);

/// The environment variable that sets the window in microseconds (`0`: never spin).
pub const WINDOW_ENV: &str = "PCONNECT_SPIN_US";

/// The longest window [`WINDOW_ENV`] may ask for: past a few milliseconds a spin only burns CPU.
pub const MAX_WINDOW: Duration = Duration::from_millis(10);

/// The window [`WINDOW_ENV`] asks for, [`DEFAULT_WINDOW`] when it is unset; a sentence for the
/// user when it is not a number of microseconds up to [`MAX_WINDOW`].
pub fn window_from_env() -> Result<Duration, String> {
    match std::env::var(WINDOW_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_WINDOW),
        Ok(value) => parse_window(&value),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{WINDOW_ENV} is not text: unset it, or set microseconds (0 turns spinning off)"))
        }
    }
}

fn parse_window(value: &str) -> Result<Duration, String> {
    let max = MAX_WINDOW.as_micros();
    match value.trim().parse::<u64>() {
        Ok(us) if u128::from(us) <= max => Ok(Duration::from_micros(us)),
        _ => Err(format!(
            "{WINDOW_ENV}={value:?} is not a spin window: give microseconds from 0 (never spin) to {max}, or unset it for {}",
            DEFAULT_WINDOW.as_micros()
        )),
    }
}

/// A current-thread runtime with every driver that, unless `window` is zero, spins for `window`
/// after each wake-up (the spin is a task of its own, already spawned).
pub fn build(window: Duration) -> std::io::Result<Runtime> {
    let mut builder = Builder::new_current_thread();
    builder.enable_all();
    if window.is_zero() {
        return builder.build();
    }
    let runtime = builder.on_thread_unpark(wake_spinner).build()?;
    runtime.spawn(spin(window));
    Ok(runtime)
}

/// Spins for `window` after each wake-up of the runtime's thread, until the runtime stops.
async fn spin(window: Duration) {
    loop {
        woken().await;
        let mut until = Instant::now() + window;
        loop {
            // Another runnable thread on this CPU goes first.
            std::thread::yield_now();
            let yielded = Instant::now();
            // Back to the scheduler, which polls the sockets without blocking (its `park_yield`)
            // before it polls this task again.
            tokio::task::yield_now().await;
            let now = Instant::now();
            // A long turn means other tasks ran: the window starts again from their work.
            if now - yielded > BUSY_TURN {
                until = now + window;
            }
            if now >= until {
                break;
            }
        }
    }
}

/// The spinner's side of the wake-up: set by the runtime's unpark hook, taken by the spinner.
#[derive(Default)]
struct Signal {
    woken: bool,
    waker: Option<Waker>,
}

thread_local! {
    static SIGNAL: RefCell<Signal> = RefCell::default();
}

/// The runtime's unpark hook: it has just slept, so the spinner starts a window.
fn wake_spinner() {
    let waker = SIGNAL.with_borrow_mut(|s| {
        s.woken = true;
        s.waker.take()
    });
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Resolves once the runtime's thread has slept and woken since the last call.
async fn woken() {
    poll_fn(|cx| {
        SIGNAL.with_borrow_mut(|s| {
            if std::mem::take(&mut s.woken) {
                Poll::Ready(())
            } else {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream as StdUnixStream;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    use super::*;

    /// Nanoseconds this thread has run on a CPU (the scheduler's own account).
    fn thread_cpu() -> Duration {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
        let ns = stat.split_whitespace().next().and_then(|n| n.parse().ok()).expect("run time in ns");
        Duration::from_nanos(ns)
    }

    /// How long the peer thread takes to answer: long enough that a thread that does not spin has
    /// always gone to sleep by then, however the machine schedules the two.
    const ANSWER_AFTER: Duration = Duration::from_micros(200);

    /// Round trips of one byte between a task on `runtime` and a peer thread that answers each
    /// byte after [`ANSWER_AFTER`]; returns how many times the runtime's thread went to sleep
    /// meanwhile.
    fn parks_over_round_trips(window: Duration, round_trips: usize) -> u64 {
        let runtime = build(window).expect("runtime");
        let (ours, mut theirs) = StdUnixStream::pair().expect("socket pair");
        let peer = std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            while theirs.read_exact(&mut byte).is_ok() {
                std::thread::sleep(ANSWER_AFTER);
                theirs.write_all(&byte).expect("answer");
            }
        });
        let metrics = runtime.handle().metrics();
        let parks = runtime.block_on(async {
            ours.set_nonblocking(true).expect("non-blocking");
            let mut ours = UnixStream::from_std(ours).expect("registered");
            // Warm up, then count.
            ours.write_all(&[0]).await.expect("write");
            ours.read_exact(&mut [0u8; 1]).await.expect("read");
            let before = metrics.worker_park_count(0);
            for i in 0..round_trips {
                ours.write_all(&[i as u8]).await.expect("write");
                let mut back = [0u8; 1];
                ours.read_exact(&mut back).await.expect("read");
                assert_eq!(back[0], i as u8);
            }
            metrics.worker_park_count(0) - before
        });
        drop(runtime);
        peer.join().expect("peer thread");
        parks
    }

    #[test]
    fn answers_within_the_window_are_taken_without_sleeping() {
        // Without spinning, the thread sleeps while the peer answers, every round trip.
        let sleeping = parks_over_round_trips(Duration::ZERO, 200);
        assert!(sleeping >= 150, "without spinning the thread slept only {sleeping} times in 200 round trips");
        // A window far longer than the peer takes to answer, even on a busy machine: the thread
        // stays up (the window restarts at every answer, so it never runs out).
        let spinning = parks_over_round_trips(Duration::from_millis(20), 200);
        assert!(spinning < 50, "spinning, the thread still slept {spinning} times in 200 round trips");
    }

    #[test]
    fn an_idle_runtime_sleeps_once_its_window_is_over() {
        let runtime = build(DEFAULT_WINDOW).expect("runtime");
        let before = thread_cpu();
        // 20 wake-ups over 200 ms, each followed by one window of spinning.
        runtime.block_on(async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let used = thread_cpu() - before;
        assert!(used < Duration::from_millis(40), "an idle runtime used {used:?} of CPU in 200 ms");
    }

    #[test]
    fn the_window_is_microseconds_up_to_the_maximum() {
        assert_eq!(parse_window("0"), Ok(Duration::ZERO));
        assert_eq!(parse_window(" 25 "), Ok(Duration::from_micros(25)));
        assert_eq!(parse_window("10000"), Ok(MAX_WINDOW));
        for bad in ["10001", "-1", "50us", "", "1e3"] {
            let error = parse_window(bad).expect_err(bad);
            assert!(error.contains("PCONNECT_SPIN_US") && error.contains("microseconds"), "{error}");
        }
    }
}
