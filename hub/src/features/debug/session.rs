//! One debug session in the hub: who owns it, the ring of its most recent exchanges, its viewers,
//! its counters, and a change signal every viewer and tail waits on (so a slow viewer never makes
//! anyone else wait and never misses more than what the ring evicted).

use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pconnect_proto::debug::{Captured, DebugSummary, RING_BYTES, RING_CAPACITY, SessionInfo, Viewer};
use pconnect_proto::exchange::Exchange;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{DebugId, MemberId, WorkspaceId};
use crate::sync::lock;

/// What a session is about; fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// What users call it (`d7`).
    pub(crate) id: String,
    /// Its id in the store.
    pub(crate) number: DebugId,
    /// How often it moved to another holder before this one: exchange ids here start above
    /// `epoch << 32`, so they never repeat ids an earlier holder gave out.
    pub(crate) epoch: u64,
    pub(crate) workspace: WorkspaceId,
    pub(crate) owner: MemberId,
    pub(crate) owner_name: String,
    pub(crate) service: String,
    pub(crate) kind: Option<pconnect_proto::project::ServiceKind>,
    /// The project (`connect up`) that started it, if any.
    pub(crate) project: Option<String>,
    pub(crate) ai: bool,
    pub(crate) url: String,
    /// RFC 3339 UTC.
    pub(crate) started_at: String,
    /// Unix milliseconds of the start (exchange timestamps are micros after it).
    pub(crate) started_unix_ms: i64,
}

/// A debug session.
pub(crate) struct Session {
    pub(crate) meta: Meta,
    state: Mutex<State>,
    /// Bumped on every change (exchange, presence, stats); viewers wait on it.
    changed: watch::Sender<u64>,
    /// Cancelled when the session ends here (for good, or released to go on elsewhere).
    pub(crate) ended: CancellationToken,
    /// Set when it ended here only: it goes on at another holder.
    released: AtomicBool,
    /// Generation of the attached events stream, and its token (cancelled when replaced).
    attach: Mutex<(u64, CancellationToken)>,
    /// Bounds on the replays and questions viewers make the agent run.
    pub(crate) calls: super::limits::CallLimits,
}

#[derive(Default)]
struct State {
    ring: VecDeque<Arc<Captured>>,
    /// JSON size of each ring entry, and their sum.
    sizes: VecDeque<usize>,
    ring_bytes: usize,
    next_id: u64,
    dropped: u64,
    /// Events lines the hub could not read (counted as dropped too).
    rejected: u64,
    bytes: u64,
    viewers: BTreeMap<u64, String>,
    next_viewer: u64,
    presence_version: u64,
}

/// What changed since a viewer last looked.
pub(crate) struct Snapshot {
    pub(crate) exchanges: Vec<Arc<Captured>>,
    pub(crate) presence: Option<Vec<Viewer>>,
}

impl Session {
    pub(crate) fn new(meta: Meta) -> Self {
        let first = (meta.epoch << 32) + 1;
        Self {
            meta,
            state: Mutex::new(State { next_id: first, ..State::default() }),
            changed: watch::channel(0).0,
            ended: CancellationToken::new(),
            released: AtomicBool::new(false),
            attach: Mutex::new((0, CancellationToken::new())),
            calls: Default::default(),
        }
    }

    /// Stores an exchange under the next id and wakes viewers; returns the id. `size` is its JSON
    /// size (the events line it came in); the ring stays within [`RING_CAPACITY`] entries and
    /// [`RING_BYTES`].
    pub(crate) fn push(&self, conn: u64, replay_of: Option<u64>, exchange: Exchange, size: usize) -> u64 {
        let id = {
            let mut state = lock(&self.state);
            let id = state.next_id;
            state.next_id += 1;
            while !state.ring.is_empty() && (state.ring.len() >= RING_CAPACITY || state.ring_bytes + size > RING_BYTES)
            {
                state.ring.pop_front();
                let freed = state.sizes.pop_front().unwrap_or(0);
                state.ring_bytes -= freed;
            }
            state.ring.push_back(Arc::new(Captured { id, conn, replay_of, exchange }));
            state.sizes.push_back(size);
            state.ring_bytes += size;
            id
        };
        self.changed.send_modify(|v| *v += 1);
        id
    }

    /// Takes the agent's running totals.
    pub(crate) fn set_stats(&self, dropped: u64, bytes: u64) {
        {
            let mut state = lock(&self.state);
            state.dropped = dropped;
            state.bytes = bytes;
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// An events line that could not be read: counted with the drops.
    pub(crate) fn reject(&self) {
        lock(&self.state).rejected += 1;
        self.changed.send_modify(|v| *v += 1);
    }

    /// Adds a viewer under `name` (`guest-<id>` when empty); returns it.
    pub(crate) fn join(&self, name: &str) -> Viewer {
        let viewer = {
            let mut state = lock(&self.state);
            state.next_viewer += 1;
            let id = state.next_viewer;
            let name = name_or_guest(name, id);
            state.viewers.insert(id, name.clone());
            state.presence_version += 1;
            Viewer { id, name }
        };
        self.changed.send_modify(|v| *v += 1);
        viewer
    }

    /// Renames viewer `id` to `name` (`guest-<id>` when empty); presence changes only when the
    /// name does.
    pub(crate) fn rename(&self, id: u64, name: &str) {
        {
            let mut state = lock(&self.state);
            let name = name_or_guest(name, id);
            match state.viewers.get_mut(&id) {
                Some(current) if *current != name => *current = name,
                _ => return,
            }
            state.presence_version += 1;
        }
        self.changed.send_modify(|v| *v += 1);
    }

    pub(crate) fn leave(&self, id: u64) {
        {
            let mut state = lock(&self.state);
            if state.viewers.remove(&id).is_some() {
                state.presence_version += 1;
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    pub(crate) fn viewers(&self) -> Vec<Viewer> {
        lock(&self.state).viewers.iter().map(|(id, name)| Viewer { id: *id, name: name.clone() }).collect()
    }

    /// Exchanges with an id above `after`, at most `limit`, oldest first.
    pub(crate) fn after(&self, after: u64, limit: usize) -> Vec<Arc<Captured>> {
        let state = lock(&self.state);
        let start = state.ring.partition_point(|c| c.id <= after);
        state.ring.iter().skip(start).take(limit).cloned().collect()
    }

    /// The most recent `n` exchanges, oldest first.
    pub(crate) fn recent(&self, n: usize) -> Vec<Arc<Captured>> {
        let state = lock(&self.state);
        state.ring.iter().skip(state.ring.len().saturating_sub(n)).cloned().collect()
    }

    /// The most recent exchanges, at most `n` and at most `max_bytes` of JSON, oldest first.
    pub(crate) fn recent_within(&self, n: usize, max_bytes: usize) -> Vec<Arc<Captured>> {
        let state = lock(&self.state);
        let mut used = 0;
        let mut out: Vec<Arc<Captured>> = Vec::new();
        for (captured, size) in state.ring.iter().rev().zip(state.sizes.iter().rev()).take(n) {
            if used + size > max_bytes && !out.is_empty() {
                break;
            }
            used += size;
            out.push(captured.clone());
        }
        out.reverse();
        out
    }

    /// Every exchange in the ring, oldest first.
    pub(crate) fn all(&self) -> Vec<Arc<Captured>> {
        lock(&self.state).ring.iter().cloned().collect()
    }

    /// One exchange by id, while it is in the ring.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Captured>> {
        let state = lock(&self.state);
        let at = state.ring.partition_point(|c| c.id < id);
        state.ring.get(at).filter(|c| c.id == id).cloned()
    }

    /// The ids handed out here so far (empty before the first exchange).
    pub(crate) fn ids(&self) -> RangeInclusive<u64> {
        (self.first_id())..=(lock(&self.state).next_id - 1)
    }

    fn first_id(&self) -> u64 {
        (self.meta.epoch << 32) + 1
    }

    /// (dropped, exchanges seen by this holder).
    pub(crate) fn stats(&self) -> (u64, u64) {
        let state = lock(&self.state);
        (state.dropped + state.rejected, state.next_id - self.first_id())
    }

    pub(crate) fn info(&self) -> SessionInfo {
        let (dropped, exchanges) = self.stats();
        SessionInfo {
            id: self.meta.id.clone(),
            service: self.meta.service.clone(),
            owner: self.meta.owner_name.clone(),
            kind: self.meta.kind,
            ai: self.meta.ai,
            started_at: self.meta.started_at.clone(),
            exchanges,
            dropped,
            viewers: self.viewers(),
        }
    }

    pub(crate) fn summary(&self) -> DebugSummary {
        let (dropped, exchanges) = self.stats();
        DebugSummary {
            id: self.meta.id.clone(),
            service: self.meta.service.clone(),
            url: self.meta.url.clone(),
            exchanges,
            dropped,
            viewers: lock(&self.state).viewers.len() as u64,
            ai: self.meta.ai,
            project: self.meta.project.clone(),
        }
    }

    /// A receiver that wakes on every change.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What changed for a viewer that has seen up to `last_id` and presence `presence_seen`.
    pub(crate) fn since(&self, last_id: u64, presence_seen: &mut u64) -> Snapshot {
        let state = lock(&self.state);
        let start = state.ring.partition_point(|c| c.id <= last_id);
        let exchanges = state.ring.iter().skip(start).cloned().collect();
        let presence = (state.presence_version != *presence_seen).then(|| {
            *presence_seen = state.presence_version;
            state.viewers.iter().map(|(id, name)| Viewer { id: *id, name: name.clone() }).collect()
        });
        Snapshot { exchanges, presence }
    }

    /// The current presence version (a new viewer starts from it, its hello lists the viewers).
    pub(crate) fn presence_version(&self) -> u64 {
        lock(&self.state).presence_version
    }

    /// A new events stream attached: the previous one (if any) is let go. Returns its generation
    /// and a token cancelled when it is replaced or the session ends.
    pub(crate) fn attach(&self) -> (u64, CancellationToken) {
        let mut attach = lock(&self.attach);
        attach.1.cancel();
        attach.0 += 1;
        attach.1 = self.ended.child_token();
        (attach.0, attach.1.clone())
    }

    /// Whether the events stream of generation `generation` is still the attached one.
    pub(crate) fn is_attached(&self, generation: u64) -> bool {
        lock(&self.attach).0 == generation
    }

    pub(crate) fn end(&self) {
        self.ended.cancel();
        self.changed.send_modify(|v| *v += 1);
    }

    /// Ends it here only: it goes on at another holder (viewers reconnect, the agent re-attaches).
    pub(crate) fn release(&self) {
        self.released.store(true, Ordering::Release);
        self.end();
    }

    /// Whether it ended here only and goes on elsewhere.
    pub(crate) fn was_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}

/// `name`, or `guest-<id>` when it is empty (ids are never reused, so neither are guest names).
fn name_or_guest(name: &str, id: u64) -> String {
    if name.is_empty() { format!("guest-{id}") } else { name.to_string() }
}

#[cfg(test)]
impl Meta {
    /// A session's metadata for unit tests.
    pub(crate) fn sample() -> Self {
        Meta {
            id: "d1".into(),
            number: 1,
            epoch: 0,
            workspace: 1,
            owner: 1,
            owner_name: "alice".into(),
            service: "web".into(),
            kind: None,
            project: None,
            ai: false,
            url: String::new(),
            started_at: String::new(),
            started_unix_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pconnect_proto::exchange::{Detail, Protocol};

    fn session() -> Session {
        Session::new(Meta::sample())
    }

    fn raw() -> Exchange {
        let detail = Detail::Raw { to_service: 1, to_client: 1, note: String::new() };
        Exchange { seq: 0, protocol: Protocol::Unknown, started_at: 0, finished_at: None, detail }
    }

    #[test]
    fn the_ring_is_bounded_by_count_and_bytes_and_ids_keep_increasing() {
        let s = session();
        for _ in 0..RING_CAPACITY + 5 {
            s.push(1, None, raw(), 10);
        }
        let all = s.all();
        assert_eq!(all.len(), RING_CAPACITY);
        assert_eq!((all[0].id, *s.ids().end()), (6, RING_CAPACITY as u64 + 5));
        assert_eq!(s.after(RING_CAPACITY as u64 + 3, 10).len(), 2);
        assert!(s.get(1).is_none() && s.get(6).is_some());
        let big = RING_BYTES / 2;
        for _ in 0..3 {
            s.push(1, None, raw(), big);
        }
        assert_eq!(s.all().len(), 2, "bytes bound: two halves fit, the third pushed out everything older");
    }

    #[test]
    fn a_moved_session_numbers_its_exchanges_above_every_earlier_holder() {
        let s = Session::new(Meta { epoch: 2, ..Meta::sample() });
        assert!(s.ids().is_empty());
        assert_eq!(s.stats(), (0, 0));
        let first = s.push(1, None, raw(), 10);
        assert_eq!(first, (2 << 32) + 1);
        assert_eq!((s.ids(), s.stats()), (first..=first, (0, 1)));
        assert!(!s.was_released());
        s.release();
        assert!(s.was_released() && s.ended.is_cancelled());
    }

    #[test]
    fn guests_get_their_id_as_name_and_a_rename_changes_presence_once() {
        let s = session();
        let named = s.join("ann");
        let guest = s.join("");
        assert_eq!((named.name.as_str(), guest.name.as_str()), ("ann", "guest-2"));
        let mut seen = s.presence_version();
        s.rename(guest.id, "ben");
        let names: Vec<String> = s.since(0, &mut seen).presence.unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["ann", "ben"]);
        s.rename(guest.id, "ben");
        s.rename(99, "nobody");
        assert!(s.since(0, &mut seen).presence.is_none(), "same name or unknown viewer: no presence change");
        s.rename(guest.id, "");
        assert_eq!(s.viewers()[1].name, "guest-2", "an empty name is the guest name again");
        s.leave(named.id);
        assert_eq!(s.join("").name, "guest-3", "guest names are not reused");
    }
}
