//! The reconciler: a pure `plan(desired, actual) -> Plan` for everything a project declares:
//! services, links, shares, reach listeners and debug sessions. `connect plan` prints it, `connect
//! up` applies it and plans again while running; applying a plan and planning again yields no
//! changes.
//!
//! A project owns only what it created: every hub resource `up` makes carries the project's tag,
//! and the plan neither counts nor touches anything without that tag (hand-made exposes, links and
//! shares beside it). Edits of a link's expiry or policy, and of a share's expiry, are applied in
//! place: the link keeps its URL, the share its code.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::link::{self, LinkPolicy};

/// Hub and local state the project wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// The tag marking what this project created.
    pub project: String,
    /// Service name -> port teammates get.
    pub services: BTreeMap<String, u16>,
    /// Service name -> its link.
    pub links: BTreeMap<String, LinkWant>,
    /// Share name -> services in it.
    pub shares: BTreeMap<String, ShareWant>,
    /// What to bring to local ports, in file order.
    pub reach: Vec<ReachWant>,
    /// Services with a debug session.
    pub debug: BTreeSet<String>,
}

/// A link the project wants for a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkWant {
    pub persistent: bool,
    pub expires_in_secs: Option<u64>,
    /// With basic auth, `policy.basic_auth` is a fresh salted hash of [`Self::credentials`].
    pub policy: LinkPolicy,
    /// The basic-auth `user:password` the project declares; a link on the hub matches when its
    /// stored hash verifies it (two hashes of one password differ by their salt).
    #[serde(skip)]
    pub credentials: Option<Secret>,
}

impl LinkWant {
    /// Whether a link on the hub already is what this wants (lifetime and policy included).
    pub fn matches(&self, have: &LinkHave) -> bool {
        self.persistent == have.persistent && self.expires_in_secs == have.expires_in_secs && self.same_policy(have)
    }

    fn same_policy(&self, have: &LinkHave) -> bool {
        let without_auth = |p: &LinkPolicy| LinkPolicy { basic_auth: None, basic_auth_sha256: None, ..p.clone() };
        let auth_matches = match (&self.credentials, &have.policy.basic_auth, &have.policy.basic_auth_sha256) {
            (None, None, None) => true,
            (Some(credentials), Some(phc), None) => link::verify_credentials(phc, credentials.expose().as_bytes()),
            _ => false,
        };
        without_auth(&self.policy) == without_auth(&have.policy) && auth_matches
    }
}

/// A secret held in memory: never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// A share the project wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareWant {
    pub services: BTreeSet<String>,
    pub expires_in_secs: u64,
}

/// One `reach:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReachWant {
    /// One workspace service by name, on `port` (default: its own).
    Service { name: String, port: Option<u16> },
    /// Every service a teammate exposes, on their own ports.
    Teammate { name: String },
}

/// Hub and local state as it is, for this member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actual {
    /// The member the plan is made for.
    pub me: String,
    /// Online services of this member: name -> registration.
    pub services: BTreeMap<String, ServiceHave>,
    /// Active links of this member.
    pub links: Vec<LinkHave>,
    /// Active shares of this member.
    pub shares: Vec<ShareHave>,
    /// The workspace's services (for `reach:`).
    pub workspace: Vec<WorkspaceService>,
    /// Reach listeners open now, by service name.
    pub reaching: BTreeMap<String, Reaching>,
    /// Live debug sessions of this member.
    pub debug: Vec<DebugHave>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHave {
    pub port: u16,
    pub project: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkHave {
    pub subdomain: String,
    pub service: String,
    pub persistent: bool,
    /// A temporary link's lifetime from its creation (`expires_at - created_at`).
    pub expires_in_secs: Option<u64>,
    pub policy: LinkPolicy,
    pub project: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareHave {
    pub id: i64,
    pub name: Option<String>,
    pub services: BTreeSet<String>,
    /// Its lifetime from its creation.
    pub expires_in_secs: u64,
    pub project: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceService {
    pub name: String,
    pub owner: String,
    pub port: u16,
}

/// An open reach listener: whose service it reaches and on which port the file asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaching {
    pub via: ReachVia,
    pub port: Option<u16>,
}

/// Whose service a reach listener's tunnels go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReachVia {
    /// Whoever serves the name.
    Name,
    /// This teammate only.
    Owner(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugHave {
    pub id: String,
    pub service: String,
    pub project: Option<String>,
}

/// One change to make on the hub or locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Expose {
        service: String,
        port: u16,
    },
    Unexpose {
        service: String,
    },
    CreateLink {
        service: String,
        link: LinkWant,
    },
    /// In place: the link keeps its URL.
    UpdateLink {
        subdomain: String,
        service: String,
        link: LinkWant,
    },
    RevokeLink {
        subdomain: String,
        service: String,
    },
    CreateShare {
        name: String,
        share: ShareWant,
    },
    /// In place: the share keeps its code.
    UpdateShare {
        id: i64,
        name: String,
        share: ShareWant,
    },
    RevokeShare {
        id: i64,
        name: String,
    },
    OpenReach {
        service: String,
        via: ReachVia,
        port: Option<u16>,
    },
    CloseReach {
        service: String,
    },
    StartDebug {
        service: String,
    },
    StopDebug {
        id: String,
        service: String,
    },
}

/// What `up` would change, in the order to apply it: services first (links and shares need them),
/// then links, shares, reach listeners and debug sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// `reach:` entries that name nothing in the workspace yet (no change; retried later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The changes that make `actual` match `desired`, touching only what carries the project's tag.
pub fn plan(desired: &Desired, actual: &Actual) -> Plan {
    let mine = |project: &Option<String>| project.as_deref() == Some(desired.project.as_str());
    let mut changes = Vec::new();
    plan_services(desired, actual, &mine, &mut changes);
    plan_links(desired, actual, &mine, &mut changes);
    plan_shares(desired, actual, &mine, &mut changes);
    let waiting = plan_reach(desired, actual, &mut changes);
    plan_debug(desired, actual, &mine, &mut changes);
    Plan { changes, waiting }
}

fn plan_services(desired: &Desired, actual: &Actual, mine: &dyn Fn(&Option<String>) -> bool, out: &mut Vec<Change>) {
    for (service, port) in &desired.services {
        let served = actual.services.get(service).is_some_and(|have| have.port == *port && mine(&have.project));
        if !served {
            out.push(Change::Expose { service: service.clone(), port: *port });
        }
    }
    for (service, have) in &actual.services {
        if mine(&have.project) && !desired.services.contains_key(service) {
            out.push(Change::Unexpose { service: service.clone() });
        }
    }
}

fn plan_links(desired: &Desired, actual: &Actual, mine: &dyn Fn(&Option<String>) -> bool, out: &mut Vec<Change>) {
    let ours: Vec<&LinkHave> = actual.links.iter().filter(|l| mine(&l.project)).collect();
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    for (service, want) in &desired.links {
        let candidates: Vec<&&LinkHave> =
            ours.iter().filter(|l| &l.service == service && l.persistent == want.persistent).collect();
        // Prefer a link that already matches; else update one in place (it keeps its URL).
        match candidates.iter().find(|l| want.matches(l)).or(candidates.first()) {
            Some(have) => {
                kept.insert(&have.subdomain);
                if !want.matches(have) {
                    let (subdomain, service) = (have.subdomain.clone(), service.clone());
                    out.push(Change::UpdateLink { subdomain, service, link: want.clone() });
                }
            }
            None => out.push(Change::CreateLink { service: service.clone(), link: want.clone() }),
        }
    }
    for have in ours {
        // Persistent links outlive `up` (the same URL every time); temporary extras go.
        if !kept.contains(have.subdomain.as_str()) && !have.persistent {
            out.push(Change::RevokeLink { subdomain: have.subdomain.clone(), service: have.service.clone() });
        }
    }
}

fn plan_shares(desired: &Desired, actual: &Actual, mine: &dyn Fn(&Option<String>) -> bool, out: &mut Vec<Change>) {
    let ours: Vec<&ShareHave> = actual.shares.iter().filter(|s| mine(&s.project)).collect();
    let mut kept: BTreeSet<i64> = BTreeSet::new();
    for (name, want) in &desired.shares {
        // A share's services are its snapshot: other services need a new share (a new code).
        let have = ours.iter().find(|s| s.name.as_deref() == Some(name.as_str()) && s.services == want.services);
        match have {
            Some(have) => {
                kept.insert(have.id);
                if have.expires_in_secs != want.expires_in_secs {
                    out.push(Change::UpdateShare { id: have.id, name: name.clone(), share: want.clone() });
                }
            }
            None => out.push(Change::CreateShare { name: name.clone(), share: want.clone() }),
        }
    }
    for have in ours {
        if !kept.contains(&have.id) {
            let name = have.name.clone().unwrap_or_default();
            out.push(Change::RevokeShare { id: have.id, name });
        }
    }
}

/// What the `reach:` entries want now, given the workspace: service name -> (via, port).
/// Entries naming nothing yet come back as `waiting`.
pub fn reach_targets(desired: &Desired, actual: &Actual) -> (BTreeMap<String, Reaching>, Vec<String>) {
    let mut wanted = BTreeMap::new();
    let mut waiting = Vec::new();
    for want in &desired.reach {
        match want {
            ReachWant::Service { name, port } => match actual.workspace.iter().find(|s| &s.name == name) {
                Some(_) => {
                    wanted.insert(name.clone(), Reaching { via: ReachVia::Name, port: *port });
                }
                None => waiting.push(format!("service '{name}'")),
            },
            ReachWant::Teammate { name } => {
                let theirs: Vec<&WorkspaceService> = actual
                    .workspace
                    .iter()
                    .filter(|s| s.owner.eq_ignore_ascii_case(name) && s.owner != actual.me)
                    .collect();
                if theirs.is_empty() {
                    waiting.push(format!("teammate '{name}'"));
                }
                for service in theirs {
                    let via = ReachVia::Owner(service.owner.clone());
                    wanted.entry(service.name.clone()).or_insert(Reaching { via, port: None });
                }
            }
        }
    }
    (wanted, waiting)
}

fn plan_reach(desired: &Desired, actual: &Actual, out: &mut Vec<Change>) -> Vec<String> {
    let (wanted, waiting) = reach_targets(desired, actual);
    for (service, open) in &actual.reaching {
        if wanted.get(service) != Some(open) {
            out.push(Change::CloseReach { service: service.clone() });
        }
    }
    for (service, want) in wanted {
        if actual.reaching.get(&service) != Some(&want) {
            out.push(Change::OpenReach { service, via: want.via, port: want.port });
        }
    }
    waiting
}

fn plan_debug(desired: &Desired, actual: &Actual, mine: &dyn Fn(&Option<String>) -> bool, out: &mut Vec<Change>) {
    let ours: Vec<&DebugHave> = actual.debug.iter().filter(|d| mine(&d.project)).collect();
    for service in &desired.debug {
        if !ours.iter().any(|d| &d.service == service) {
            out.push(Change::StartDebug { service: service.clone() });
        }
    }
    for have in ours {
        if !desired.debug.contains(&have.service) {
            out.push(Change::StopDebug { id: have.id.clone(), service: have.service.clone() });
        }
    }
}

/// What hub and local state look like after `plan` is applied to `actual` (tests and dry runs).
pub fn apply(actual: &Actual, plan: &Plan, project: &str) -> Actual {
    let mut next = actual.clone();
    let tag = Some(project.to_string());
    let mut counter = next.shares.iter().map(|s| s.id).max().unwrap_or(0);
    for change in &plan.changes {
        match change {
            Change::Expose { service, port } => {
                next.services.insert(service.clone(), ServiceHave { port: *port, project: tag.clone() });
            }
            Change::Unexpose { service } => {
                next.services.remove(service);
            }
            Change::CreateLink { service, link } => {
                // The hub keeps one persistent link per member and service: asking for it again
                // adopts it (same URL), with this policy and this project's tag.
                if link.persistent
                    && let Some(have) = next.links.iter_mut().find(|l| l.persistent && &l.service == service)
                {
                    have.policy = link.policy.clone();
                    have.project = tag.clone();
                    continue;
                }
                next.links.push(LinkHave {
                    subdomain: format!("new-{service}-{}", next.links.len()),
                    service: service.clone(),
                    persistent: link.persistent,
                    expires_in_secs: link.expires_in_secs,
                    policy: link.policy.clone(),
                    project: tag.clone(),
                });
            }
            Change::UpdateLink { subdomain, link, .. } => {
                if let Some(have) = next.links.iter_mut().find(|l| &l.subdomain == subdomain) {
                    have.expires_in_secs = link.expires_in_secs;
                    have.policy = link.policy.clone();
                }
            }
            Change::RevokeLink { subdomain, .. } => next.links.retain(|l| &l.subdomain != subdomain),
            Change::CreateShare { name, share } => {
                counter += 1;
                next.shares.push(ShareHave {
                    id: counter,
                    name: Some(name.clone()),
                    services: share.services.clone(),
                    expires_in_secs: share.expires_in_secs,
                    project: tag.clone(),
                });
            }
            Change::UpdateShare { id, share, .. } => {
                if let Some(have) = next.shares.iter_mut().find(|s| s.id == *id) {
                    have.expires_in_secs = share.expires_in_secs;
                }
            }
            Change::RevokeShare { id, .. } => next.shares.retain(|s| s.id != *id),
            Change::OpenReach { service, via, port } => {
                next.reaching.insert(service.clone(), Reaching { via: via.clone(), port: *port });
            }
            Change::CloseReach { service } => {
                next.reaching.remove(service);
            }
            Change::StartDebug { service } => {
                let id = format!("d{}", next.debug.len() + 1000);
                next.debug.push(DebugHave { id, service: service.clone(), project: tag.clone() });
            }
            Change::StopDebug { id, .. } => next.debug.retain(|d| &d.id != id),
        }
    }
    next
}

#[cfg(test)]
mod tests;
