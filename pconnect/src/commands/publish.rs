//! The public-link half of `connect expose --link/--public`: turning the flags into a checked
//! request, refusing database services, and asking the hub for the URL.

use std::time::Duration;

use anyhow::Result;
use pconnect_proto::link::{self, CreateLink, LinkInfo, LinkPolicy, MAX_LINK_SECS};
use pconnect_proto::share::parse_duration;
use pconnect_proto::wire::LINKS_PATH;

use crate::cli::ExposeArgs;
use crate::link::forward::ForwardLink;
use crate::target::Target;
use crate::{link_auth, probe};

/// How long the protocol probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A link to create once the service is registered.
#[derive(Debug)]
pub(crate) struct LinkRequest {
    pub(crate) persistent: bool,
    pub(crate) expires_in_secs: Option<u64>,
    pub(crate) policy: LinkPolicy,
}

/// Reads the link flags; `None` when neither `--link` nor `--public` was given. Every flag is
/// checked here, before anything is registered, so bad input creates nothing.
pub(crate) fn request(args: &ExposeArgs, target: &Target) -> Result<Option<LinkRequest>> {
    if !args.link && !args.public {
        let policy_flags = args.auth
            || !args.allow_ip.is_empty()
            || args.methods.is_some()
            || !args.paths.is_empty()
            || args.rate_limit.is_some()
            || args.host_header != "passthrough";
        anyhow::ensure!(
            !policy_flags,
            "link policies (--auth, --allow-ip, --methods, --paths, --rate-limit, --host-header) need --link or --public"
        );
        return Ok(None);
    }
    let expires_in_secs = match (&args.link_expires, args.link) {
        (Some(text), _) => Some(parse_duration(text, MAX_LINK_SECS)?),
        (None, true) => Some(link::DEFAULT_LINK_SECS),
        (None, false) => None,
    };
    let basic_auth = match args.auth {
        true => Some(link_auth::hash(&link_auth::credentials_for_flag()?)?),
        false => None,
    };
    let rewrite_host = match args.host_header.as_str() {
        "passthrough" => None,
        "rewrite" => Some(target.to_string()),
        other => anyhow::bail!("--host-header takes passthrough or rewrite, not '{other}'"),
    };
    let policy = LinkPolicy {
        basic_auth,
        basic_auth_sha256: None,
        allow_ips: args
            .allow_ip
            .iter()
            .map(|c| c.parse())
            .collect::<Result<_, String>>()
            .map_err(anyhow::Error::msg)?,
        methods: args
            .methods
            .as_deref()
            .map(link::parse_methods)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .unwrap_or_default(),
        paths: args
            .paths
            .iter()
            .map(|p| link::parse_path_pattern(p))
            .collect::<Result<_, String>>()
            .map_err(anyhow::Error::msg)?,
        rate_per_min: args.rate_limit.as_deref().map(link::parse_rate).transpose().map_err(anyhow::Error::msg)?,
        rewrite_host,
    };
    Ok(Some(LinkRequest { persistent: args.public, expires_in_secs, policy }))
}

/// Refuses to publish a database: by its port, or by what answers when probed.
pub(crate) async fn refuse_databases(args: &ExposeArgs, target: &Target, name: &str) -> Result<()> {
    let flag = if args.public { "--public" } else { "--link" };
    let what = match probe::protected_port(target.port) {
        Some(_) => format!("port {}", target.port),
        None => match probe::detect(&target.host, target.port, PROBE_TIMEOUT).await {
            Some(kind) if kind.is_database() => format!("port {}, answers as {}", target.port, kind_label(kind)),
            _ => return Ok(()),
        },
    };
    anyhow::bail!(
        "{flag} creates a public HTTP URL, which doesn't work for database/TCP services ({what}).\nTo access this service remotely, use: connect reach {name}"
    )
}

fn kind_label(kind: probe::Kind) -> &'static str {
    match kind {
        probe::Kind::Postgres => "PostgreSQL",
        probe::Kind::Mysql => "MySQL",
        probe::Kind::Redis => "Redis",
        probe::Kind::Mongo => "MongoDB",
        probe::Kind::Http => "HTTP",
        probe::Kind::Tcp => "TCP",
    }
}

/// Asks the hub for the URL of a registered service.
pub(crate) async fn create(link: &ForwardLink, service: &str, request: LinkRequest) -> Result<LinkInfo> {
    let body = CreateLink {
        service: service.to_string(),
        persistent: request.persistent,
        expires_in_secs: request.expires_in_secs,
        policy: request.policy,
    };
    Ok(link.post_for(LINKS_PATH, &body).await?)
}
