//! Applying a plan's link and share changes through the hub's RPCs. Service changes are applied by
//! the caller (they are the set this agent serves). Each change is reported as done or failed with
//! its reason, so a partial failure says exactly what was and was not applied.

use pconnect_proto::link::{CreateLink, LinkInfo, RevokeLink};
use pconnect_proto::plan::Change;
use pconnect_proto::share::{CreateShare, ShareCreated, ShareId};
use pconnect_proto::wire::{LINK_REVOKE_PATH, LINKS_PATH, SHARE_REVOKE_ID_PATH, SHARES_PATH};

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
}

/// Applies the link and share changes of a plan, in order, going on after a failure.
pub async fn apply(link: &ForwardLink, changes: &[Change]) -> Vec<Applied> {
    let mut out = Vec::new();
    for change in changes {
        let result = match change {
            Change::Expose { .. } | Change::Unexpose { .. } => continue,
            Change::CreateLink { service, link: want } => {
                let body = CreateLink {
                    service: service.clone(),
                    persistent: want.persistent,
                    expires_in_secs: want.expires_in_secs,
                    policy: want.policy.clone(),
                };
                link.post_for::<_, LinkInfo>(LINKS_PATH, &body).await.map(Outcome::Link)
            }
            Change::RevokeLink { subdomain, .. } => {
                link.post(LINK_REVOKE_PATH, &RevokeLink { subdomain: subdomain.clone() }).await.map(|_| Outcome::Done)
            }
            Change::CreateShare { name, share } => {
                let body = CreateShare {
                    name: Some(name.clone()),
                    expires_in_secs: share.expires_in_secs,
                    services: Some(share.services.iter().cloned().collect()),
                };
                link.post_for::<_, ShareCreated>(SHARES_PATH, &body).await.map(Outcome::Share)
            }
            Change::RevokeShare { id, .. } => {
                link.post(SHARE_REVOKE_ID_PATH, &ShareId { id: *id }).await.map(|_| Outcome::Done)
            }
        };
        out.push(Applied { change: change.clone(), result: result.map_err(|e| e.to_string()) });
    }
    out
}
