//! Rate limit on failed share joins: at most 10 failures per member in any 10 minutes, then
//! refusals that say when to retry. Failures are audited in the store, and the limiter reads them
//! from there before every attempt, so neither a hub restart nor another replica of a cluster
//! gives a member a fresh count.
//!
//! A member's join attempts take turns ([`JoinLimiter::turn`]): the check, the lookup and the
//! counting of a failure happen as one step, so 100 guesses sent at once are still counted one by
//! one and the 11th is refused, never looked up.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::audit::AuditAction;
use crate::store::{Member, MemberId, Store};
use crate::sync::lock;

/// Failed joins allowed per window.
pub(crate) const MAX_FAILURES: usize = 10;
/// The window, in seconds.
pub(crate) const WINDOW_SECS: i64 = 600;
/// Audit action of a failed join.

#[derive(Default)]
pub(crate) struct JoinLimiter {
    failures: Mutex<HashMap<MemberId, VecDeque<i64>>>,
    turns: Mutex<HashMap<MemberId, Arc<tokio::sync::Mutex<()>>>>,
}

impl JoinLimiter {
    /// Waits until no other join attempt of `member` is in progress; hold the guard from
    /// [`JoinLimiter::check`] until the failure (if any) is counted.
    pub(crate) async fn turn(&self, member: MemberId) -> tokio::sync::OwnedMutexGuard<()> {
        let gate = lock(&self.turns).entry(member).or_default().clone();
        gate.lock_owned().await
    }

    /// `Err(seconds)` when `member` must wait that long before trying again.
    pub(crate) async fn check(&self, store: &dyn Store, member: &Member, now: i64) -> Result<(), u64> {
        // Read from the store every time: other hubs on the same store (a cluster's replicas)
        // count their failures there too. Failures the store does not hold yet (an audit write
        // that failed) are kept from memory.
        let since = now - WINDOW_SECS;
        let stored =
            store.audit_times(member.workspace_id, &member.name, AuditAction::ShareJoinFailed.as_str(), since).await;
        if let Ok(stored) = stored {
            let mut failures = lock(&self.failures);
            let known = failures.entry(member.id).or_default();
            if stored.len() >= known.len() {
                *known = stored.into();
            }
        }
        let mut failures = lock(&self.failures);
        let times = failures.entry(member.id).or_default();
        while times.front().is_some_and(|t| *t <= now - WINDOW_SECS) {
            times.pop_front();
        }
        if times.len() < MAX_FAILURES {
            return Ok(());
        }
        let oldest = times[times.len() - MAX_FAILURES];
        Err(u64::try_from(oldest + WINDOW_SECS - now).unwrap_or(1).max(1))
    }

    /// Counts a failed join (the caller audits it).
    pub(crate) fn failed(&self, member: MemberId, now: i64) {
        lock(&self.failures).entry(member).or_default().push_back(now);
    }
}
