//! The reconciler: a pure `plan(desired, actual) -> Plan`. `connect plan` prints it, `connect up`
//! applies it and plans again while running. Applying a plan and planning again yields no changes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::link::{self, LinkPolicy};

/// Hub state the project wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// Service name -> port teammates get.
    pub services: BTreeMap<String, u16>,
    /// Service name -> its link.
    pub links: BTreeMap<String, LinkWant>,
    /// Share name -> services in it.
    pub shares: BTreeMap<String, ShareWant>,
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
    /// Whether a link on the hub already is what this wants.
    pub fn matches(&self, have: &LinkHave) -> bool {
        let without_auth = |p: &LinkPolicy| LinkPolicy { basic_auth: None, basic_auth_sha256: None, ..p.clone() };
        let auth_matches = match (&self.credentials, &have.policy.basic_auth, &have.policy.basic_auth_sha256) {
            (None, None, None) => true,
            (Some(credentials), Some(phc), None) => link::verify_credentials(phc, credentials.expose().as_bytes()),
            _ => false,
        };
        self.persistent == have.persistent && without_auth(&self.policy) == without_auth(&have.policy) && auth_matches
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

/// Hub state as it is, for this member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actual {
    /// Service name -> registered port.
    pub services: BTreeMap<String, u16>,
    /// Active links.
    pub links: Vec<LinkHave>,
    /// Active shares, by name.
    pub shares: Vec<ShareHave>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkHave {
    pub subdomain: String,
    pub service: String,
    pub persistent: bool,
    pub policy: LinkPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareHave {
    pub id: i64,
    pub name: String,
    pub services: BTreeSet<String>,
}

/// One change to make on the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Expose { service: String, port: u16 },
    Unexpose { service: String },
    CreateLink { service: String, link: LinkWant },
    RevokeLink { subdomain: String, service: String },
    CreateShare { name: String, share: ShareWant },
    RevokeShare { id: i64, name: String },
}

/// What `up` would change, in the order to apply it (removals after additions of the same kind
/// would break nothing, but revoking first keeps names free).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The changes that make `actual` match `desired`. Links and shares are matched by content, so a
/// link revoked by hand (drift) is planned again and an edited policy replaces the link.
pub fn plan(desired: &Desired, actual: &Actual) -> Plan {
    let mut changes = Vec::new();
    for (service, port) in &desired.services {
        if actual.services.get(service) != Some(port) {
            changes.push(Change::Expose { service: service.clone(), port: *port });
        }
    }
    for service in actual.services.keys().filter(|s| !desired.services.contains_key(*s)) {
        changes.push(Change::Unexpose { service: service.clone() });
    }
    let link_matches = |have: &LinkHave| desired.links.get(&have.service).is_some_and(|want| want.matches(have));
    for have in actual.links.iter().filter(|have| !link_matches(have)) {
        // Persistent links outlive `up`: only a changed policy replaces one (the hub keeps its URL).
        if !have.persistent {
            changes.push(Change::RevokeLink { subdomain: have.subdomain.clone(), service: have.service.clone() });
        }
    }
    for (service, want) in &desired.links {
        let present = actual.links.iter().any(|have| &have.service == service && link_matches(have));
        if !present {
            changes.push(Change::CreateLink { service: service.clone(), link: want.clone() });
        }
    }
    for have in &actual.shares {
        if desired.shares.get(&have.name).is_none_or(|want| want.services != have.services) {
            changes.push(Change::RevokeShare { id: have.id, name: have.name.clone() });
        }
    }
    for (name, want) in &desired.shares {
        if !actual.shares.iter().any(|have| &have.name == name && have.services == want.services) {
            changes.push(Change::CreateShare { name: name.clone(), share: want.clone() });
        }
    }
    Plan { changes }
}

/// What the hub looks like after `plan` is applied to `actual` (used by tests and dry runs).
pub fn apply(actual: &Actual, plan: &Plan) -> Actual {
    let mut next = actual.clone();
    let mut counter = next.shares.iter().map(|s| s.id).max().unwrap_or(0);
    for change in &plan.changes {
        match change {
            Change::Expose { service, port } => {
                next.services.insert(service.clone(), *port);
            }
            Change::Unexpose { service } => {
                next.services.remove(service);
            }
            Change::CreateLink { service, link } => {
                if link.persistent {
                    next.links.retain(|l| !(l.persistent && &l.service == service));
                }
                next.links.push(LinkHave {
                    subdomain: format!("new-{service}-{}", next.links.len()),
                    service: service.clone(),
                    persistent: link.persistent,
                    policy: link.policy.clone(),
                });
            }
            Change::RevokeLink { subdomain, .. } => next.links.retain(|l| &l.subdomain != subdomain),
            Change::CreateShare { name, share } => {
                counter += 1;
                next.shares.push(ShareHave { id: counter, name: name.clone(), services: share.services.clone() });
            }
            Change::RevokeShare { id, .. } => next.shares.retain(|s| s.id != *id),
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn want(persistent: bool, methods: &[&str]) -> LinkWant {
        let policy = LinkPolicy { methods: methods.iter().map(|m| m.to_string()).collect(), ..Default::default() };
        LinkWant { persistent, expires_in_secs: (!persistent).then_some(3600), policy, credentials: None }
    }

    fn desired() -> Desired {
        Desired {
            services: BTreeMap::from([("web".into(), 3000), ("db".into(), 5432)]),
            links: BTreeMap::from([("web".into(), want(false, &["GET"]))]),
            shares: BTreeMap::from([(
                "team".into(),
                ShareWant { services: BTreeSet::from(["web".into(), "db".into()]), expires_in_secs: 3600 },
            )]),
        }
    }

    #[test]
    fn from_nothing_everything_is_created() {
        let plan = plan(&desired(), &Actual::default());
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"changes": [
                {"action": "expose", "service": "db", "port": 5432},
                {"action": "expose", "service": "web", "port": 3000},
                {"action": "create_link", "service": "web", "link": {"persistent": false, "expires_in_secs": 3600, "policy": {"methods": ["GET"]}}},
                {"action": "create_share", "name": "team", "share": {"services": ["db", "web"], "expires_in_secs": 3600}},
            ]})
        );
    }

    #[test]
    fn drift_and_edits_are_planned_precisely() {
        let desired = desired();
        let applied = apply(&Actual::default(), &plan(&desired, &Actual::default()));
        // A link revoked by hand comes back; nothing else moves.
        let mut drifted = applied.clone();
        drifted.links.clear();
        assert_eq!(
            plan(&desired, &drifted).changes,
            vec![Change::CreateLink { service: "web".into(), link: want(false, &["GET"]) }]
        );
        // A changed policy replaces the temporary link.
        let mut edited = desired.clone();
        edited.links.insert("web".into(), want(false, &["POST"]));
        let changes = plan(&edited, &applied).changes;
        assert!(matches!(&changes[0], Change::RevokeLink { service, .. } if service == "web"));
        assert!(matches!(&changes[1], Change::CreateLink { service, .. } if service == "web"));
        // A removed service is unexposed; a persistent link is never revoked by the plan.
        let mut fewer = desired.clone();
        fewer.services.remove("db");
        fewer.shares.clear();
        let mut with_public = applied.clone();
        with_public.links.push(LinkHave {
            subdomain: "keep".into(),
            service: "db".into(),
            persistent: true,
            policy: LinkPolicy::default(),
        });
        let changes = plan(&fewer, &with_public).changes;
        assert!(changes.contains(&Change::Unexpose { service: "db".into() }));
        assert!(!changes.iter().any(|c| matches!(c, Change::RevokeLink { subdomain, .. } if subdomain == "keep")));
    }

    fn arb_policy() -> impl Strategy<Value = LinkPolicy> {
        proptest::option::of(1u32..100).prop_map(|rate_per_min| LinkPolicy { rate_per_min, ..Default::default() })
    }

    fn arb_desired() -> impl Strategy<Value = Desired> {
        let names = proptest::sample::subsequence(vec!["a", "b", "c", "d"], 0..=4);
        (names, proptest::collection::vec((any::<bool>(), arb_policy()), 4), any::<bool>()).prop_map(
            |(names, links, share)| {
                let services: BTreeMap<String, u16> =
                    names.iter().enumerate().map(|(i, n)| (n.to_string(), 3000 + i as u16)).collect();
                let links = names
                    .iter()
                    .zip(links)
                    .filter(|(_, (on, _))| *on)
                    .map(|(n, (_, policy))| {
                        (
                            n.to_string(),
                            LinkWant { persistent: false, expires_in_secs: Some(60), policy, credentials: None },
                        )
                    })
                    .collect();
                let shares = if share && !names.is_empty() {
                    BTreeMap::from([(
                        "s".to_string(),
                        ShareWant { services: services.keys().cloned().collect(), expires_in_secs: 60 },
                    )])
                } else {
                    BTreeMap::new()
                };
                Desired { services, links, shares }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn applying_a_plan_then_planning_again_changes_nothing(first in arb_desired(), second in arb_desired()) {
            let actual = apply(&Actual::default(), &plan(&first, &Actual::default()));
            prop_assert!(plan(&first, &actual).is_empty());
            let moved = apply(&actual, &plan(&second, &actual));
            prop_assert!(plan(&second, &moved).is_empty(), "{:?}", plan(&second, &moved));
        }
    }
}
