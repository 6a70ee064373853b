//! One debug session in the hub: who owns it, the ring of its most recent exchanges, its viewers,
//! its counters, and a change signal every viewer and tail waits on (so a slow viewer never makes
//! anyone else wait and never misses more than what the ring evicted).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use pconnect_capture::Exchange;
use pconnect_proto::debug::{Captured, DebugSummary, RING_CAPACITY, SessionInfo, Viewer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::state::lock;
use crate::store::{MemberId, WorkspaceId};

/// What a session is about; fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) id: String,
    pub(crate) workspace: WorkspaceId,
    pub(crate) owner: MemberId,
    pub(crate) owner_name: String,
    pub(crate) service: String,
    pub(crate) kind: Option<String>,
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
    /// Cancelled when the session ends.
    pub(crate) ended: CancellationToken,
    /// Generation of the attached events stream, and its token (cancelled when replaced).
    attach: Mutex<(u64, CancellationToken)>,
}

#[derive(Default)]
struct State {
    ring: VecDeque<Arc<Captured>>,
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
        Self {
            meta,
            state: Mutex::new(State { next_id: 1, ..State::default() }),
            changed: watch::channel(0).0,
            ended: CancellationToken::new(),
            attach: Mutex::new((0, CancellationToken::new())),
        }
    }

    /// Stores an exchange under the next id and wakes viewers; returns the id.
    pub(crate) fn push(&self, conn: u64, replay_of: Option<u64>, exchange: Exchange) -> u64 {
        let id = {
            let mut state = lock(&self.state);
            let id = state.next_id;
            state.next_id += 1;
            if state.ring.len() >= RING_CAPACITY {
                state.ring.pop_front();
            }
            state.ring.push_back(Arc::new(Captured { id, conn, replay_of, exchange }));
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

    /// Adds a viewer; returns it.
    pub(crate) fn join(&self, name: &str) -> Viewer {
        let viewer = {
            let mut state = lock(&self.state);
            state.next_viewer += 1;
            let id = state.next_viewer;
            state.viewers.insert(id, name.to_string());
            state.presence_version += 1;
            Viewer { id, name: name.to_string() }
        };
        self.changed.send_modify(|v| *v += 1);
        viewer
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

    /// Exchanges seen so far (the last id handed out).
    pub(crate) fn exchanges(&self) -> u64 {
        lock(&self.state).next_id - 1
    }

    /// (dropped, exchanges).
    pub(crate) fn stats(&self) -> (u64, u64) {
        let state = lock(&self.state);
        (state.dropped + state.rejected, state.next_id - 1)
    }

    pub(crate) fn info(&self) -> SessionInfo {
        let (dropped, exchanges) = self.stats();
        SessionInfo {
            id: self.meta.id.clone(),
            service: self.meta.service.clone(),
            owner: self.meta.owner_name.clone(),
            kind: self.meta.kind.clone(),
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
}
