//! Environment share RPCs: create, list, revoke, join, attach, and the check a tunnel through a
//! share passes. Codes live only as HMAC(hub key, workspace, code); join tokens only as SHA-256.

mod error;
pub(crate) mod join_limiter;
mod key;
pub(crate) mod live;

use std::sync::Arc;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Response, StatusCode};
use pconnect_proto::control::check_project_tag;
use pconnect_proto::share::{
    self, CreateShare, Joined, MAX_SHARE_SECS, ShareCreated, ShareEvent, ShareInfo, ShareListing, ShareRouteInfo,
    UpdateShare,
};
use ring::rand::{SecureRandom, SystemRandom};
use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, AuditAction};
use crate::auth;
use crate::conn::routes::Routes;
use crate::store::{Change, Member, MemberId, ShareId, ShareRoute, ShareRow, Store, StoreError};
pub(crate) use error::ShareError;
use join_limiter::JoinLimiter;
use key::ShareKey;
use live::LiveShares;
use pconnect_proto::clock;

/// Codes drawn before giving up on collisions (each has a 1 in 8.9e8 chance per live share).
const CODE_ATTEMPTS: usize = 16;

/// Environment shares: the RPCs and what they keep in memory (live shares, the join limiter).
pub(crate) struct Shares {
    store: Arc<dyn Store>,
    pub(crate) live: Arc<LiveShares>,
    join_limiter: JoinLimiter,
    key: ShareKey,
    routes: Routes,
    audit: Audit,
}

impl Shares {
    pub(crate) fn new(store: Arc<dyn Store>, routes: Routes) -> Self {
        Self {
            live: Arc::default(),
            join_limiter: JoinLimiter::default(),
            key: ShareKey::new(store.clone()),
            routes,
            audit: Audit::new(store.clone()),
            store,
        }
    }

    /// Tells the other hubs on the store that share `id` was revoked or moved its expiry.
    async fn changed(&self, id: ShareId) {
        if let Err(e) = self.store.announce(&Change::Share(id)).await {
            tracing::warn!(error = %e, share = id, "could not tell the other hubs that a share changed");
        }
    }

    /// Makes share `id`'s live tunnels follow its stored row (another hub changed it): ended when
    /// revoked, gone or expired, else lasting until its stored expiry.
    pub(crate) async fn follow_store(&self, id: ShareId) {
        match self.store.share_by_id(id).await {
            Ok(Some(row)) if row.revoked_at.is_none() && row.expires_at > clock::now() => {
                self.live.set_expiry(id, row.expires_at);
            }
            Ok(Some(row)) if row.revoked_at.is_none() => self.live.end(id, ShareEvent::Expired),
            Ok(_) => self.live.end(id, ShareEvent::Revoked),
            Err(e) => tracing::warn!(error = %e, share = id, "could not re-read a share another hub changed"),
        }
    }
}

/// `POST /v1/shares`: a share of every service `member` exposes that is online now.
pub(crate) async fn create(shares: &Shares, member: &Member, body: CreateShare) -> Result<ShareCreated, ShareError> {
    if body.expires_in_secs == 0 || body.expires_in_secs > MAX_SHARE_SECS {
        return Err(ShareError::BadLifetime);
    }
    if body.name.as_ref().is_some_and(|n| n.chars().count() > 100 || n.chars().any(char::is_control)) {
        return Err(ShareError::BadName);
    }
    if let Some(project) = &body.project {
        check_project_tag(project).map_err(ShareError::BadProject)?;
    }
    let mut routes: Vec<ShareRoute> = Vec::new();
    for s in shares.store.list_services(member.workspace_id).await? {
        let wanted = s.owner_id == member.id && body.services.as_ref().is_none_or(|only| only.contains(&s.name));
        if wanted && shares.routes.find_spec(member.workspace_id, &s.name).await.is_some() {
            routes.push(ShareRoute { service: s.name, port: s.port });
        }
    }
    if routes.is_empty() {
        return Err(ShareError::NothingOnline);
    }
    let expires_at = clock::now() + body.expires_in_secs as i64;
    for _ in 0..CODE_ATTEMPTS {
        let code = share::code_from(random_byte);
        let hash = shares.key.code_hash(member.workspace_id, &code).await?;
        let created = shares.store.create_share(
            member,
            &hash,
            body.name.as_deref(),
            expires_at,
            &routes,
            body.project.as_deref(),
        );
        match created.await {
            Ok(row) => {
                let detail = format!("share {} with {} route(s)", row.id, row.routes.len());
                shares.audit.record(member, AuditAction::ShareCreate, &detail).await;
                return Ok(ShareCreated { code, share: info(shares, &row) });
            }
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ShareError::NoFreeCode)
}

/// `POST /v1/shares/update`: moves the expiry of one of the caller's live shares (counted from its
/// creation); it keeps its code, its joiners and their tunnels.
pub(crate) async fn update(shares: &Shares, member: &Member, body: UpdateShare) -> Result<ShareInfo, ShareError> {
    if body.expires_in_secs == 0 || body.expires_in_secs > MAX_SHARE_SECS {
        return Err(ShareError::BadLifetime);
    }
    let row = shares.store.share_by_id(body.id).await?;
    let Some(row) = row.filter(|row| row.creator_id == member.id) else {
        return Err(ShareError::NotYours(body.id));
    };
    live(shares, &row, "")?;
    let expires_at = row.created_at + body.expires_in_secs as i64;
    shares.store.set_share_expiry(row.id, expires_at).await?;
    shares.live.set_expiry(row.id, expires_at);
    shares.changed(row.id).await;
    shares.audit.record(member, AuditAction::ShareUpdate, &format!("share {} expires at {expires_at}", row.id)).await;
    Ok(info(shares, &ShareRow { expires_at, ..row }))
}

/// `GET /v1/shares`: the caller's active shares.
pub(crate) async fn list(shares: &Shares, member: &Member) -> Result<ShareListing, ShareError> {
    let rows = shares.store.active_shares_of(member.id, clock::now()).await?;
    let listed = rows.iter().filter(|row| shares.live.ended(row.id).is_none()).map(|row| info(shares, row)).collect();
    Ok(ShareListing { shares: listed })
}

/// `POST /v1/shares/revoke`: only the creator or a workspace admin; closes every tunnel through it.
pub(crate) async fn revoke(shares: &Shares, member: &Member, code: &str) -> Result<(), ShareError> {
    let code = share::parse_code(code).map_err(|e| ShareError::BadCode(e.to_string()))?;
    let row = find(shares, member, &code).await?;
    if row.creator_id != member.id && !member.is_admin {
        return Err(ShareError::NotCreator { code, creator: row.creator });
    }
    end_share(shares, member, &row, &code).await
}

/// `POST /v1/shares/revoke-id`: the creator revokes one of their shares by id (project mode).
pub(crate) async fn revoke_id(shares: &Shares, member: &Member, id: i64) -> Result<(), ShareError> {
    let row = shares.store.share_by_id(id).await?;
    let Some(row) = row.filter(|row| row.creator_id == member.id) else {
        return Err(ShareError::NotYours(id));
    };
    end_share(shares, member, &row, "").await
}

async fn end_share(shares: &Shares, member: &Member, row: &ShareRow, code: &str) -> Result<(), ShareError> {
    live(shares, row, code)?;
    shares.store.revoke_share(row.id, clock::now()).await?;
    shares.live.end(row.id, ShareEvent::Revoked);
    shares.changed(row.id).await;
    shares.audit.record(member, AuditAction::ShareRevoke, &format!("share {}", row.id)).await;
    Ok(())
}

/// `POST /v1/shares/join`: admits a member of the share's workspace. Failures count against the
/// member's rate limit; a code of another workspace fails exactly like a code that does not exist.
pub(crate) async fn join(shares: &Shares, member: &Member, code: &str) -> Result<Joined, ShareError> {
    // One attempt per member at a time: concurrent guesses cannot all pass the check before the
    // first failure is counted.
    let _turn = shares.join_limiter.turn(member.id).await;
    let now = clock::now();
    if let Err(wait_secs) = shares.join_limiter.check(shares.store.as_ref(), member, now).await {
        return Err(ShareError::RateLimited { wait_secs });
    }
    let outcome = admit(shares, member, code).await;
    match &outcome {
        Ok(joined) => shares.audit.record(member, AuditAction::ShareJoin, &format!("share {}", joined.share.id)).await,
        Err(error) => {
            if let Some(detail) = error.failed_join() {
                shares.join_limiter.failed(member.id, now);
                shares.audit.record(member, AuditAction::ShareJoinFailed, detail).await;
            }
        }
    }
    outcome
}

async fn admit(shares: &Shares, member: &Member, code: &str) -> Result<Joined, ShareError> {
    let code = share::parse_code(code).map_err(|e| ShareError::BadCode(e.to_string()))?;
    let row = find(shares, member, &code).await?;
    live(shares, &row, &code)?;
    let join_token = format!("pj_{}", pconnect_link::random::hex(32));
    shares.store.add_join(row.id, member.id, &auth::token_hash(&join_token)).await?;
    Ok(Joined { share: info(shares, &row), join_token })
}

/// `POST /v1/shares/attach`, once [`authorize_join`] passed: holds a joiner's stream open while
/// they are joined; sends [`ShareEvent`] lines; ends when the share does.
pub(crate) async fn attach(shares: &Shares, row: ShareRow, request_body: RecvStream, mut respond: SendResponse<Bytes>) {
    let (cancel, _guard) = shares.live.attach(&row);
    let response = Response::builder().status(StatusCode::OK).body(()).expect("static response");
    let Ok(mut events) = respond.send_response(response, false) else { return };
    let _ = events.send_data(event_line(&ShareEvent::Attached), false);
    let mut request_body = request_body;
    tokio::select! {
        _ = cancel.cancelled() => {
            let why = shares.live.ended(row.id).unwrap_or(ShareEvent::Revoked);
            let _ = events.send_data(event_line(&why), true);
        }
        // The joiner left (its stream ended or was reset).
        _ = async { while let Some(Ok(_)) = request_body.data().await {} } => {}
    }
}

/// The check a tunnel carrying a join token passes: the join is the caller's, the share is live and
/// includes `service`. Returns the token the tunnel is cut with and the share's creator: a share
/// reaches only its creator's services, never another member's service of the same name.
pub(crate) async fn authorize_tunnel(
    shares: &Shares,
    member: &Member,
    token: &str,
    service: &str,
) -> Result<(CancellationToken, MemberId), ShareError> {
    let (cut, row) = authorize_share_route(shares, member, token, service).await?;
    Ok((cut, row.creator_id))
}

/// [`authorize_tunnel`], with the share's row (a direct-path ticket names the share and its end).
pub(crate) async fn authorize_share_route(
    shares: &Shares,
    member: &Member,
    token: &str,
    service: &str,
) -> Result<(CancellationToken, ShareRow), ShareError> {
    let row = authorize_join(shares, member, token).await?;
    if !row.routes.iter().any(|r| r.service == service) {
        return Err(ShareError::NotInShare(service.to_string()));
    }
    Ok((shares.live.token(&row), row))
}

/// The share a join token admits `member` to, if it is theirs and the share is live.
pub(crate) async fn authorize_join(shares: &Shares, member: &Member, token: &str) -> Result<ShareRow, ShareError> {
    let found = shares.store.join_by_token(&auth::token_hash(token)).await?;
    let Some((join, row)) = found.filter(|(join, _)| join.member_id == member.id) else {
        return Err(ShareError::UnknownJoin);
    };
    let _ = join;
    live(shares, &row, "")?;
    Ok(row)
}

/// The share of the caller's workspace with this code.
async fn find(shares: &Shares, member: &Member, code: &str) -> Result<ShareRow, ShareError> {
    let hash = shares.key.code_hash(member.workspace_id, code).await?;
    shares.store.share_by_code(member.workspace_id, &hash).await?.ok_or_else(|| ShareError::UnknownCode(code.into()))
}

/// Refuses a share that was revoked or is past its expiry (checked on every use, by the hub's clock).
fn live(shares: &Shares, row: &ShareRow, code: &str) -> Result<(), ShareError> {
    let code = (!code.is_empty()).then(|| code.to_string());
    let ended = shares.live.ended(row.id);
    if row.revoked_at.is_some() || ended == Some(ShareEvent::Revoked) {
        return Err(ShareError::Revoked { code });
    }
    if row.expires_at <= clock::now() || ended == Some(ShareEvent::Expired) {
        return Err(ShareError::Expired { code });
    }
    Ok(())
}

fn info(shares: &Shares, row: &ShareRow) -> ShareInfo {
    ShareInfo {
        id: row.id,
        name: row.name.clone(),
        creator: row.creator.clone(),
        routes: row.routes.iter().map(|r| ShareRouteInfo { service: r.service.clone(), port: r.port }).collect(),
        created_at: row.created_at,
        expires_at: row.expires_at,
        joined: shares.live.joined(row.id),
        project: row.project.clone(),
    }
}

fn event_line(event: &ShareEvent) -> Bytes {
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn random_byte() -> u8 {
    let mut byte = [0u8; 1];
    SystemRandom::new().fill(&mut byte).expect("the OS random source works");
    byte[0]
}
