//! The planner's examples (snapshots of what `up` does) and its properties: applying a plan and
//! planning again is empty, and nothing the project did not create is ever touched.

use proptest::prelude::*;

use super::*;

const PROJECT: &str = "shop";

fn want(persistent: bool, methods: &[&str], secs: u64) -> LinkWant {
    let policy = LinkPolicy { methods: methods.iter().map(|m| m.to_string()).collect(), ..Default::default() };
    LinkWant { persistent, expires_in_secs: (!persistent).then_some(secs), policy, credentials: None }
}

fn desired() -> Desired {
    Desired {
        project: PROJECT.into(),
        services: BTreeMap::from([("web".into(), 3000), ("db".into(), 5432)]),
        links: BTreeMap::from([("web".into(), want(false, &["GET"], 3600))]),
        shares: BTreeMap::from([(
            "team".into(),
            ShareWant { services: BTreeSet::from(["web".into(), "db".into()]), expires_in_secs: 3600 },
        )]),
        reach: vec![ReachWant::Teammate { name: "carol".into() }],
        debug: BTreeSet::from(["web".into()]),
    }
}

fn workspace() -> Actual {
    Actual {
        me: "alice".into(),
        workspace: vec![
            WorkspaceService { name: "payments".into(), owner: "carol".into(), port: 8081 },
            WorkspaceService { name: "web".into(), owner: "alice".into(), port: 3000 },
        ],
        ..Actual::default()
    }
}

/// Hand-made things beside the project: an exposed service, a link and a share without the tag,
/// and another project's.
fn with_hand_made(mut actual: Actual) -> Actual {
    actual.services.insert("scratch".into(), ServiceHave { port: 9000, project: None });
    actual.links.push(LinkHave {
        subdomain: "byhand".into(),
        service: "web".into(),
        persistent: false,
        expires_in_secs: Some(60),
        policy: LinkPolicy::default(),
        project: None,
    });
    actual.shares.push(ShareHave {
        id: 900,
        name: Some("team".into()),
        services: BTreeSet::from(["web".into()]),
        expires_in_secs: 60,
        project: Some("other".into()),
    });
    actual.debug.push(DebugHave { id: "d900".into(), service: "web".into(), project: None });
    actual
}

#[test]
fn from_nothing_everything_is_created_in_order() {
    let plan = plan(&desired(), &workspace());
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"changes": [
            {"action": "expose", "service": "db", "port": 5432},
            {"action": "expose", "service": "web", "port": 3000},
            {"action": "create_link", "service": "web", "link": {"persistent": false, "expires_in_secs": 3600, "policy": {"methods": ["GET"]}}},
            {"action": "create_share", "name": "team", "share": {"services": ["db", "web"], "expires_in_secs": 3600}},
            {"action": "open_reach", "service": "payments", "via": {"owner": "carol"}, "port": null},
            {"action": "start_debug", "service": "web"},
        ]})
    );
}

#[test]
fn after_up_the_plan_is_clean_whatever_was_made_by_hand() {
    let desired = desired();
    let actual = with_hand_made(workspace());
    let applied = apply(&actual, &plan(&desired, &actual), PROJECT);
    assert_eq!(plan(&desired, &applied), Plan::default());
}

#[test]
fn expiry_and_policy_edits_are_applied_in_place() {
    let desired = desired();
    let applied = apply(&workspace(), &plan(&desired, &workspace()), PROJECT);
    let subdomain = applied.links[0].subdomain.clone();
    let share = applied.shares[0].id;

    let mut edited = desired.clone();
    edited.links.insert("web".into(), want(false, &["GET", "POST"], 7200));
    edited.shares.get_mut("team").unwrap().expires_in_secs = 8 * 3600;
    let changes = plan(&edited, &applied).changes;
    assert_eq!(
        changes,
        vec![
            Change::UpdateLink {
                subdomain: subdomain.clone(),
                service: "web".into(),
                link: want(false, &["GET", "POST"], 7200)
            },
            Change::UpdateShare { id: share, name: "team".into(), share: edited.shares["team"].clone() },
        ]
    );
    let after = apply(&applied, &Plan { changes, waiting: vec![] }, PROJECT);
    assert_eq!(after.links[0].subdomain, subdomain, "the link kept its URL");
    assert_eq!(after.shares[0].id, share, "the share kept its code");
    assert!(plan(&edited, &after).is_empty());
}

#[test]
fn drift_is_restored_and_removals_are_planned() {
    let desired = desired();
    let applied = apply(&workspace(), &plan(&desired, &workspace()), PROJECT);
    // A link revoked by hand comes back; nothing else moves.
    let mut drifted = applied.clone();
    drifted.links.clear();
    assert_eq!(
        plan(&desired, &drifted).changes,
        vec![Change::CreateLink { service: "web".into(), link: want(false, &["GET"], 3600) }]
    );
    // A removed service is unexposed; a persistent link is never revoked by the plan.
    let mut fewer = desired.clone();
    fewer.services.remove("db");
    fewer.shares.clear();
    let mut with_public = applied.clone();
    with_public.links.push(LinkHave {
        subdomain: "keep".into(),
        service: "db".into(),
        persistent: true,
        expires_in_secs: None,
        policy: LinkPolicy::default(),
        project: Some(PROJECT.into()),
    });
    let changes = plan(&fewer, &with_public).changes;
    assert!(changes.contains(&Change::Unexpose { service: "db".into() }));
    assert!(!changes.iter().any(|c| matches!(c, Change::RevokeLink { subdomain, .. } if subdomain == "keep")));
}

#[test]
fn reach_follows_the_workspace_and_waits_for_what_is_missing() {
    let mut desired = desired();
    desired.reach.push(ReachWant::Service { name: "nowhere".into(), port: None });
    let mut actual = workspace();
    let plan_now = plan(&desired, &actual);
    assert_eq!(plan_now.waiting, vec!["service 'nowhere'".to_string()]);
    actual = apply(&actual, &plan_now, PROJECT);
    // carol exposes another service: it is reached too; she leaves: both close.
    actual.workspace.push(WorkspaceService { name: "ledger".into(), owner: "carol".into(), port: 8082 });
    assert_eq!(
        plan(&desired, &actual).changes,
        vec![Change::OpenReach { service: "ledger".into(), via: ReachVia::Owner("carol".into()), port: None }]
    );
    actual.workspace.retain(|s| s.owner != "carol");
    let changes = plan(&desired, &actual).changes;
    assert!(changes.contains(&Change::CloseReach { service: "payments".into() }), "{changes:?}");
}

fn arb_policy() -> impl Strategy<Value = LinkPolicy> {
    proptest::option::of(1u32..100).prop_map(|rate_per_min| LinkPolicy { rate_per_min, ..Default::default() })
}

fn arb_desired() -> impl Strategy<Value = Desired> {
    let names = proptest::sample::subsequence(vec!["a", "b", "c", "d"], 0..=4);
    let links = proptest::collection::vec((any::<bool>(), any::<bool>(), 1u64..4, arb_policy()), 4);
    (names, links, any::<bool>(), 1u64..4, any::<bool>(), any::<bool>()).prop_map(
        |(names, links, share, share_hours, reach, debug)| {
            let services: BTreeMap<String, u16> =
                names.iter().enumerate().map(|(i, n)| (n.to_string(), 3000 + i as u16)).collect();
            let links = names
                .iter()
                .zip(links)
                .filter(|(_, (on, ..))| *on)
                .map(|(n, (_, persistent, hours, policy))| {
                    let expires_in_secs = (!persistent).then_some(hours * 3600);
                    (n.to_string(), LinkWant { persistent, expires_in_secs, policy, credentials: None })
                })
                .collect();
            let shares = if share && !names.is_empty() {
                BTreeMap::from([(
                    "s".to_string(),
                    ShareWant { services: services.keys().cloned().collect(), expires_in_secs: share_hours * 3600 },
                )])
            } else {
                BTreeMap::new()
            };
            let reach = if reach { vec![ReachWant::Teammate { name: "carol".into() }] } else { Vec::new() };
            let debug = if debug { services.keys().take(1).cloned().collect() } else { BTreeSet::new() };
            Desired { project: PROJECT.into(), services, links, shares, reach, debug }
        },
    )
}

/// Random hand-made resources: untagged or another project's, some with the same names.
fn arb_foreign() -> impl Strategy<Value = Actual> {
    let tags = prop_oneof![Just(None), Just(Some("other".to_string()))];
    (
        proptest::collection::vec((proptest::sample::select(vec!["a", "b", "x"]), tags.clone(), any::<bool>()), 0..4),
        tags,
    )
        .prop_map(|(items, share_tag)| {
            let mut actual = workspace();
            for (i, (name, tag, persistent)) in items.into_iter().enumerate() {
                actual
                    .services
                    .entry(format!("{name}-hand"))
                    .or_insert(ServiceHave { port: 9000, project: tag.clone() });
                actual.links.push(LinkHave {
                    subdomain: format!("hand{i}"),
                    service: name.to_string(),
                    persistent,
                    expires_in_secs: (!persistent).then_some(60),
                    policy: LinkPolicy::default(),
                    project: tag.clone(),
                });
                actual.debug.push(DebugHave { id: format!("h{i}"), service: name.to_string(), project: tag });
            }
            actual.shares.push(ShareHave {
                id: 777,
                name: Some("s".into()),
                services: BTreeSet::from(["a".into()]),
                expires_in_secs: 60,
                project: share_tag,
            });
            actual
        })
}

/// Whether a change names a resource that is not the project's in `actual`.
fn touches_foreign(change: &Change, actual: &Actual) -> bool {
    let foreign_link =
        |sub: &str| actual.links.iter().any(|l| l.subdomain == sub && l.project.as_deref() != Some(PROJECT));
    let foreign_share = |id: i64| actual.shares.iter().any(|s| s.id == id && s.project.as_deref() != Some(PROJECT));
    match change {
        Change::Unexpose { service } => {
            actual.services.get(service).is_some_and(|s| s.project.as_deref() != Some(PROJECT))
        }
        Change::UpdateLink { subdomain, .. } | Change::RevokeLink { subdomain, .. } => foreign_link(subdomain),
        Change::UpdateShare { id, .. } | Change::RevokeShare { id, .. } => foreign_share(*id),
        Change::StopDebug { id, .. } => {
            actual.debug.iter().any(|d| &d.id == id && d.project.as_deref() != Some(PROJECT))
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn applying_a_plan_then_planning_again_changes_nothing_and_foreign_things_are_never_touched(
        first in arb_desired(), second in arb_desired(), foreign in arb_foreign()
    ) {
        let plan1 = plan(&first, &foreign);
        prop_assert!(!plan1.changes.iter().any(|c| touches_foreign(c, &foreign)), "{:?}", plan1);
        let actual = apply(&foreign, &plan1, PROJECT);
        prop_assert!(plan(&first, &actual).is_empty(), "{:?}", plan(&first, &actual));
        let plan2 = plan(&second, &actual);
        prop_assert!(!plan2.changes.iter().any(|c| touches_foreign(c, &actual)), "{:?}", plan2);
        let moved = apply(&actual, &plan2, PROJECT);
        prop_assert!(plan(&second, &moved).is_empty(), "{:?}", plan(&second, &moved));
        // What was not the project's is exactly as it was, but for a persistent link the project
        // declared for the same service: the hub has one per member and service, and adopts it.
        let adopted = |l: &LinkHave| l.persistent && [&first, &second].iter().any(|d| d.links.get(&l.service).is_some_and(|w| w.persistent));
        let foreign_links = |a: &Actual| {
            a.links.iter().filter(|l| l.project.as_deref() != Some(PROJECT) && !adopted(l)).cloned().collect::<Vec<_>>()
        };
        prop_assert_eq!(foreign_links(&moved), foreign_links(&foreign));
    }
}
