//! Quorum queues: a queue replicated by a Raft group of its own over several nodes, as
//! RabbitMQ's quorum queues are (on Ra). Every member runs the queue's deterministic state
//! machine on the same log ([`machine`]); only the leader carries out what it says should
//! happen (deliveries, confirms, dead letters).
//! A member node's handle on the queue is a local one, as a classic queue's: the shell
//! ([`shell`]) takes the same commands. A node that holds no member reaches the queue through
//! one that does, as it reaches a classic queue on another node.

pub(crate) mod dlx;
pub(crate) mod group;
pub(crate) mod machine;
pub(crate) mod rebuild;
pub(crate) mod shell;
pub(crate) mod snapshot;
pub(crate) mod watch;

use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use warren_meta::QueueId;
use warren_raft::{ReplicaRaft, Transport};

/// The groups of quorum queues this node is a member of, and how members reach each other.
pub struct Replicas {
    /// The node's links for quorum groups (each request prefixed by its group, see `group`).
    pub(crate) links: Arc<dyn Transport>,
    groups: RwLock<HashMap<QueueId, ReplicaRaft>>,
    /// Members being rebuilt (see `rebuild`): they vote for no one until they are voters
    /// again.
    rebuilding: RwLock<HashSet<QueueId>>,
    /// When each member last had entries or a heartbeat, and from whom (see `watch`).
    heard: Mutex<HashMap<QueueId, (u64, Instant)>>,
}

impl Replicas {
    pub fn new(links: Arc<dyn Transport>) -> Arc<Replicas> {
        Arc::new(Replicas {
            links,
            groups: RwLock::new(HashMap::new()),
            rebuilding: RwLock::new(HashSet::new()),
            heard: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn insert(&self, queue: QueueId, raft: ReplicaRaft) {
        if let Ok(mut g) = self.groups.write() {
            g.insert(queue, raft);
        }
    }

    /// The members that follow a leader they have heard nothing from for `quiet` by `now`.
    pub(crate) fn silent_leaders(
        &self,
        now: Instant,
        quiet: Duration,
    ) -> Vec<(QueueId, ReplicaRaft)> {
        let Ok(heard) = self.heard.lock() else {
            return Vec::new();
        };
        let Ok(groups) = self.groups.read() else {
            return Vec::new();
        };
        groups
            .iter()
            .filter(|(queue, raft)| {
                heard.get(queue).is_some_and(|&(from, at)| {
                    now.saturating_duration_since(at) >= quiet && watch::follows(raft, from)
                })
            })
            .map(|(queue, raft)| (*queue, raft.clone()))
            .collect()
    }

    /// Node `node` (its raft id) went down: the members here that followed it stand for
    /// election at once (see `watch`).
    pub(crate) fn leader_gone(&self, node: u64) {
        let orphans: Vec<(QueueId, ReplicaRaft)> = self
            .groups
            .read()
            .map(|g| {
                g.iter()
                    .filter(|(_, raft)| watch::follows(raft, node))
                    .map(|(queue, raft)| (*queue, raft.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (queue, raft) in orphans {
            watch::stand(raft, queue, "its leader's node went down");
        }
    }

    /// This node's member of `queue`'s group, if it runs one.
    pub(crate) fn get(&self, queue: QueueId) -> Option<ReplicaRaft> {
        self.groups.read().ok().and_then(|g| g.get(&queue).cloned())
    }

    pub(crate) fn set_rebuilding(&self, queue: QueueId, on: bool) {
        if let Ok(mut r) = self.rebuilding.write() {
            if on {
                r.insert(queue);
            } else {
                r.remove(&queue);
            }
        }
    }

    pub(crate) fn remove(&self, queue: QueueId) -> Option<ReplicaRaft> {
        if let Ok(mut h) = self.heard.lock() {
            h.remove(&queue);
        }
        self.groups.write().ok().and_then(|mut g| g.remove(&queue))
    }

    /// Answers a request from another member (raft id `from`); empty when this node has no
    /// member of that group (it reads as a network error, and the sender tries again).
    pub async fn serve(&self, from: u64, request: &[u8]) -> Bytes {
        let Some((queue, body)) = group::split(request) else {
            return Bytes::new();
        };
        let rebuilding = self.rebuilding.read().is_ok_and(|r| r.contains(&queue));
        if rebuilding && warren_raft::is_vote(body) {
            return Bytes::new();
        }
        if warren_raft::is_from_leader(body) {
            if let Ok(mut h) = self.heard.lock() {
                h.insert(queue, (from, Instant::now()));
            }
        }
        match self.get(queue) {
            Some(raft) => warren_raft::serve(&raft, from, body).await,
            None => Bytes::new(),
        }
    }
}

#[cfg(test)]
mod deep_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
