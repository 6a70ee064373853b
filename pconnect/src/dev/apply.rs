//! Applying a plan's hub changes (links and shares) through the hub's RPCs, tagged with the
//! project. Services, reach listeners and debug sessions are applied by the engine (they are this
//! agent's own). Each change is reported as done or failed with its reason, so a partial failure
//! says exactly what was and was not applied.

use pconnect_proto::link::{CreateLink, LinkInfo, RevokeLink, UpdateLink};
use pconnect_proto::plan::Change;
use pconnect_proto::rpc;
use pconnect_proto::share::{CreateShare, ShareCreated, ShareId, ShareInfo, UpdateShare};

use crate::link::forward::ForwardLink;

/// The outcome of one change.
#[derive(Debug)]
pub struct Applied {
    pub change: Change,
    pub result: Result<Outcome, String>,
}

/// What a successful change produced.
#[derive(Debug)]
pub enum Outcome {
    Done,
    Link(LinkInfo),
    Share(ShareCreated),
    ShareUpdated(ShareInfo),
}

/// Whether a change is applied here (through the hub's link and share RPCs).
pub fn is_hub_change(change: &Change) -> bool {
    matches!(
        change,
        Change::CreateLink { .. }
            | Change::UpdateLink { .. }
            | Change::RevokeLink { .. }
            | Change::CreateShare { .. }
            | Change::UpdateShare { .. }
            | Change::RevokeShare { .. }
    )
}

/// Applies one link or share change for `project`.
pub async fn apply(link: &ForwardLink, project: &str, change: &Change) -> Applied {
    let result = match change {
        Change::CreateLink { service, link: want } => {
            let body = CreateLink {
                service: service.clone(),
                persistent: want.persistent,
                expires_in_secs: want.expires_in_secs,
                policy: want.policy.clone(),
                project: Some(project.to_string()),
            };
            link.call::<rpc::CreateLinkCall>(&body).await.map(Outcome::Link)
        }
        Change::UpdateLink { subdomain, link: want, .. } => {
            let body = UpdateLink {
                subdomain: subdomain.clone(),
                expires_in_secs: want.expires_in_secs,
                policy: want.policy.clone(),
            };
            link.call::<rpc::UpdateLinkCall>(&body).await.map(Outcome::Link)
        }
        Change::RevokeLink { subdomain, .. } => {
            link.call::<rpc::RevokeLinkCall>(&RevokeLink { subdomain: subdomain.clone() }).await.map(|_| Outcome::Done)
        }
        Change::CreateShare { name, share } => {
            let body = CreateShare {
                name: Some(name.clone()),
                expires_in_secs: share.expires_in_secs,
                services: Some(share.services.iter().cloned().collect()),
                project: Some(project.to_string()),
            };
            link.call::<rpc::CreateShareCall>(&body).await.map(Outcome::Share)
        }
        Change::UpdateShare { id, share, .. } => {
            let body = UpdateShare { id: *id, expires_in_secs: share.expires_in_secs };
            link.call::<rpc::UpdateShareCall>(&body).await.map(Outcome::ShareUpdated)
        }
        Change::RevokeShare { id, .. } => {
            link.call::<rpc::RevokeShareById>(&ShareId { id: *id }).await.map(|_| Outcome::Done)
        }
        other => return Applied { change: other.clone(), result: Err("not a hub change".into()) },
    };
    Applied { change: change.clone(), result: result.map_err(|e| e.to_string()) }
}
