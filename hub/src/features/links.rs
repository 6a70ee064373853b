//! Public link RPCs (create, list, revoke) and the cache the ingress routes by: subdomain -> live
//! link with its parsed policy and request counter. Revocation and member removal invalidate it at
//! once, and no entry is used for longer than a second without reading the store again; expiry
//! is checked on every request by the clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pconnect_proto::control::check_project_tag;
use pconnect_proto::link::{
    CreateLink, DEFAULT_LINK_SECS, LinkInfo, LinkListing, LinkPolicy, MAX_LINK_SECS, UpdateLink,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::audit::{Audit, AuditAction};
use crate::store::{Change, LinkId, LinkRow, Member, MemberId, NewLink, Store, StoreError};
use crate::sync::lock;
use pconnect_proto::clock;

/// Characters of random subdomains.
const SUBDOMAIN_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
const SUBDOMAIN_LEN: usize = 6;
/// Attempts at drawing an unused subdomain.
const SUBDOMAIN_ATTEMPTS: usize = 16;

/// Where links are served: `scheme://<sub>.<domain>[:port]`.
#[derive(Debug, Clone)]
pub(crate) struct LinkBase {
    pub(crate) scheme: &'static str,
    pub(crate) domain: String,
    pub(crate) port: u16,
}

impl LinkBase {
    pub(crate) fn url(&self, subdomain: &str) -> String {
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default_port {
            format!("{}://{subdomain}.{}", self.scheme, self.domain)
        } else {
            format!("{}://{subdomain}.{}:{}", self.scheme, self.domain, self.port)
        }
    }
}

/// How long a cached link (or "no such link") is used before the store is read again: revocation
/// and member removal also invalidate it at once, and this bounds what any other writer of the
/// store (an admin command, another replica) can leave stale.
const CACHE_TTL: Duration = Duration::from_secs(1);
/// Most "no such link" answers cached (a scanner's random names).
const MAX_NEGATIVE: usize = 10_000;

/// A link as the ingress uses it.
pub(crate) struct LiveLink {
    pub(crate) row: LinkRow,
    /// The parsed policy; `None` when the stored one cannot be read, and then the link serves
    /// nothing (a policy is never dropped silently).
    pub(crate) policy: Option<LinkPolicy>,
    /// Requests served since the last flush to the store (shared by every cached copy of the link).
    pub(crate) unflushed: Arc<AtomicI64>,
}

struct Cached {
    link: Option<Arc<LiveLink>>,
    loaded: Instant,
}

/// Subdomain -> link, read through from the store and kept at most [`CACHE_TTL`].
#[derive(Default)]
pub(crate) struct LinkCache {
    by_subdomain: Mutex<HashMap<String, Cached>>,
    counters: Mutex<HashMap<LinkId, Arc<AtomicI64>>>,
}

impl LinkCache {
    /// The link for a subdomain (cached, including "no such link").
    pub(crate) async fn get(&self, store: &dyn Store, subdomain: &str) -> Result<Option<Arc<LiveLink>>, StoreError> {
        if let Some(hit) = lock(&self.by_subdomain).get(subdomain)
            && hit.loaded.elapsed() < CACHE_TTL
        {
            return Ok(hit.link.clone());
        }
        let loaded = Instant::now();
        let row = store.link_by_subdomain(subdomain).await?;
        let live = row.map(|row| {
            let policy = match serde_json::from_str(&row.policy) {
                Ok(policy) => Some(policy),
                Err(e) => {
                    tracing::error!(link = %row.subdomain, error = %e, "stored link policy does not parse: link refused");
                    None
                }
            };
            let unflushed = lock(&self.counters).entry(row.id).or_default().clone();
            Arc::new(LiveLink { row, policy, unflushed })
        });
        let mut cache = lock(&self.by_subdomain);
        if live.is_none() && cache.len() > MAX_NEGATIVE {
            cache.retain(|_, v| v.link.is_some());
        }
        cache.insert(subdomain.to_string(), Cached { link: live.clone(), loaded });
        Ok(live)
    }

    pub(crate) fn forget(&self, subdomain: &str) {
        lock(&self.by_subdomain).remove(subdomain);
    }

    /// Forgets every link of `owner` (a removed member): the next request reads the store, where
    /// their links are gone.
    pub(crate) fn forget_owner(&self, owner: MemberId) {
        lock(&self.by_subdomain).retain(|_, cached| cached.link.as_ref().is_none_or(|l| l.row.owner_id != owner));
    }

    /// Forgets every cached link (changes may have been missed): the next requests read the store.
    pub(crate) fn forget_all(&self) {
        lock(&self.by_subdomain).clear();
    }

    /// Owners of the cached links.
    pub(crate) fn owners(&self) -> Vec<MemberId> {
        lock(&self.by_subdomain).values().filter_map(|c| c.link.as_ref()).map(|l| l.row.owner_id).collect()
    }

    /// Moves unflushed request counts to the store.
    pub(crate) async fn flush_counts(&self, store: &dyn Store) {
        let counts: Vec<(LinkId, i64)> = {
            let mut counters = lock(&self.counters);
            let counts =
                counters.iter().map(|(id, n)| (*id, n.swap(0, Ordering::Relaxed))).filter(|(_, n)| *n > 0).collect();
            // Counters no cached link holds any more are done.
            counters.retain(|_, n| Arc::strong_count(n) > 1);
            counts
        };
        if !counts.is_empty()
            && let Err(e) = store.add_link_requests(&counts).await
        {
            tracing::warn!(error = %e, "could not save link request counts");
        }
    }

    fn unflushed(&self, id: LinkId) -> i64 {
        lock(&self.counters).get(&id).map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

/// What can go wrong with a link, in the feature's own words (the wire code and sentence are
/// chosen at the edge, `conn/wire_errors.rs`).
#[derive(Debug)]
pub(crate) enum LinkError {
    /// The caller exposes no service of this name.
    NoSuchService(String),
    /// The policy fails its checks (or its hashes are outside the cost limits).
    BadPolicy(String),
    BadProject(String),
    /// Zero, or longer than a temporary link may last.
    BadLifetime,
    /// No live link of the caller's at this subdomain.
    NotYours(String),
    /// Every subdomain drawn was taken.
    NoFreeSubdomain,
    Store(StoreError),
}

impl From<StoreError> for LinkError {
    fn from(e: StoreError) -> Self {
        LinkError::Store(e)
    }
}

/// Public links: the RPCs, and the cache the ingress serves them from.
pub(crate) struct Links {
    store: Arc<dyn Store>,
    pub(crate) cache: LinkCache,
    base: LinkBase,
    audit: Audit,
}

impl Links {
    pub(crate) fn new(store: Arc<dyn Store>, base: LinkBase) -> Self {
        Self { audit: Audit::new(store.clone()), store, cache: LinkCache::default(), base }
    }

    /// Drops a link that changed from this hub's cache, and tells the other hubs on the store to.
    async fn changed(&self, subdomain: &str) {
        self.cache.forget(subdomain);
        if let Err(e) = self.store.announce(&Change::Link(subdomain.to_string())).await {
            tracing::warn!(error = %e, subdomain, "could not tell the other hubs that a link changed");
        }
    }

    /// The live link served at `subdomain`, through the cache.
    pub(crate) async fn live(&self, subdomain: &str) -> Result<Option<Arc<LiveLink>>, StoreError> {
        self.cache.get(self.store.as_ref(), subdomain).await
    }

    /// Writes the request counts gathered since the last flush.
    pub(crate) async fn flush_counts(&self) {
        self.cache.flush_counts(self.store.as_ref()).await;
    }
}

/// `POST /v1/links`: a temporary or persistent link to one of the caller's services.
pub(crate) async fn create(links: &Links, member: &Member, body: CreateLink) -> Result<LinkInfo, LinkError> {
    let service = links.store.service(member.workspace_id, &body.service).await?;
    if service.as_ref().is_none_or(|s| s.owner_id != member.id) {
        return Err(LinkError::NoSuchService(body.service));
    }
    body.policy.check().map_err(LinkError::BadPolicy)?;
    if let Some(project) = &body.project {
        check_project_tag(project).map_err(LinkError::BadProject)?;
    }
    let policy = serde_json::to_string(&body.policy).map_err(|e| LinkError::BadPolicy(e.to_string()))?;
    let existing = match body.persistent {
        true => links.store.persistent_link(member.id, &body.service).await?,
        false => None,
    };
    if let Some(row) = existing {
        // One persistent link per member and service: asking again keeps its URL (and a project
        // asking for it adopts it).
        let project = body.project.clone().or(row.project.clone());
        links.store.set_link_policy(row.id, &policy, project.as_deref()).await?;
        links.changed(&row.subdomain).await;
        return Ok(info(links, &LinkRow { policy, project, ..row }));
    }
    let expires_at = match body.persistent {
        true => None,
        false => Some(clock::now() + lifetime(body.expires_in_secs)? as i64),
    };
    for _ in 0..SUBDOMAIN_ATTEMPTS {
        let subdomain = random_subdomain();
        let new = NewLink {
            service: &body.service,
            subdomain: &subdomain,
            persistent: body.persistent,
            expires_at,
            policy: &policy,
            project: body.project.as_deref(),
        };
        match links.store.create_link(member, &new).await {
            Ok(row) => {
                links.changed(&subdomain).await;
                links.audit.record(member, AuditAction::LinkCreate, &row.subdomain).await;
                return Ok(info(links, &row));
            }
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(LinkError::NoFreeSubdomain)
}

/// A temporary link's lifetime: the default when none is given, at most 30 days.
fn lifetime(secs: Option<u64>) -> Result<u64, LinkError> {
    let secs = secs.unwrap_or(DEFAULT_LINK_SECS);
    if secs == 0 || secs > MAX_LINK_SECS {
        return Err(LinkError::BadLifetime);
    }
    Ok(secs)
}

/// `POST /v1/links/update`: changes one of the caller's live links in place: the URL stays, the
/// policy and a temporary link's lifetime (counted from its creation) change at once.
pub(crate) async fn update(links: &Links, member: &Member, body: UpdateLink) -> Result<LinkInfo, LinkError> {
    body.policy.check().map_err(LinkError::BadPolicy)?;
    let subdomain = body.subdomain.trim().to_ascii_lowercase();
    let not_found = || LinkError::NotYours(subdomain.clone());
    let row = links.store.link_by_subdomain(&subdomain).await?.ok_or_else(not_found)?;
    let expired = row.expires_at.is_some_and(|at| at <= clock::now());
    if row.owner_id != member.id || row.revoked_at.is_some() || expired {
        return Err(not_found());
    }
    let expires_at = match row.persistent {
        true => None,
        false => Some(row.created_at + lifetime(body.expires_in_secs)? as i64),
    };
    let policy = serde_json::to_string(&body.policy).map_err(|e| LinkError::BadPolicy(e.to_string()))?;
    links.store.update_link(row.id, expires_at, &policy).await?;
    links.changed(&subdomain).await;
    links.audit.record(member, AuditAction::LinkUpdate, &subdomain).await;
    Ok(info(links, &LinkRow { expires_at, policy, ..row }))
}

/// `GET /v1/links`: the caller's active links.
pub(crate) async fn list(links: &Links, member: &Member) -> Result<LinkListing, LinkError> {
    let rows = links.store.active_links_of(member.id, clock::now()).await?;
    Ok(LinkListing { links: rows.iter().map(|row| info(links, row)).collect() })
}

/// `POST /v1/links/revoke`: ends a link of the caller's (or any, for an admin) at once.
pub(crate) async fn revoke(links: &Links, member: &Member, subdomain: &str) -> Result<(), LinkError> {
    let subdomain = subdomain.trim().to_ascii_lowercase();
    let not_found = || LinkError::NotYours(subdomain.clone());
    let row = links.store.link_by_subdomain(&subdomain).await?.ok_or_else(not_found)?;
    let allowed = row.owner_id == member.id || (member.is_admin && row.workspace_id == member.workspace_id);
    if !allowed || row.revoked_at.is_some() {
        return Err(not_found());
    }
    links.store.revoke_link(row.id, clock::now()).await?;
    links.changed(&subdomain).await;
    links.audit.record(member, AuditAction::LinkRevoke, &subdomain).await;
    Ok(())
}

fn info(links: &Links, row: &LinkRow) -> LinkInfo {
    LinkInfo {
        subdomain: row.subdomain.clone(),
        url: links.base.url(&row.subdomain),
        service: row.service.clone(),
        persistent: row.persistent,
        created_at: row.created_at,
        expires_at: row.expires_at,
        requests: row.requests + links.cache.unflushed(row.id),
        policy: serde_json::from_str(&row.policy).unwrap_or_default(),
        project: row.project.clone(),
    }
}

fn random_subdomain() -> String {
    let mut out = String::with_capacity(SUBDOMAIN_LEN);
    let limit = u8::MAX - (u8::MAX % SUBDOMAIN_ALPHABET.len() as u8) - 1;
    while out.len() < SUBDOMAIN_LEN {
        let mut byte = [0u8; 1];
        SystemRandom::new().fill(&mut byte).expect("the OS random source works");
        if byte[0] <= limit {
            out.push(SUBDOMAIN_ALPHABET[usize::from(byte[0]) % SUBDOMAIN_ALPHABET.len()] as char);
        }
    }
    out
}
