//! `pconnect-hub`: parse arguments, set up logging, raise the open-files limit, run, map the outcome
//! to an exit code. The command line itself is `pconnect_hub::cli`.

use std::process::ExitCode;

use clap::Parser;
use pconnect_hub::cli::{self, Cli};

/// mimalloc: frame buffers are reused from its segments instead of mapped and faulted in afresh
/// (see `bench/`: glibc's malloc spent a fifth of the data path's CPU in page faults).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PCONNECT_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    pconnect_hub::admission::raise_open_files_limit();
    match cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            pconnect_hub::ui::error(&e);
            ExitCode::FAILURE
        }
    }
}
