//! The public-link half of `connect expose --link/--public`: turning the flags into a checked
//! request, refusing database services, and asking the hub for the URL.

use std::time::Duration;

use anyhow::Result;
use pconnect_proto::link::{CreateLink, LinkInfo};
use pconnect_proto::plan::LinkWant;
use pconnect_proto::project::LinkDecl;
use pconnect_proto::rpc;

use crate::cli::ExposeArgs;
use crate::dev::desired;
use crate::link::forward::ForwardLink;
use crate::target::Target;
use crate::{link_auth, probe};

/// How long the protocol probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads the link flags; `None` when neither `--link` nor `--public` was given. The flags become a
/// [`LinkDecl`], resolved by the same function as a `pconnect.yml` link
/// ([`desired::link_want`]), before anything is registered, so bad input creates nothing.
pub(crate) fn request(args: &ExposeArgs, target: &Target) -> Result<Option<LinkWant>> {
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
    let decl = LinkDecl {
        expires: args.link_expires.clone(),
        auth: match args.auth {
            true => Some(link_auth::credentials_for_flag()?),
            false => None,
        },
        allow_ips: args
            .allow_ip
            .iter()
            .map(|c| c.parse())
            .collect::<Result<_, String>>()
            .map_err(anyhow::Error::msg)?,
        methods: args.methods.as_deref().map(|m| m.split(',').map(str::to_string).collect()).unwrap_or_default(),
        paths: args.paths.clone(),
        rate_limit: args.rate_limit.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
        host_header: Some(args.host_header.parse().map_err(|e: String| anyhow::anyhow!("--host-header: {e}"))?),
    };
    Ok(Some(desired::link_want(&decl, args.public, target)?))
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
pub(crate) async fn create(link: &ForwardLink, service: &str, want: LinkWant) -> Result<LinkInfo> {
    let body = CreateLink {
        service: service.to_string(),
        persistent: want.persistent,
        expires_in_secs: want.expires_in_secs,
        policy: want.policy,
        project: None,
    };
    Ok(link.call::<rpc::CreateLinkCall>(&body).await?)
}
