//! From a checked `ProjectSpec` to what the hub should hold ([`Desired`]) and what this agent serves.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use pconnect_proto::link::{self, DEFAULT_LINK_SECS, LinkPolicy, MAX_LINK_SECS};
use pconnect_proto::plan::{Desired, LinkWant, Secret, ShareWant};
use pconnect_proto::project::{LinkDecl, ProjectSpec, PublicDecl, ServiceKind};
use pconnect_proto::share::{DEFAULT_SHARE_SECS, MAX_SHARE_SECS, parse_duration};
use pconnect_proto::target::Target;

use crate::link::reverse::Exposed;
use crate::link_auth;

/// Everything `up` derives from the file.
#[derive(Debug, Clone)]
pub struct Project {
    pub desired: Desired,
    pub exposed: Vec<Exposed>,
    pub kinds: BTreeMap<String, Option<ServiceKind>>,
    pub env: BTreeMap<String, BTreeMap<String, String>>,
}

/// Derives the desired hub state. The spec must have passed `check()`.
pub fn project(spec: &ProjectSpec) -> Result<Project> {
    let mut desired = Desired::default();
    let mut exposed = Vec::new();
    for (name, service) in &spec.services {
        let target: Target = service.target.target().map_err(anyhow::Error::msg)?;
        desired.services.insert(name.clone(), target.port);
        let want = match (&service.link, &service.public) {
            (Some(decl), _) => Some(link_want(decl, false, &target)?),
            (None, Some(PublicDecl::Enabled(true))) => Some(link_want(&LinkDecl::default(), true, &target)?),
            (None, Some(PublicDecl::Policies(decl))) => Some(link_want(decl, true, &target)?),
            _ => None,
        };
        if let Some(want) = want {
            desired.links.insert(name.clone(), want);
        }
        let kind = service.kind;
        exposed.push(Exposed { name: name.clone(), target, kind, env: service.env.clone() });
    }
    for (name, share) in &spec.shares {
        let expires_in_secs = match &share.expires {
            Some(text) => parse_duration(text, MAX_SHARE_SECS)?,
            None => DEFAULT_SHARE_SECS,
        };
        let services: BTreeSet<String> = share.services.iter().cloned().collect();
        desired.shares.insert(name.clone(), ShareWant { services, expires_in_secs });
    }
    let kinds = spec.services.iter().map(|(n, s)| (n.clone(), s.kind)).collect();
    let env = spec.services.iter().map(|(n, s)| (n.clone(), s.env.clone())).collect();
    Ok(Project { desired, exposed, kinds, env })
}

fn link_want(decl: &LinkDecl, persistent: bool, target: &Target) -> Result<LinkWant> {
    let expires_in_secs = match (&decl.expires, persistent) {
        (_, true) => None,
        (Some(text), false) => Some(parse_duration(text, MAX_LINK_SECS)?),
        (None, false) => Some(DEFAULT_LINK_SECS),
    };
    let credentials = decl.auth.as_deref().map(Secret::new);
    let basic_auth = credentials.as_ref().map(|c| link_auth::hash(c.expose())).transpose()?;
    let policy = LinkPolicy {
        basic_auth,
        basic_auth_sha256: None,
        allow_ips: decl
            .allow_ips
            .iter()
            .map(|c| c.parse())
            .collect::<Result<_, String>>()
            .map_err(anyhow::Error::msg)?,
        methods: if decl.methods.is_empty() {
            Vec::new()
        } else {
            link::parse_methods(&decl.methods.join(",")).map_err(anyhow::Error::msg)?
        },
        paths: decl.paths.clone(),
        rate_per_min: decl.rate_limit.as_deref().map(link::parse_rate).transpose().map_err(anyhow::Error::msg)?,
        rewrite_host: (decl.host_header.as_deref() == Some("rewrite")).then(|| target.to_string()),
    };
    Ok(LinkWant { persistent, expires_in_secs, policy, credentials })
}
