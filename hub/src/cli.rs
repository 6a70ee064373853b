//! The hub's command line: raw clap input ([`Cli`]) and [`run`], which turns it into settings and
//! calls the library. `main.rs` only parses, sets up logging and maps the outcome to an exit code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admission::Caps;
use crate::config_file::{self, HubFile};
use crate::store::{PostgresUrl, StoreLocation};
use crate::ui::Ui;
use crate::{DirectPolicy, HubConfig, Listeners, members};

#[derive(Parser)]
#[command(name = "pconnect-hub", version, about = "The pconnect relay a team runs")]
pub struct Cli {
    /// Print machine-readable JSON (snake_case keys) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub log: pconnect_link::logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the hub.
    Serve(Box<ServeArgs>),
    /// Manage the members of a workspace (`default` unless --workspace says otherwise).
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Read the audit log: logins, shares, joins (and failed ones), links, debug sessions, members.
    Audit {
        #[command(flatten)]
        store: StoreArgs,
        /// Only entries from this long ago on, e.g. 1h, 90m, 7d (default 24h; 0 means all).
        #[arg(long, default_value = "24h", value_parser = parse_since, value_name = "DUR")]
        since: u64,
        /// At most this many entries (the latest).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Move a hub's SQLite store into PostgreSQL (stop the hub first), then start hubs with
    /// `--store`: the same tokens, share codes and link URLs keep working.
    Migrate {
        /// The data directory of the hub to move (its `hub.db`).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL database to move into, e.g. postgres://pconnect@db:5432/pconnect (keep the
        /// password in PGPASSWORD or ~/.pgpass); it must hold no data.
        #[arg(long, env = "PCONNECT_HUB_STORE", hide_env_values = true, value_name = "URL")]
        to: String,
        /// Replace whatever the database holds (its members, links, shares, audit log and key are
        /// deleted in the same transaction).
        #[arg(long)]
        force: bool,
    },
    #[command(flatten)]
    Docs(pconnect_link::cli_docs::DocsCommand),
}

/// Which store an admin command opens: `--store` when given, else SQLite in `--data`.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// The hub's data directory: its SQLite store, and the admin socket of a hub running on it.
    #[arg(long, env = "PCONNECT_HUB_DATA")]
    data: Option<PathBuf>,
    /// A PostgreSQL store (postgres://user@host:5432/db) instead of the SQLite one in --data.
    #[arg(long, env = "PCONNECT_HUB_STORE", hide_env_values = true, value_name = "URL")]
    store: Option<String>,
}

impl StoreArgs {
    fn location(&self) -> anyhow::Result<StoreLocation> {
        StoreLocation::resolve(self.data.as_deref(), self.store.as_deref())
    }

    fn data_dir(&self) -> Option<&Path> {
        self.data.as_deref()
    }
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Settings file (YAML; keys are these flags in snake_case). A flag beats its PCONNECT_HUB_*
    /// variable, which beats the file, which beats the default.
    #[arg(long, env = "PCONNECT_HUB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the certificate, the admin socket and (unless --store) the SQLite store.
    #[arg(long, env = "PCONNECT_HUB_DATA")]
    data: Option<PathBuf>,
    /// Keep the hub's state in PostgreSQL instead of SQLite in --data, e.g.
    /// postgres://pconnect@db:5432/pconnect (keep the password in PGPASSWORD or ~/.pgpass).
    /// Several hubs may share one database.
    #[arg(long, env = "PCONNECT_HUB_STORE", hide_env_values = true, value_name = "URL")]
    store: Option<String>,
    /// TLS address agents dial (port 0 picks a free port).
    #[arg(long, env = "PCONNECT_HUB_LISTEN", default_value = "0.0.0.0:7779")]
    listen: SocketAddr,
    /// Plain HTTP address (`/healthz`, public links).
    #[arg(long, env = "PCONNECT_HUB_HTTP", default_value = "0.0.0.0:7780")]
    http: SocketAddr,
    /// HTTPS address for public links (HTTP/2 by ALPN; uses --cert/--key or the self-signed one).
    #[arg(long, env = "PCONNECT_HUB_HTTPS")]
    https: Option<SocketAddr>,
    /// Plain HTTP address for operators: Prometheus `/metrics`, `/healthz`, `/readyz` (off unless
    /// given; keep it off the public internet).
    #[arg(long, env = "PCONNECT_HUB_METRICS", value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Make this hub one replica of a cluster sharing the --store database: the address other
    /// replicas reach it on (mutual TLS with a credential kept in the store; keep it on the
    /// replicas' private network).
    #[arg(long, env = "PCONNECT_HUB_PEER_LISTEN", value_name = "ADDR")]
    peer_listen: Option<SocketAddr>,
    /// host:port the other replicas dial for --peer-listen (default: its address, when it is not
    /// 0.0.0.0 or ::).
    #[arg(long, env = "PCONNECT_HUB_ADVERTISE", value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Domain public links live under: <sub>.<domain>.
    #[arg(long, env = "PCONNECT_HUB_DOMAIN", default_value = "localhost")]
    domain: String,
    /// Time a public-link client has to send a request head (e.g. 10s).
    #[arg(long, env = "PCONNECT_HUB_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    header_timeout: std::time::Duration,
    /// On SIGTERM/SIGINT, how long streams in flight may finish before they are cut (a second
    /// signal exits at once; 0 cuts at once).
    #[arg(long, env = "PCONNECT_HUB_GRACE", default_value = "10s", value_parser = parse_timeout)]
    grace: std::time::Duration,
    /// An ingress connection with no request in flight is closed after this (e.g. 60s).
    #[arg(long, env = "PCONNECT_HUB_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    idle_timeout: std::time::Duration,
    /// Most connections the public ingress holds at once (default: half the open-files limit).
    #[arg(long, env = "PCONNECT_HUB_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most ingress connections one client address holds at once (default: 256, at most half
    /// of --max-connections).
    #[arg(long, env = "PCONNECT_HUB_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// A proxy in front of the ingress (CIDR, repeatable; comma-separated in the variable) whose
    /// X-Forwarded-For is believed.
    #[arg(long = "trust-proxy", env = "PCONNECT_HUB_TRUST_PROXY", value_delimiter = ',', value_name = "CIDR", value_parser = parse_cidr)]
    trust_proxy: Vec<pconnect_proto::link::Cidr>,
    /// PEM certificate to present instead of the generated self-signed one.
    #[arg(long, env = "PCONNECT_HUB_CERT")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, env = "PCONNECT_HUB_KEY")]
    key: Option<PathBuf>,
    /// Forbid direct connections between agents: no certificates, no tickets, every tunnel relayed
    /// by the hub (for teams that must see every connection pass a relay they run).
    #[arg(long, env = "PCONNECT_HUB_NO_DIRECT", value_parser = clap::builder::FalseyValueParser::new())]
    no_direct: bool,
    /// Forbid direct connections in this workspace only (repeatable; comma-separated in the
    /// variable): its tunnels are all relayed, other workspaces keep the direct path.
    #[arg(long = "no-direct-in", env = "PCONNECT_HUB_NO_DIRECT_IN", value_delimiter = ',', value_name = "WORKSPACE")]
    no_direct_in: Vec<String>,
    /// How long the certificates agents get for the direct path are valid (renewed at half-life;
    /// 2s to 7d). Also about how long an agent cut off from the hub keeps a teammate's direct
    /// connection: a removed member's tunnels end by then (and a quarter of it, at most a minute,
    /// more) even if no one could tell the agent.
    #[arg(long, env = "PCONNECT_HUB_DIRECT_CERT_LIFETIME", default_value = "1h", value_parser = parse_cert_lifetime)]
    direct_cert_lifetime: i64,
}

impl ServeArgs {
    /// Fills what neither a flag nor a variable set from `--config`'s file.
    fn with_file(mut self, matches: Option<&ArgMatches>) -> anyhow::Result<Self> {
        let Some(path) = &self.config else { return Ok(self) };
        let file = HubFile::load(path)?;
        let unset = |id: &str| !config_file::set_explicitly(matches, id);
        let timeout =
            |text: &str, key: &str| parse_timeout(text).map_err(|e| anyhow::anyhow!("{}: {key}: {e}", path.display()));
        macro_rules! take {
            ($($field:ident),*) => {$(
                if unset(stringify!($field)) && let Some(value) = file.$field {
                    self.$field = value.into();
                }
            )*};
        }
        take!(listen, http);
        macro_rules! take_optional {
            ($($field:ident),*) => {$(
                if unset(stringify!($field)) && file.$field.is_some() {
                    self.$field = file.$field;
                }
            )*};
        }
        take_optional!(
            data,
            store,
            https,
            metrics,
            peer_listen,
            advertise,
            max_connections,
            max_connections_per_ip,
            cert,
            key
        );
        if unset("domain")
            && let Some(domain) = file.domain
        {
            self.domain = domain;
        }
        for (id, text, slot) in [
            ("header_timeout", file.header_timeout, &mut self.header_timeout),
            ("grace", file.grace, &mut self.grace),
            ("idle_timeout", file.idle_timeout, &mut self.idle_timeout),
        ] {
            if unset(id)
                && let Some(text) = text
            {
                *slot = timeout(&text, id)?;
            }
        }
        if unset("no_direct")
            && let Some(direct) = file.direct
        {
            self.no_direct = !direct;
        }
        if unset("no_direct_in")
            && let Some(workspaces) = file.no_direct_in
        {
            self.no_direct_in = workspaces;
        }
        if unset("direct_cert_lifetime")
            && let Some(text) = file.direct_cert_lifetime
        {
            self.direct_cert_lifetime = parse_cert_lifetime(&text)
                .map_err(|e| anyhow::anyhow!("{}: direct_cert_lifetime: {e}", path.display()))?;
        }
        if unset("trust_proxy")
            && let Some(cidrs) = file.trust_proxy
        {
            self.trust_proxy = cidrs
                .iter()
                .map(|c| parse_cidr(c).map_err(|e| anyhow::anyhow!("{}: trust_proxy: {e}", path.display())))
                .collect::<anyhow::Result<_>>()?;
        }
        anyhow::ensure!(
            self.cert.is_some() == self.key.is_some(),
            "a certificate needs its key: give both --cert and --key (or cert: and key: in the file), or neither"
        );
        Ok(self)
    }
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Add a member and print their token (once).
    Add {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Make the member a workspace admin.
        #[arg(long)]
        admin: bool,
        /// Workspace to add the member to (created when new).
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// List members.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Workspace whose members to list.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// Remove a member: their token stops working, and a running hub ends their agents' links,
    /// public links, shares, debug sessions and tunnels at once.
    Remove {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Workspace the member belongs to.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
}

/// Parses the process's command line, keeping clap's matches (they say which settings came from a
/// flag or a variable, so a config file fills only the rest).
pub fn parse() -> Result<(Cli, ArgMatches), clap::Error> {
    let matches = Cli::command().try_get_matches()?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok((cli, matches))
}

/// Runs one command line.
pub async fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    let ui = Ui { json: cli.json };
    match cli.command {
        Command::Serve(args) => {
            let args = (*args).with_file(matches.subcommand_matches("serve"))?;
            let ServeArgs {
                config: _,
                data,
                store,
                listen,
                http,
                https,
                metrics,
                peer_listen,
                advertise,
                domain,
                header_timeout,
                grace,
                idle_timeout,
                max_connections,
                max_connections_per_ip,
                trust_proxy,
                cert,
                key,
                no_direct,
                no_direct_in,
                direct_cert_lifetime,
            } = args;
            let https = match https {
                Some(addr) => Some(bind(addr, "HTTPS").await?),
                None => None,
            };
            let metrics = match metrics {
                Some(addr) => Some(bind(addr, "metrics").await?),
                None => None,
            };
            let peer = match peer_listen {
                Some(addr) => Some(bind(addr, "peer").await?),
                None => None,
            };
            let advertise = match (&peer, advertise) {
                (_, Some(advertise)) => Some(advertise),
                (Some(peer), None) => Some(advertised(peer.local_addr()?)?),
                (None, None) => None,
            };
            let listeners = Listeners {
                agents: bind(listen, "agent").await?,
                http: bind(http, "HTTP").await?,
                https,
                metrics,
                peer,
            };
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            let data = data.ok_or_else(|| {
                anyhow::anyhow!(
                    "no data directory: pass --data <dir>, set PCONNECT_HUB_DATA, or put `data:` in the --config file"
                )
            })?;
            let store = StoreLocation::resolve(Some(&data), store.as_deref())?;
            let defaults = HubConfig::new(data);
            let total = max_connections.unwrap_or(defaults.ingress_caps.total).max(1);
            let per_ip = max_connections_per_ip.unwrap_or(crate::DEFAULT_INGRESS_PER_IP.min(total / 2));
            let ingress_caps = Caps { total, per_client: per_ip.clamp(1, total) };
            let config = HubConfig {
                store,
                domain,
                cert: cert.zip(key),
                header_timeout,
                grace,
                idle_timeout,
                ingress_caps,
                trusted_proxies: trust_proxy,
                advertise,
                direct: DirectPolicy {
                    off: no_direct,
                    off_in: no_direct_in.into_iter().collect(),
                    cert_lifetime_secs: direct_cert_lifetime,
                },
                ..defaults
            };
            let prepared = crate::prepare(config, listeners).await?;
            ui.serving(&prepared.info);
            let shutdown = CancellationToken::new();
            tokio::spawn(crate::shutdown_on_signals(shutdown.clone()));
            prepared.serve(shutdown).await
        }
        Command::Member { command: MemberCommand::Add { name, store, admin: is_admin, workspace } } => {
            let (member, token) = members::add_member(&store.location()?, &workspace, &name, is_admin).await?;
            ui.member_added(&member, &token);
            Ok(())
        }
        Command::Member { command: MemberCommand::List { store, workspace } } => {
            ui.members(&workspace, &members::list_members(&store.location()?, &workspace).await?);
            Ok(())
        }
        Command::Member { command: MemberCommand::Remove { name, store, workspace } } => {
            let notice = members::remove_member(&store.location()?, store.data_dir(), &workspace, &name).await?;
            ui.member_removed(&name, &workspace, notice);
            Ok(())
        }
        Command::Docs(docs) => {
            ui.files_written(&docs.run(Cli::command())?);
            Ok(())
        }
        Command::Audit { store, since, limit } => {
            let since = match since {
                0 => 0,
                secs => pconnect_proto::clock::now().saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX)),
            };
            ui.audit(&crate::audit::read(&store.location()?, since, limit).await?);
            Ok(())
        }
        Command::Migrate { from, to, force } => {
            let to = PostgresUrl::parse(&to).map_err(anyhow::Error::msg)?;
            ui.migrated(&crate::migrate::migrate(&from, &to, force).await?);
            Ok(())
        }
    }
}

/// How far back `audit --since` reads: any duration up to ten years, `0` for everything.
fn parse_since(text: &str) -> Result<u64, String> {
    pconnect_proto::duration::parse_allowing_zero(text, 3650 * 86400).map_err(|e| e.to_string())
}

fn parse_cidr(text: &str) -> Result<pconnect_proto::link::Cidr, String> {
    text.parse()
}

/// Longest `--direct-cert-lifetime`: a week.
const MAX_CERT_LIFETIME_SECS: u64 = 7 * 86_400;
/// Shortest `--direct-cert-lifetime`: agents renew at half-life, at most once a second.
const MIN_CERT_LIFETIME_SECS: u64 = 2;

fn parse_cert_lifetime(text: &str) -> Result<i64, String> {
    let secs = pconnect_proto::duration::parse(text, MAX_CERT_LIFETIME_SECS).map_err(|e| e.to_string())?;
    if secs < MIN_CERT_LIFETIME_SECS {
        return Err(format!(
            "{secs}s is too short to renew in time (agents renew at half-life, at most once a second): \
             use {MIN_CERT_LIFETIME_SECS}s or more"
        ));
    }
    Ok(secs as i64)
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    pconnect_proto::duration::parse_allowing_zero(text, 3600)
        .map(std::time::Duration::from_secs)
        .map_err(|e| e.to_string())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for {what} connections on {addr}: {e}. Pick another address or stop what uses it"
        )
    })
}

/// The peer address to advertise for a peer listener bound to `addr`: itself, unless it is the
/// unspecified address (then only the operator knows which address peers can reach).
fn advertised(addr: SocketAddr) -> anyhow::Result<String> {
    anyhow::ensure!(
        !addr.ip().is_unspecified(),
        "--peer-listen {addr} listens on every interface: say which address the other replicas dial with \
         --advertise host:port"
    );
    Ok(addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_certificate_lifetime_is_a_duration_of_up_to_a_week() {
        assert_eq!(parse_cert_lifetime("30m"), Ok(1800));
        assert_eq!(parse_cert_lifetime("7d"), Ok(7 * 86_400));
        assert_eq!(parse_cert_lifetime("2s"), Ok(2));
        for bad in ["0s", "1s", "8d", "forever", ""] {
            assert!(parse_cert_lifetime(bad).is_err(), "{bad:?} was taken");
        }
    }
}
