//! `connect`: parse arguments, set up logging, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use pconnect::cli::Cli;
use pconnect::ui::Ui;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PCONNECT_LOG").unwrap_or_else(|_| "off".into()))
        .with_writer(std::io::stderr)
        .init();
    let ui = Ui { json: cli.json };
    match pconnect::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            ui.error(&error);
            ExitCode::FAILURE
        }
    }
}
