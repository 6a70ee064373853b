//! Spreading an agent's connections over distinct replicas of a hub cluster: a connection that
//! lands (through the load balancer) on a replica another connection of the same kind is already
//! on is redialed a few times, so losing one replica never cuts all of them. A single hub never
//! names a replica, and nothing changes there.

use std::sync::Mutex;
use std::time::Duration;

use pconnect_proto::handshake::Welcome;

/// Redials in a row before a connection settles on a replica that is already taken.
pub(crate) const TRIES: u32 = 8;
/// Pause before such a redial.
pub(crate) const DELAY: Duration = Duration::from_millis(50);

/// Which replica each slot's connection is on (`None`: not connected, or a single hub).
pub(crate) struct Spread {
    replicas: Mutex<Vec<Option<String>>>,
}

impl Spread {
    pub(crate) fn new(slots: usize) -> Spread {
        Spread { replicas: Mutex::new(vec![None; slots]) }
    }

    /// Whether another slot is on the replica that answered `welcome`, in a cluster with more than
    /// one replica alive.
    pub(crate) fn taken(&self, slot: usize, welcome: &Welcome) -> bool {
        let Some(replica) = welcome.replica.as_ref().filter(|r| r.alive > 1) else { return false };
        let replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        replicas.iter().enumerate().any(|(other, on)| other != slot && on.as_deref() == Some(replica.id.as_str()))
    }

    /// Records where `slot` is connected now (`None` once it is down).
    pub(crate) fn set(&self, slot: usize, welcome: Option<&Welcome>) {
        let replica = welcome.and_then(|w| w.replica.as_ref()).map(|r| r.id.clone());
        let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(on) = replicas.get_mut(slot) {
            *on = replica;
        }
    }
}

#[cfg(test)]
mod tests {
    use pconnect_proto::handshake::ReplicaInfo;

    use super::*;

    fn welcome(replica: &str, alive: u32) -> Welcome {
        Welcome {
            member: "alice".into(),
            workspace: "default".into(),
            replica: Some(ReplicaInfo { id: replica.into(), alive }),
        }
    }

    #[test]
    fn a_second_connection_to_the_same_replica_is_taken_only_when_another_is_alive() {
        let spread = Spread::new(2);
        spread.set(0, Some(&welcome("a", 3)));
        assert!(spread.taken(1, &welcome("a", 3)));
        assert!(!spread.taken(1, &welcome("b", 3)));
        assert!(!spread.taken(0, &welcome("a", 3)), "a slot never competes with itself");
        assert!(!spread.taken(1, &welcome("a", 1)), "a lone replica is fine");
        spread.set(0, None);
        assert!(!spread.taken(1, &welcome("a", 3)));
        let single = Welcome { member: "alice".into(), workspace: "default".into(), replica: None };
        assert!(!spread.taken(1, &single));
    }
}
