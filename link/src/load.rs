//! How many streams a connection carries right now: new tunnels go to the least loaded connection,
//! and a [`LoadGuard`] counts one stream for as long as it lives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The open streams of one connection.
#[derive(Debug, Clone, Default)]
pub struct Load(Arc<AtomicUsize>);

impl Load {
    /// Streams open now.
    pub fn current(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more stream until the guard drops.
    pub fn hold(&self) -> LoadGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        LoadGuard(self.0.clone())
    }
}

/// One stream counted on its connection; dropping it gives the count back.
#[derive(Debug)]
pub struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_while_they_live() {
        let load = Load::default();
        let a = load.hold();
        let b = load.hold();
        assert_eq!(load.current(), 2);
        drop(a);
        assert_eq!(load.current(), 1);
        drop(b);
        assert_eq!(load.current(), 0);
    }
}
