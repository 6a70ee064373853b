//! Live state of environment shares: one cancellation token per share that every tunnel opened
//! through it, and every joiner's attach stream, is tied to; how many joiners are attached; and
//! the timer that ends a share at its expiry instant.
//!
//! Ended shares stay as small tombstones so a tunnel validated just before a revoke can never get a
//! fresh, uncancelled token afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pconnect_proto::share::ShareEvent;
use tokio_util::sync::CancellationToken;

use crate::store::{MemberId, ShareId, ShareRow};
use crate::sync::lock;
use pconnect_proto::clock;

#[derive(Default)]
pub(crate) struct LiveShares {
    by_id: Arc<Mutex<HashMap<ShareId, Entry>>>,
}

struct Entry {
    cancel: CancellationToken,
    attached: u32,
    ended: Option<ShareEvent>,
    /// Who created the share (unknown for a tombstone of a share never used live).
    creator: Option<MemberId>,
    /// Stops the pending expiry timer (when the expiry moves).
    timer: CancellationToken,
}

impl LiveShares {
    /// The token every use of `share` is tied to; created (with its expiry timer) on first use.
    pub(crate) fn token(&self, share: &ShareRow) -> CancellationToken {
        let mut by_id = lock(&self.by_id);
        if let Some(entry) = by_id.get(&share.id) {
            return entry.cancel.clone();
        }
        let cancel = CancellationToken::new();
        let timer = self.arm_expiry(share.id, share.expires_at, cancel.clone());
        let entry = Entry { cancel: cancel.clone(), attached: 0, ended: None, creator: Some(share.creator_id), timer };
        by_id.insert(share.id, entry);
        cancel
    }

    /// Ends the share at `expires_at` unless it ends before or the timer is stopped.
    fn arm_expiry(&self, id: ShareId, expires_at: i64, cancel: CancellationToken) -> CancellationToken {
        let by_id = self.by_id.clone();
        let wait = clock::until(expires_at);
        let timer = CancellationToken::new();
        let stopped = timer.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = stopped.cancelled() => {}
                _ = tokio::time::sleep(wait) => end(&by_id, id, ShareEvent::Expired),
            }
        });
        timer
    }

    /// Moves a live share's expiry (its tunnels now last until the new instant).
    pub(crate) fn set_expiry(&self, id: ShareId, expires_at: i64) {
        let mut by_id = lock(&self.by_id);
        let Some(entry) = by_id.get_mut(&id).filter(|e| e.ended.is_none()) else { return };
        entry.timer.cancel();
        let cancel = entry.cancel.clone();
        drop(by_id);
        let timer = self.arm_expiry(id, expires_at, cancel);
        if let Some(entry) = lock(&self.by_id).get_mut(&id) {
            entry.timer = timer;
        }
    }

    /// Ends a share now: every tunnel through it and every attach stream closes.
    pub(crate) fn end(&self, id: ShareId, why: ShareEvent) {
        end(&self.by_id, id, why);
    }

    /// Ends every live share `creator` made (the member was removed; their rows are gone).
    pub(crate) fn end_of_creator(&self, creator: MemberId) {
        let ids: Vec<ShareId> = lock(&self.by_id)
            .iter()
            .filter(|(_, e)| e.creator == Some(creator) && e.ended.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end(id, ShareEvent::Revoked);
        }
    }

    /// Shares in use right now.
    pub(crate) fn live_ids(&self) -> Vec<ShareId> {
        lock(&self.by_id).iter().filter(|(_, e)| e.ended.is_none()).map(|(id, _)| *id).collect()
    }

    /// Creators of the shares in use right now.
    pub(crate) fn creators(&self) -> Vec<MemberId> {
        lock(&self.by_id).values().filter(|e| e.ended.is_none()).filter_map(|e| e.creator).collect()
    }

    /// Why a share ended, once it has.
    pub(crate) fn ended(&self, id: ShareId) -> Option<ShareEvent> {
        lock(&self.by_id).get(&id).and_then(|e| e.ended.clone())
    }

    /// Counts a joiner as attached until the guard drops.
    pub(crate) fn attach(self: &Arc<Self>, share: &ShareRow) -> (CancellationToken, AttachGuard) {
        let cancel = self.token(share);
        if let Some(entry) = lock(&self.by_id).get_mut(&share.id) {
            entry.attached += 1;
        }
        (cancel, AttachGuard { shares: self.clone(), id: share.id })
    }

    /// Joiners attached right now.
    pub(crate) fn joined(&self, id: ShareId) -> u32 {
        lock(&self.by_id).get(&id).map_or(0, |e| e.attached)
    }
}

fn end(by_id: &Mutex<HashMap<ShareId, Entry>>, id: ShareId, why: ShareEvent) {
    let mut by_id = lock(by_id);
    let entry = by_id.entry(id).or_insert_with(|| Entry {
        cancel: CancellationToken::new(),
        attached: 0,
        ended: None,
        creator: None,
        timer: CancellationToken::new(),
    });
    if entry.ended.is_none() {
        entry.ended = Some(why);
    }
    entry.cancel.cancel();
}

/// Keeps a joiner counted while alive.
pub(crate) struct AttachGuard {
    shares: Arc<LiveShares>,
    id: ShareId,
}

impl Drop for AttachGuard {
    fn drop(&mut self) {
        if let Some(entry) = lock(&self.shares.by_id).get_mut(&self.id) {
            entry.attached = entry.attached.saturating_sub(1);
        }
    }
}
