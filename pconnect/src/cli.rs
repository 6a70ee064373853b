//! Raw command-line input, as the user typed it. Resolution into settings happens in the commands.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "connect", version, about = "Share local services with your team through a pconnect hub")]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub log: pconnect_link::logging::LogArgs,
    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` on this address (e.g. 127.0.0.1:9465)
    /// while a long-running command (expose, reach, join, clone, up) runs.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to a team hub (pins its certificate on first use).
    Login(LoginArgs),
    /// Show who this agent is logged in as.
    Whoami,
    /// Forget the saved login.
    Logout,
    /// Expose a local service to your workspace (runs until Ctrl+C).
    Expose(ExposeArgs),
    /// Bring a workspace service to a local port (runs until Ctrl+C).
    Reach(ReachArgs),
    /// List the workspace's services.
    Services,
    /// Share everything you expose with a short code: `share create|list|revoke`.
    Share(ShareArgs),
    /// Your public links: `links list|revoke`.
    Links {
        #[command(subcommand)]
        command: Option<LinksCommand>,
    },
    /// Join a teammate's share: their services on the same local ports (runs until Ctrl+C).
    Join(JoinArgs),
    /// Reach every online service of a teammate and write .env.pconnect (or list teammates).
    Clone(CloneArgs),
    /// Show what `connect up` would change (exit code 2 when there are changes).
    Plan {
        /// Project file (default: pconnect.yml here or in a parent directory).
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// Make the hub match pconnect.yml, serve it, and keep it so while running (alias: dev).
    #[command(alias = "dev")]
    Up(UpArgs),
    /// Stop a detached `connect up` of this project and remove what it created.
    Down {
        /// Project file (default: pconnect.yml here or in a parent directory).
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// What `connect up` is serving for this project: services, links, share codes, reach ports.
    Status {
        /// Project file (default: pconnect.yml here or in a parent directory).
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// Write a starter pconnect.yml from the services answering on common local ports.
    Init(InitArgs),
    /// Debug sessions: `debug list|stop|tail` (list by default).
    Debug(DebugArgs),
    /// Manage the embedded local hub.
    Hub {
        #[command(subcommand)]
        command: HubCommand,
    },
    #[command(flatten)]
    Docs(pconnect_link::cli_docs::DocsCommand),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Project file (default: pconnect.yml here or in a parent directory).
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    /// Apply, print what is up, and keep serving in the background (stop with `connect down`).
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub direct: DirectArgs,
}

/// The direct path of an exposing agent (`expose`, `up`).
#[derive(Debug, Clone, Args)]
pub struct DirectArgs {
    /// Where teammates' agents may connect directly (mutual TLS, tickets from the hub); the hub
    /// relays when they cannot. Default: every interface, a free port.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0", env = "PCONNECT_DIRECT_LISTEN")]
    pub direct_listen: String,
    /// Never accept direct connections: every tunnel goes through the hub (`direct: false` in
    /// pconnect.yml does the same for a project).
    #[arg(long, env = "PCONNECT_NO_DIRECT", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_direct: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write (default: ./pconnect.yml).
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    /// Project name (default: the directory's name).
    #[arg(long)]
    pub project: Option<String>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// Also probe these ports (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Hub address, e.g. https://hub.example.com:7779
    #[arg(long, env = "PCONNECT_HUB")]
    pub hub: String,
    /// Member token (prefer PCONNECT_TOKEN or --token-file, which stay out of the process list).
    #[arg(long, env = "PCONNECT_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// File holding the member token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Verify the hub with this CA certificate (PEM) instead of pinning its key.
    #[arg(long, conflicts_with_all = ["fingerprint", "trust_on_first_use"])]
    pub ca: Option<PathBuf>,
    /// The hub's key fingerprint (`SHA256:…`, printed by the hub at start): checked before the
    /// token is sent, then pinned.
    #[arg(long, value_name = "SHA256:…")]
    pub fingerprint: Option<String>,
    /// Pin whatever key the hub presents without asking (only on a network you trust).
    #[arg(long, conflicts_with = "fingerprint")]
    pub trust_on_first_use: bool,
}

#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// What to expose: 3000, :3000 or host:port.
    pub target: String,
    /// Service name (default: from the port, e.g. 5432 -> postgres).
    #[arg(long, short)]
    pub name: Option<String>,
    /// Also publish a temporary public URL (webhooks, demos).
    #[arg(long, conflicts_with = "public")]
    pub link: bool,
    /// How long the --link URL works: 1h, 24h (default), 7d, or any up to 30d.
    #[arg(long, requires = "link", value_name = "DUR")]
    pub link_expires: Option<String>,
    /// Also publish a persistent public URL (the same one every time you expose this name).
    #[arg(long)]
    pub public: bool,
    /// Require HTTP basic auth on the URL. The user:password comes from PCONNECT_LINK_AUTH, or is
    /// asked for on the terminal: never on the command line, where `ps` shows it.
    #[arg(long)]
    pub auth: bool,
    /// Only these client addresses may use the URL (CIDR; repeatable).
    #[arg(long = "allow-ip", value_name = "CIDR")]
    pub allow_ip: Vec<String>,
    /// Only these methods are let through, e.g. GET,POST.
    #[arg(long)]
    pub methods: Option<String>,
    /// Only these paths are let through, e.g. /webhooks/* (repeatable).
    #[arg(long = "paths", value_name = "PATTERN")]
    pub paths: Vec<String>,
    /// At most this many requests per minute, e.g. 60/min.
    #[arg(long, value_name = "N/min")]
    pub rate_limit: Option<String>,
    /// `rewrite` sends the target's host as Host (for dev servers that check it); default passes it through.
    #[arg(long, value_name = "passthrough|rewrite", default_value = "passthrough")]
    pub host_header: String,
    /// Capture the traffic (HTTP, PostgreSQL, Redis) and print a viewer link to share.
    #[arg(long)]
    pub debug: bool,
    #[command(flatten)]
    pub direct: DirectArgs,
    /// With --debug: turn on the assistant (a model when PCONNECT_AI_URL is set, else offline insights).
    #[arg(long, requires = "debug")]
    pub ai: bool,
    /// On Ctrl+C or SIGTERM, let open connections finish for up to this long (default 10s; a second signal stops at once).
    #[arg(long, value_name = "DUR")]
    pub grace: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DebugArgs {
    #[command(subcommand)]
    pub command: Option<DebugCommand>,
    /// List your debug sessions (the default).
    #[arg(long, short)]
    pub list: bool,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// List your debug sessions (what `connect debug` does).
    List,
    /// End a debug session: its viewers are told and its link stops working.
    Stop { id: String },
    /// Print each captured exchange as one line, live, until Ctrl+C or the session ends.
    Tail { id: String },
}

#[derive(Debug, Args)]
pub struct ReachArgs {
    /// Workspace service to reach.
    pub service: String,
    /// Local port (default: the service's own port; 0 picks a free one).
    #[arg(long, short)]
    pub port: Option<u16>,
    /// Local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// On Ctrl+C or SIGTERM, let open connections finish for up to this long (default 10s; a second signal stops at once).
    #[arg(long, value_name = "DUR")]
    pub grace: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ShareArgs {
    #[command(subcommand)]
    pub command: Option<ShareCommand>,
    /// A descriptive name for the share.
    #[arg(long, short)]
    pub name: Option<String>,
    /// How long the code works: 1h, 4h, 24h (default), 7d, or any like 90s, 15m, 36h (at most 7d).
    #[arg(long, short)]
    pub expires: Option<String>,
    /// List your active shares.
    #[arg(long, short, conflicts_with_all = ["name", "expires", "revoke"])]
    pub list: bool,
    /// Revoke a share (same as `connect share revoke <code>`).
    #[arg(long, value_name = "CODE", conflicts_with_all = ["name", "expires"])]
    pub revoke: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Create a share of everything you expose and print its code (what `connect share` does).
    Create(ShareCreateArgs),
    /// List your active shares (same as `connect share --list`).
    List,
    /// Revoke a share: new joins are refused and live tunnels close.
    Revoke { code: String },
}

#[derive(Debug, Args)]
pub struct ShareCreateArgs {
    /// A descriptive name for the share.
    #[arg(long, short)]
    pub name: Option<String>,
    /// How long the code works: 1h, 4h, 24h (default), 7d, or any like 90s, 15m, 36h (at most 7d).
    #[arg(long, short)]
    pub expires: Option<String>,
}

#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The teammate whose services to reach.
    #[arg(required_unless_present = "list")]
    pub teammate: Option<String>,
    /// List teammates with online services.
    #[arg(long, conflicts_with = "teammate")]
    pub list: bool,
    /// Env file to write.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Do not write an env file.
    #[arg(long)]
    pub no_env: bool,
    /// Local address to open the services on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// On Ctrl+C or SIGTERM, let open connections finish for up to this long (default 10s; a second signal stops at once).
    #[arg(long, value_name = "DUR")]
    pub grace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LinksCommand {
    /// List your public links (what `connect links` does).
    List,
    /// End a link now: its URL answers 410 from then on.
    Revoke { subdomain: String },
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The share code your teammate gave you.
    pub code: String,
    /// Local address to open the shared services on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// On Ctrl+C or SIGTERM, let open connections finish for up to this long (default 10s; a second signal stops at once).
    #[arg(long, value_name = "DUR")]
    pub grace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Is the embedded local hub running, and where.
    Status,
    /// Stop the embedded local hub.
    Stop,
    /// Run the embedded local hub in the foreground (started for you by other commands).
    #[command(hide = true)]
    Run {
        #[arg(long)]
        data: PathBuf,
    },
}
