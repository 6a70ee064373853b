//! pconnect: the `connect` agent and CLI. `run` executes one parsed command line.

pub mod cli;
mod commands;
pub mod debug;
pub mod dev;
pub mod drain;
pub mod embedded;
pub mod home;
pub mod link;
mod link_auth;
mod local_port;
pub mod probe;
pub mod project;
pub mod session;
mod signals;
pub mod state;
pub use pconnect_proto::target;
pub use pconnect_proto::timefmt;
pub mod tls;
pub mod ui;

use cli::{Cli, Command, HubCommand};
use ui::Ui;

/// Runs a command and returns its exit code; the error (already shaped for the user) is printed by
/// the caller.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let ui = Ui { json: cli.json };
    if let Command::Plan { file } = cli.command {
        let changes = commands::plan::plan_command(ui, file).await?;
        return Ok(if changes { commands::plan::CHANGES_EXIT } else { 0 });
    }
    run_command(ui, cli.command).await.map(|()| 0)
}

async fn run_command(ui: Ui, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Plan { .. } => unreachable!("handled by run"),
        Command::Up(args) => commands::up::up(ui, args).await,
        Command::Down { file } => commands::detach::down(ui, file).await,
        Command::Status { file } => commands::detach::status(ui, file).await,
        Command::Init(args) => commands::init::init(ui, args).await,
        Command::Clone(args) => commands::clone::clone(ui, args).await,
        Command::Login(args) => commands::login::login(ui, args).await,
        Command::Whoami => commands::login::whoami(ui).await,
        Command::Logout => commands::login::logout(ui),
        Command::Expose(args) => commands::expose::expose(ui, args).await,
        Command::Debug(args) => commands::debug::debug(ui, args).await,
        Command::Reach(args) => commands::reach::reach(ui, args).await,
        Command::Services => commands::services::services(ui).await,
        Command::Share(args) => commands::share::share(ui, args).await,
        Command::Join(args) => commands::join::join(ui, args).await,
        Command::Links { command } => commands::links::links(ui, command).await,
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
