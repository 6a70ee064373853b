//! Join codes under concurrency: 100 redemptions at once (right codes, wrong codes, mixed, from
//! several members) never admit a wrong guess past the limit of 10 failures per member per
//! 10 minutes, never refuse a right code before it, and never panic; a code of another workspace
//! reads exactly like a code that does not exist, down to the bytes and the timing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pconnect::link::LinkError;
use pconnect::link::forward::ForwardLink;
use pconnect_e2e::{Agent, EchoServer, Hub, Proc};
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::share::ShareCode;
use tokio_util::sync::CancellationToken;

use super::routing::member_of;
use super::share_code;
use super::support::expose;

/// The limiter's budget (hub/src/features/shares/join_limiter.rs).
const MAX_FAILURES: usize = 10;

/// How one redemption ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Joined,
    NotFound(ErrorBody),
    Limited(ErrorBody),
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    joined: usize,
    not_found: usize,
    limited: usize,
}

fn tally(outcomes: &[Outcome]) -> Tally {
    let mut t = Tally::default();
    for o in outcomes {
        match o {
            Outcome::Joined => t.joined += 1,
            Outcome::NotFound(_) => t.not_found += 1,
            Outcome::Limited(_) => t.limited += 1,
        }
    }
    t
}

async fn link_of(agent: &Agent, cancel: &CancellationToken) -> Arc<ForwardLink> {
    let login = pconnect::state::Login::load(agent.home()).unwrap().unwrap();
    let creds = pconnect::session::credentials(&login).unwrap();
    let (link, _) = ForwardLink::connect(creds, format!("joins-{}", agent.name()), 2, cancel.clone()).await.unwrap();
    Arc::new(link)
}

async fn redeem(link: &ForwardLink, code: &str) -> Outcome {
    let body = ShareCode { code: code.to_string() };
    match link.call::<pconnect_proto::rpc::JoinShare>(&body).await {
        Ok(_) => Outcome::Joined,
        Err(LinkError::Hub(e)) if e.code == ErrorCode::NotFound => Outcome::NotFound(e),
        Err(LinkError::Hub(e)) if e.code == ErrorCode::RateLimited => Outcome::Limited(e),
        Err(e) => panic!("unexpected join failure: {e}"),
    }
}

/// Redeems every `(member index, code)` at once; returns the outcomes in the same order.
async fn all_at_once(links: &[Arc<ForwardLink>], attempts: Vec<(usize, String)>) -> Vec<Outcome> {
    let tasks: Vec<_> = attempts
        .into_iter()
        .map(|(member, code)| {
            let link = links[member].clone();
            tokio::spawn(async move { redeem(&link, &code).await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("a redemption task panicked"));
    }
    out
}

/// A valid-looking code that is not `real` (codes are 6 characters of the share alphabet).
fn wrong_code(i: usize, real: &str) -> String {
    let alphabet = pconnect_proto::share::CODE_ALPHABET;
    let code: String = (0..6).map(|k| alphabet[(i * 7 + k * 13 + 3) % alphabet.len()] as char).collect();
    if code == real { "zzzzzz".into() } else { code }
}

fn failed_audits(hub: &Hub, runtime: &tokio::runtime::Runtime, member: &str) -> usize {
    runtime.block_on(async {
        use pconnect_hub::store::AuditStore;
        let store = pconnect_hub::store::SqliteStore::open(&hub.data_dir().join("hub.db")).await.unwrap();
        let audit = store.recent_audit(10_000).await.unwrap();
        audit.iter().filter(|a| a.action == "share.join_failed" && a.member.as_deref() == Some(member)).count()
    })
}

/// alice's share of her echo service, on a fresh hub.
struct AlicesShare {
    // Processes first: dropped (killed) before alice's home and the hub.
    _expose: Proc,
    _echo: EchoServer,
    alice: Agent,
    hub: Hub,
    code: String,
}

impl AlicesShare {
    fn start() -> AlicesShare {
        let echo = EchoServer::start();
        let hub = Hub::start().unwrap();
        let (alice, _) = member_of(&hub, "alice", "default");
        let expose = expose(&alice, echo.port(), "echo").unwrap();
        let code = share_code(&alice, &[]);
        AlicesShare { _expose: expose, _echo: echo, alice, hub, code }
    }
}

#[test]
fn a_hundred_concurrent_redemptions_never_admit_a_guess_past_the_limit() {
    let scene = AlicesShare::start();
    let (hub, code) = (&scene.hub, scene.code.clone());
    // m0-m4 redeem the right code, w0 guesses, mixed does both, g0-g9 guess a little each.
    let mut names: Vec<String> = ["m0", "m1", "m2", "m3", "m4", "w0", "mixed"].map(String::from).to_vec();
    let first_guesser = names.len();
    names.extend((0..10).map(|i| format!("g{i}")));
    let agents: Vec<Agent> = names.iter().map(|n| member_of(hub, n, "default").0).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let links: Vec<Arc<ForwardLink>> = runtime.block_on(async {
        let mut links = Vec::new();
        for agent in &agents {
            links.push(link_of(agent, &cancel).await);
        }
        links
    });

    // 1. The right code, 100 times at once from five members: every one admitted.
    let started = Instant::now();
    let right = runtime.block_on(all_at_once(&links, (0..100).map(|i| (i % 5, code.clone())).collect()));
    let right_took = started.elapsed();
    assert_eq!(tally(&right), Tally { joined: 100, not_found: 0, limited: 0 });

    // 2. One member, 100 wrong codes at once: exactly 10 are looked up, 90 refused by the limit.
    let started = Instant::now();
    let wrong = runtime.block_on(all_at_once(&links, (0..100).map(|i| (5, wrong_code(i, &code))).collect()));
    let wrong_took = started.elapsed();
    let wrong_tally = tally(&wrong);
    assert_eq!(
        wrong_tally,
        Tally { joined: 0, not_found: MAX_FAILURES, limited: 100 - MAX_FAILURES },
        "100 concurrent wrong guesses by one member"
    );
    for o in &wrong {
        if let Outcome::Limited(e) = o {
            assert!(e.retry_after_secs.is_some_and(|s| (1..=600).contains(&s)), "{e:?}");
        }
    }

    // 3. Ten more members, 10 wrong codes each, all 100 at once: each uses exactly its own budget,
    //    and the 11th guess of each is refused.
    let guessers: Vec<usize> = (first_guesser..links.len()).collect();
    let attempts =
        guessers.iter().flat_map(|&m| (0..10).map(move |i| (m, i))).map(|(m, i)| (m, wrong_code(m * 100 + i, &code)));
    let spread = runtime.block_on(all_at_once(&links, attempts.collect()));
    assert_eq!(tally(&spread), Tally { joined: 0, not_found: 100, limited: 0 }, "10 members x 10 wrong codes");
    let eleventh = runtime.block_on(all_at_once(&links, guessers.iter().map(|&m| (m, wrong_code(m, &code))).collect()));
    assert_eq!(tally(&eleventh), Tally { joined: 0, not_found: 0, limited: 10 }, "the 11th guess of each member");

    // 4. One member mixing 50 right and 50 wrong codes at once: no more than 10 wrong ones are
    //    looked up; right ones succeed until the limit engages, then are refused like the rest.
    let mixed_attempts: Vec<(usize, String)> =
        (0..100).map(|i| (6, if i % 2 == 0 { code.clone() } else { wrong_code(1000 + i, &code) })).collect();
    let mixed = runtime.block_on(all_at_once(&links, mixed_attempts.clone()));
    let mixed_tally = tally(&mixed);
    assert_eq!(mixed_tally.joined + mixed_tally.not_found + mixed_tally.limited, 100);
    assert!(mixed_tally.not_found <= MAX_FAILURES, "{mixed_tally:?}: wrong guesses past the limit");
    for (attempt, outcome) in mixed_attempts.iter().zip(&mixed) {
        if attempt.1 == code {
            assert!(!matches!(outcome, Outcome::NotFound(_)), "the right code was not found: {outcome:?}");
        } else {
            assert_ne!(outcome, &Outcome::Joined, "a wrong code was admitted");
        }
    }

    assert_eq!(failed_audits(hub, &runtime, "w0"), MAX_FAILURES, "each counted failure is audited once");
    assert_eq!(failed_audits(hub, &runtime, "mixed"), mixed_tally.not_found);
    // The other members were never limited by w0's or mixed's guesses.
    let after = runtime.block_on(redeem(&links[0], &code));
    assert_eq!(after, Outcome::Joined);
    cancel.cancel();
    eprintln!(
        "joins: 100 right codes from 5 members in {right_took:?}; 100 wrong from one member in {wrong_took:?}: {wrong_tally:?}; \
         mixed 50/50 from one member: {mixed_tally:?}"
    );
    assert!(!hub.output_so_far().contains("panicked"), "{}", hub.output_so_far());
}

#[test]
fn a_code_of_another_workspace_reads_exactly_like_a_missing_one() {
    let scene = AlicesShare::start();
    let (hub, alice, code) = (&scene.hub, &scene.alice, scene.code.clone());
    let missing = wrong_code(7, &code);
    // Outsiders in another workspace; each stays under the failure limit (5 + 5 tries).
    let outsiders: Vec<Agent> = (0..4).map(|i| member_of(hub, &format!("outsider{i}"), "acme").0).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let (theirs, absent) = runtime.block_on(async {
        let (mut theirs, mut absent) = (Vec::new(), Vec::new());
        for agent in &outsiders {
            let link = link_of(agent, &cancel).await;
            let _ = redeem(&link, &missing).await; // warm-up (connection, caches)
            for _ in 0..4 {
                for (code, into) in [(&code, &mut theirs), (&missing, &mut absent)] {
                    let started = Instant::now();
                    let outcome = redeem(&link, code).await;
                    into.push((outcome, started.elapsed()));
                }
            }
        }
        (theirs, absent)
    });
    cancel.cancel();

    let wire = |outcome: &Outcome, code: &str| match outcome {
        Outcome::NotFound(e) => serde_json::to_string(e).unwrap().replace(code, "<CODE>"),
        other => panic!("expected not found, got {other:?}"),
    };
    let reference = wire(&absent[0].0, &missing);
    for (outcome, _) in &theirs {
        assert_eq!(wire(outcome, &code), reference, "another workspace's code is told apart from a missing one");
    }
    for (outcome, _) in &absent {
        assert_eq!(wire(outcome, &missing), reference);
    }
    let median = |samples: &[(Outcome, Duration)]| {
        let mut times: Vec<Duration> = samples.iter().map(|(_, t)| *t).collect();
        times.sort();
        times[times.len() / 2]
    };
    let (t_theirs, t_absent) = (median(&theirs), median(&absent));
    eprintln!(
        "joins: another workspace's code {t_theirs:?} vs a missing code {t_absent:?} (median of {} each); reply {reference}",
        theirs.len()
    );
    let ratio = t_theirs.as_secs_f64() / t_absent.as_secs_f64();
    assert!((0.2..5.0).contains(&ratio), "timing tells them apart: {t_theirs:?} vs {t_absent:?}");
    // The owner's workspace still finds it.
    assert!(alice.run(["share", "--list"]).status.success());
}
