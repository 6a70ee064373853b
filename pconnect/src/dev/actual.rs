//! Reading this member's hub state (services, links, shares) into the planner's [`Actual`].

use std::collections::BTreeSet;

use anyhow::Result;
use pconnect_proto::control::ServiceList;
use pconnect_proto::link::LinkListing;
use pconnect_proto::plan::{Actual, LinkHave, ShareHave};
use pconnect_proto::share::ShareListing;
use pconnect_proto::wire::{LINKS_PATH, SERVICES_PATH, SHARES_PATH};

use crate::link::forward::ForwardLink;

/// What the hub holds: the planner's [`Actual`] for one member, and the listings it came from.
pub struct HubView {
    pub actual: Actual,
    pub links: LinkListing,
    pub shares: ShareListing,
    /// The whole workspace's services.
    pub services: ServiceList,
}

/// The hub's view of `member`'s services (online ones), links and named shares.
pub async fn fetch(link: &ForwardLink, member: &str) -> Result<HubView> {
    let services: ServiceList = link.get(SERVICES_PATH).await?;
    let links: LinkListing = link.get(LINKS_PATH).await?;
    let shares: ShareListing = link.get(SHARES_PATH).await?;
    let actual = Actual {
        services: services
            .services
            .iter()
            .filter(|s| s.owner == member && s.online)
            .map(|s| (s.name.clone(), s.port))
            .collect(),
        links: links
            .links
            .iter()
            .map(|l| LinkHave {
                subdomain: l.subdomain.clone(),
                service: l.service.clone(),
                persistent: l.persistent,
                policy: l.policy.clone(),
            })
            .collect(),
        shares: shares
            .shares
            .iter()
            .filter_map(|s| {
                let name = s.name.clone()?;
                let services: BTreeSet<String> = s.routes.iter().map(|r| r.service.clone()).collect();
                Some(ShareHave { id: s.id, name, services })
            })
            .collect(),
    };
    Ok(HubView { actual, links, shares, services })
}
