//! Reading this member's hub state (services, links, shares, debug sessions, and the workspace's
//! services for `reach:`) into the planner's [`Actual`]. Every resource keeps its project tag: the
//! plan decides what is the project's.

use std::collections::BTreeSet;

use anyhow::Result;
use pconnect_proto::control::ServiceList;
use pconnect_proto::debug::DebugSummary;
use pconnect_proto::link::LinkListing;
use pconnect_proto::plan::{Actual, DebugHave, LinkHave, ServiceHave, ShareHave, WorkspaceService};
use pconnect_proto::rpc;
use pconnect_proto::share::ShareListing;

use crate::link::forward::ForwardLink;

/// What the hub holds: the planner's [`Actual`] for one member (reach listeners are local and
/// filled in by their holder), and the listings it came from.
pub struct HubView {
    pub actual: Actual,
    pub links: LinkListing,
    pub shares: ShareListing,
    /// The whole workspace's services.
    pub services: ServiceList,
}

/// The hub's view of `member`'s online services, active links and shares, live debug sessions, and
/// the workspace's services.
pub async fn fetch(link: &ForwardLink, member: &str) -> Result<HubView> {
    let services: ServiceList = link.call::<rpc::ListServices>(&()).await?;
    let links: LinkListing = link.call::<rpc::ListLinks>(&()).await?;
    let shares: ShareListing = link.call::<rpc::ListShares>(&()).await?;
    let debug: Vec<DebugSummary> = link.call::<rpc::ListDebug>(&()).await?;
    let actual = Actual {
        me: member.to_string(),
        services: services
            .services
            .iter()
            .filter(|s| s.owner == member && s.online)
            .map(|s| (s.name.clone(), ServiceHave { port: s.port, project: s.project.clone() }))
            .collect(),
        links: links
            .links
            .iter()
            .map(|l| LinkHave {
                subdomain: l.subdomain.clone(),
                service: l.service.clone(),
                persistent: l.persistent,
                expires_in_secs: l.expires_at.map(|at| u64::try_from(at - l.created_at).unwrap_or(0)),
                policy: l.policy.clone(),
                project: l.project.clone(),
            })
            .collect(),
        shares: shares
            .shares
            .iter()
            .map(|s| ShareHave {
                id: s.id,
                name: s.name.clone(),
                services: s.routes.iter().map(|r| r.service.clone()).collect::<BTreeSet<String>>(),
                expires_in_secs: u64::try_from(s.expires_at - s.created_at).unwrap_or(0),
                project: s.project.clone(),
            })
            .collect(),
        workspace: services
            .services
            .iter()
            .filter(|s| s.online)
            .map(|s| WorkspaceService { name: s.name.clone(), owner: s.owner.clone(), port: s.port })
            .collect(),
        reaching: Default::default(),
        debug: debug
            .iter()
            .map(|d| DebugHave { id: d.id.clone(), service: d.service.clone(), project: d.project.clone() })
            .collect(),
    };
    Ok(HubView { actual, links, shares, services })
}
