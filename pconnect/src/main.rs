//! `connect`: parse arguments, set up logging, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use pconnect::cli::Cli;
use pconnect::shutdown::Shutdown;
use pconnect::ui::Ui;
use pconnect_proto::exit;

/// After a forced stop the command gets this long to cut its tunnels (with resets) before the
/// process exits anyway.
const FORCED_EXIT_AFTER: std::time::Duration = std::time::Duration::from_millis(1500);

/// mimalloc: frame buffers are reused from its segments instead of mapped and faulted in afresh
/// (see `bench/`: glibc's malloc spent a fifth of the data path's CPU in page faults).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: an agent's tunnels are few next to a hub's, and on one thread a frame moves from the
/// link's connection task to the tunnel's task and back without cross-thread wakeups (futexes).
/// Measured with `pconnect-bench --peers`: less CPU per GiB and shorter first bytes. The thread
/// spins briefly after each wake-up before it sleeps again (`pconnect::runtime`).
fn main() -> ExitCode {
    let window = match pconnect::runtime::window_from_env() {
        Ok(window) => window,
        Err(sentence) => {
            Ui { json: false }.error(&anyhow::anyhow!(sentence));
            return ExitCode::from(exit::USAGE);
        }
    };
    let runtime = match pconnect::runtime::build(window) {
        Ok(runtime) => runtime,
        Err(e) => {
            Ui { json: false }.error(&anyhow::Error::new(e).context("cannot start the async runtime"));
            return ExitCode::from(exit::FAILURE);
        }
    };
    runtime.block_on(run())
}

async fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version are not errors; a wrong command line has its own code.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::SUCCESS });
        }
    };
    cli.log.init("off");
    // Every tunnel holds a socket at each end: the default 1024 would cap an agent near 500.
    pconnect_link::admission::raise_open_files_limit();
    let ui = Ui { json: cli.json };
    let shutdown = Shutdown::new();
    tokio::spawn(pconnect::shutdown::on_signals(shutdown.clone()));
    let outcome = tokio::select! {
        outcome = pconnect::run(cli, shutdown.clone()) => outcome,
        // A second signal: whatever the command was still doing, stop now.
        _ = async { shutdown.forced().await; tokio::time::sleep(FORCED_EXIT_AFTER).await } => Ok(exit::INTERRUPTED),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            ui.error(&error);
            ExitCode::from(exit::FAILURE)
        }
    }
}
