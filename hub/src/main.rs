//! `pconnect-hub`: parse arguments, set up logging, raise the open-files limit, run, map the outcome
//! to an exit code. The command line itself is `pconnect_hub::cli`.

use std::process::ExitCode;

use pconnect_hub::cli;
use pconnect_proto::exit;

/// mimalloc: frame buffers are reused from its segments instead of mapped and faulted in afresh
/// (see `bench/`: glibc's malloc spent a fifth of the data path's CPU in page faults).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let (cli, matches) = match cli::parse() {
        Ok(parsed) => parsed,
        // Help and version are not errors; a wrong command line has its own code.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::SUCCESS });
        }
    };
    cli.log.init("warn");
    pconnect_hub::admission::raise_open_files_limit();
    let ui = pconnect_hub::ui::Ui { json: cli.json };
    match cli::run(cli, &matches).await {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(e) => {
            ui.error(&e);
            ExitCode::from(exit::FAILURE)
        }
    }
}
