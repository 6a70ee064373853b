//! The open tunnels of one local listener counted by the way they take (direct or through the
//! hub), for `connect status` and for telling the user when the way changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::link::forward::Path;

/// The open tunnels of one local listener by the way they take, and the way the last one took
/// (the user is told when it changes: direct to the teammate's agent, or through the hub).
#[derive(Default)]
pub(crate) struct Paths {
    direct: AtomicU64,
    relay: AtomicU64,
    /// 0: no tunnel yet, 1: relay, 2: direct.
    last: AtomicU8,
}

impl Paths {
    pub(crate) fn new() -> Arc<Paths> {
        Arc::default()
    }

    /// Tunnels open right now: (direct, relay).
    pub(crate) fn live(&self) -> (u64, u64) {
        (self.direct.load(Ordering::Relaxed), self.relay.load(Ordering::Relaxed))
    }

    /// Counts a tunnel on `path` until the guard drops; true when it is worth telling: the first
    /// direct one, and every change of way after it (relay from the start is the default, not news).
    pub(crate) fn open(self: &Arc<Self>, path: Path) -> (PathGuard, bool) {
        let (counter, mark) = match path {
            Path::Direct => (&self.direct, 2),
            Path::Relay => (&self.relay, 1),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let before = self.last.swap(mark, Ordering::Relaxed);
        let changed = before != mark && !(before == 0 && path == Path::Relay);
        (PathGuard { paths: self.clone(), path }, changed)
    }
}

pub(crate) struct PathGuard {
    paths: Arc<Paths>,
    path: Path,
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        let counter = match self.path {
            Path::Direct => &self.paths.direct,
            Path::Relay => &self.paths.relay,
        };
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_count_open_tunnels_and_tell_the_first_direct_one_and_every_change_after_it() {
        let paths = Paths::new();
        let (relay, told) = paths.open(Path::Relay);
        assert!(!told, "relay from the start is the default, not news");
        let (direct, told) = paths.open(Path::Direct);
        assert!(told);
        let (again, told) = paths.open(Path::Direct);
        assert!(!told);
        assert_eq!(paths.live(), (2, 1));
        drop((direct, again));
        let (_back, told) = paths.open(Path::Relay);
        assert!(told, "falling back to the hub is told");
        drop(relay);
        assert_eq!(paths.live(), (0, 1));
    }
}
