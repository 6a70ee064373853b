//! The direct path, hub side: the hub is each workspace's certificate authority ([`ca`]) and the
//! one that authorizes tunnels. Agents get certificates for their own keys; a reach agent gets the
//! exposing agent's candidates and a ticket signed by the CA, after exactly the checks a relayed
//! tunnel gets (the service's owner, a share's join token and liveness). The hub tells exposing
//! agents on their reverse links when a share or a member is revoked ([`revoke`], again until
//! each heard it), so direct tunnels are cut like relayed ones; and agents watch the member at the
//! other end of each direct connection they keep ([`watch`]), so a removal reaches both sides
//! whether or not that member is connected, or this hub was restarted. The hub sees none of a
//! direct tunnel's bytes.

mod ca;
mod revoke;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pconnect_proto::clock;
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::direct::{
    DirectCert, DirectCertRequest, DirectRoute, DirectRouteRequest, Revoked, TICKET_LIFETIME_MS, Ticket,
};

use crate::config::DirectPolicy;
use crate::conn::routes::Routes;
use crate::features::shares::{self, Shares};
use crate::rpc::store_error;
use crate::store::{Member, MemberId, ShareId, Store, WorkspaceId};
use crate::sync::lock;
use ca::WorkspaceCa;
use revoke::{Grant, Teller};
use watch::MemberWatches;

/// The direct path's state in the hub: the workspaces' CAs (derived once each), the shares whose
/// end is being watched to tell exposing agents, and agents' watches of members.
pub(crate) struct Direct {
    /// Whose agents may connect directly; for the others no certificates, no tickets: every
    /// tunnel is relayed.
    policy: DirectPolicy,
    store: Arc<dyn Store>,
    routes: Routes,
    cas: Mutex<HashMap<WorkspaceId, Arc<WorkspaceCa>>>,
    /// Shares with direct tickets out, and the agents those tickets named.
    share_grants: Arc<Mutex<HashMap<ShareId, HashSet<Grant>>>>,
    teller: Teller,
    /// Agents' watches of the members at the other end of their direct connections.
    pub(crate) watches: MemberWatches,
}

impl Direct {
    pub(crate) fn new(policy: DirectPolicy, store: Arc<dyn Store>, routes: Routes) -> Self {
        Self {
            policy,
            store,
            routes: routes.clone(),
            cas: Mutex::default(),
            share_grants: Arc::default(),
            teller: Teller::new(routes),
            watches: MemberWatches::default(),
        }
    }

    fn check_enabled(&self, member: &Member) -> Result<(), ErrorBody> {
        if self.policy.off {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                "direct connections are turned off on this hub: tunnels are relayed",
            ));
        }
        if !self.policy.allows(&member.workspace) {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                "direct connections are turned off for this workspace: tunnels are relayed",
            ));
        }
        Ok(())
    }

    async fn ca(&self, workspace: WorkspaceId) -> Result<Arc<WorkspaceCa>, ErrorBody> {
        if let Some(ca) = lock(&self.cas).get(&workspace) {
            return Ok(ca.clone());
        }
        let secret = self.store.secret_key().await.map_err(store_error)?;
        let ca = WorkspaceCa::derive(&secret, workspace)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("the workspace CA: {e}")))?;
        Ok(lock(&self.cas).entry(workspace).or_insert_with(|| Arc::new(ca)).clone())
    }

    /// `POST /v1/direct/cert`: a certificate for the caller's own Ed25519 key.
    pub(crate) async fn certificate(
        &self,
        member: &Member,
        request: DirectCertRequest,
    ) -> Result<DirectCert, ErrorBody> {
        self.check_enabled(member)?;
        let bad = || ErrorBody::new(ErrorCode::BadRequest, "public_key must be an Ed25519 key: 32 bytes, base64");
        let key = STANDARD.decode(request.public_key.as_bytes()).map_err(|_| bad())?;
        if key.len() != 32 {
            return Err(bad());
        }
        let ca = self.ca(member.workspace_id).await?;
        let now = clock::now();
        let cert_pem = ca
            .issue(member.id, &key, now, self.policy.cert_lifetime_secs)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("issuing a certificate: {e}")))?;
        Ok(DirectCert {
            cert_pem,
            ca_pem: ca.cert_pem.clone(),
            ca_key: STANDARD.encode(ca.public_key()),
            expires_at: now + self.policy.cert_lifetime_secs,
            workspace_id: member.workspace_id,
            member_id: member.id,
        })
    }

    /// `POST /v1/direct/route`: the exposing agent's candidates and a ticket, after the checks a
    /// relayed tunnel gets. On a cluster the agent may be held by another replica: its candidates
    /// come from the registry and every replica signs with the same workspace CA. Not found when
    /// the service's agent offers no direct path: the caller relays.
    pub(crate) async fn route(
        &self,
        shares: &Shares,
        member: &Member,
        request: DirectRouteRequest,
    ) -> Result<DirectRoute, ErrorBody> {
        self.check_enabled(member)?;
        let service = request.service.as_str();
        let (share, owner) = match &request.join_token {
            Some(token) => {
                let (cut, row) =
                    shares::authorize_share_route(shares, member, token, service).await.map_err(ErrorBody::from)?;
                (Some((cut, row.id, row.expires_at)), Some(row.creator_id))
            }
            None => (None, None),
        };
        let no_direct = || ErrorBody::new(ErrorCode::NotFound, format!("'{service}' offers no direct path"));
        let conn = self.routes.find(member.workspace_id, service, owner).await.ok_or_else(no_direct)?;
        if request.owner.as_deref().is_some_and(|expected| *conn.owner_name != *expected) || conn.direct.is_empty() {
            return Err(no_direct());
        }
        let ca = self.ca(member.workspace_id).await?;
        let expires_at = clock::now_ms() + TICKET_LIFETIME_MS;
        let ticket = Ticket {
            workspace: member.workspace_id,
            member: member.id,
            owner: conn.owner,
            service: service.to_string(),
            share: share.as_ref().map(|(_, id, _)| *id),
            share_expires_at: share.as_ref().map(|(_, _, ends)| ends.saturating_mul(1000)),
            expires_at,
        };
        if let Some((cut, id, _)) = share {
            let grant = Grant { workspace: member.workspace_id, owner: conn.owner, service: service.to_string() };
            self.watch_share(cut, id, grant);
        }
        Ok(DirectRoute {
            candidates: conn.direct.to_vec(),
            ticket: pconnect_link::ticket::sign(&ticket, ca.ticket_signer()),
            expires_at,
            owner_id: conn.owner,
            owner: conn.owner_name.to_string(),
        })
    }

    /// Once per share with direct tickets out: when it ends (revoked, expired, on any replica),
    /// every agent its tickets named is told to cut its direct tunnels through it (a share spans
    /// all its creator's services, which more than one agent may expose).
    fn watch_share(&self, cut: tokio_util::sync::CancellationToken, share: ShareId, grant: Grant) {
        {
            let mut share_grants = lock(&self.share_grants);
            if let Some(grants) = share_grants.get_mut(&share) {
                grants.insert(grant);
                return;
            }
            share_grants.insert(share, HashSet::from([grant]));
        }
        let (share_grants, teller) = (self.share_grants.clone(), self.teller.clone());
        tokio::spawn(async move {
            cut.cancelled().await;
            let grants = lock(&share_grants).remove(&share).unwrap_or_default();
            drop(teller.tell(Revoked { member: None, share: Some(share) }, grants));
        });
    }

    /// A member was removed: every agent this hub holds refuses their tickets and cuts their
    /// direct tunnels from now on, and every agent watching them (on either side of a direct
    /// connection, held here) is told.
    pub(crate) fn revoke_member(&self, member: MemberId) {
        self.watches.removed(member);
        for (conn, service) in self.routes.local_conns() {
            tokio::spawn(async move {
                revoke::tell(&conn, &service, &Revoked { member: Some(member), share: None }).await;
            });
        }
        // Nothing waits for the removed member's own agents any more.
        self.teller.forget_owner(member);
    }

    /// Tells again the agents that revocations have not reached yet.
    pub(crate) fn retell(&self) {
        drop(self.teller.retell());
    }
}
