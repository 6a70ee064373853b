//! From a checked `ProjectSpec` to what the project wants ([`Desired`]) and what this agent serves;
//! and [`link_want`], the one resolver of a link declaration, used by `pconnect.yml` and by the
//! flags of `connect expose --link/--public` alike.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use pconnect_proto::duration;
use pconnect_proto::plan::{Desired, LinkWant, ReachWant, Secret, ShareWant};
use pconnect_proto::project::{LinkDecl, ProjectSpec, PublicDecl, ServiceKind};
use pconnect_proto::share::{DEFAULT_SHARE_SECS, MAX_SHARE_SECS};
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
    /// Whether teammates' agents may connect to this one directly (`direct:`, default true).
    pub direct: bool,
}

/// The tag a project marks its hub resources with: its `project:` name, or, without one, its
/// directory's name and a short hash of its path (two checkouts of one named project are one
/// project; two unnamed projects never collide).
pub fn tag(spec: &ProjectSpec, file: &Path) -> String {
    let clean = |text: &str| -> String {
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).take(48).collect()
    };
    if let Some(name) = spec.project.as_deref().filter(|n| !n.trim().is_empty()) {
        return clean(name.trim());
    }
    let dir = file.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, file.as_os_str().as_encoded_bytes());
    let short: String = digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{short}", clean(if dir.is_empty() { "project" } else { &dir }))
}

/// Derives what the project wants. The spec must have passed `check()`.
pub fn project(spec: &ProjectSpec, tag: &str) -> Result<Project> {
    let mut desired = Desired { project: tag.to_string(), ..Desired::default() };
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
        if service.debug {
            desired.debug.insert(name.clone());
        }
        let (kind, env, project) = (service.kind, service.env.clone(), Some(tag.to_string()));
        exposed.push(Exposed { name: name.clone(), target, kind, env, project });
    }
    for (name, share) in &spec.shares {
        let expires_in_secs = match &share.expires {
            Some(text) => duration::parse(text, MAX_SHARE_SECS)?,
            None => DEFAULT_SHARE_SECS,
        };
        let services: BTreeSet<String> = share.services.iter().cloned().collect();
        desired.shares.insert(name.clone(), ShareWant { services, expires_in_secs });
    }
    for reach in &spec.reach {
        let want = match (&reach.service, &reach.teammate) {
            (Some(name), _) => {
                ReachWant::Service { name: name.clone(), port: reach.port.and_then(|p| u16::try_from(p).ok()) }
            }
            (None, Some(name)) => ReachWant::Teammate { name: name.clone() },
            (None, None) => continue,
        };
        desired.reach.push(want);
    }
    let kinds = spec.services.iter().map(|(n, s)| (n.clone(), s.kind)).collect();
    let env = spec.services.iter().map(|(n, s)| (n.clone(), s.env.clone())).collect();
    Ok(Project { desired, exposed, kinds, env, direct: spec.direct })
}

/// Resolves a link declaration (from `pconnect.yml` or from flags) into what to ask the hub for;
/// a password is hashed here, with a fresh salt, and never leaves in clear.
pub fn link_want(decl: &LinkDecl, persistent: bool, target: &Target) -> Result<LinkWant> {
    let resolved = decl.resolve(persistent, target).map_err(|e| match e.field.as_str() {
        "expires" if persistent => anyhow::anyhow!("{}", e.message),
        field => anyhow::anyhow!("link {}: {}", field.replace('/', " "), e.message),
    })?;
    let mut policy = resolved.policy;
    policy.basic_auth = resolved.credentials.as_deref().map(link_auth::hash).transpose()?;
    Ok(LinkWant {
        persistent: resolved.persistent,
        expires_in_secs: resolved.expires_in_secs,
        policy,
        credentials: resolved.credentials.map(Secret::new),
    })
}
