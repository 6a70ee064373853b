//! pconnect: the `connect` agent and CLI. `run` executes one parsed command line.

pub mod cli;
mod commands;
pub mod debug;
pub mod dev;
mod direct;
pub mod drain;
pub mod embedded;
mod foreground;
pub mod home;
pub mod link;
mod link_auth;
mod local_port;
mod metrics;
pub mod probe;
pub mod project;
pub mod runtime;
pub mod session;
pub mod shutdown;
pub mod state;
pub use pconnect_proto::target;
pub use pconnect_proto::timefmt;
pub mod tls;
pub mod ui;

use clap::CommandFactory;
use cli::{Cli, Command, HubCommand};
use shutdown::Shutdown;
use ui::Ui;

/// Runs a command until it ends or `shutdown` stops it, and returns its exit code; the error
/// (already shaped for the user) is printed by the caller.
pub async fn run(cli: Cli, shutdown: Shutdown) -> anyhow::Result<u8> {
    let ui = Ui { json: cli.json };
    if let Some(addr) = cli.metrics {
        serve_metrics(ui, addr).await?;
    }
    match cli.command {
        Command::Plan { file } => {
            let changes = commands::plan::plan_command(ui, file, &shutdown).await?;
            Ok(if changes { commands::plan::CHANGES_EXIT } else { 0 })
        }
        // Exit 1 when the running `up`'s last apply failed (the status says why).
        Command::Status { file } => Ok(if commands::detach::status(ui, file).await? { 0 } else { 1 }),
        command => run_command(ui, command, &shutdown).await.map(|()| 0),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` for as long as the command runs.
async fn serve_metrics(ui: Ui, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen for metrics on {addr}: {e}. Pick another --metrics address or stop what uses it")
    })?;
    ui.metrics_serving(listener.local_addr()?);
    let observe = std::sync::Arc::new(metrics::Observed);
    // Until the process exits with the command.
    tokio::spawn(pconnect_link::metrics::serve(listener, observe, tokio_util::sync::CancellationToken::new()));
    Ok(())
}

async fn run_command(ui: Ui, command: Command, shutdown: &Shutdown) -> anyhow::Result<()> {
    match command {
        Command::Plan { .. } | Command::Status { .. } => unreachable!("handled by run"),

        Command::Up(args) => commands::up::up(ui, args, shutdown).await,
        Command::Down { file } => commands::detach::down(ui, file).await,
        Command::Init(args) => commands::init::init(ui, args).await,
        Command::Clone(args) => commands::clone::clone(ui, args, shutdown).await,
        Command::Login(args) => commands::login::login(ui, args).await,
        Command::Whoami => commands::login::whoami(ui, shutdown).await,
        Command::Logout => commands::login::logout(ui),
        Command::Expose(args) => commands::expose::expose(ui, args, shutdown).await,
        Command::Debug(args) => commands::debug::debug(ui, args, shutdown).await,
        Command::Reach(args) => commands::reach::reach(ui, args, shutdown).await,
        Command::Services => commands::services::services(ui, shutdown).await,
        Command::Share(args) => commands::share::share(ui, args, shutdown).await,
        Command::Join(args) => commands::join::join(ui, args, shutdown).await,
        Command::Links { command } => commands::links::links(ui, command, shutdown).await,
        Command::Docs(docs) => {
            ui.files_written(&docs.run(Cli::command())?);
            Ok(())
        }
        Command::Hub { command: HubCommand::Status } => {
            let (dir, running) = embedded::status().await?;
            ui.hub_status(&dir, running.as_ref());
            Ok(())
        }
        Command::Hub { command: HubCommand::Stop } => {
            ui.hub_stopped(embedded::stop().await?);
            Ok(())
        }
        Command::Hub { command: HubCommand::Run { data } } => embedded::run(data).await,
    }
}
