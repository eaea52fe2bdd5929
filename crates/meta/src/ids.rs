//! Names for things that live on one node but must be told apart across a cluster: a node's
//! number, and ids that a node hands out (queues, connections) without asking anyone.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A node of the cluster. Chosen by the node from its name, so that it is the same across
/// restarts and needs no coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The id of the node called `name` (`warren@host`): FNV-1a over the name, which is
    /// stable across builds and platforms (the standard library's hasher is not).
    pub fn from_name(name: &str) -> NodeId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        NodeId(h)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Something one node made, unique across the cluster: the node, and a number that node never
/// hands out twice (its counter starts at the node's start time in microseconds, so a
/// restarted node does not repeat the numbers of its earlier life).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Uid {
    pub node: NodeId,
    pub n: u64,
}

/// A queue's identity: a queue deleted and declared again under the same name is another
/// queue, and messages or notices meant for the old one must not reach the new one.
pub type QueueId = Uid;

/// A client connection, wherever in the cluster it is (exclusive queues name their owner).
pub type ConnId = Uid;

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.n)
    }
}

/// Hands out a node's ids.
#[derive(Debug)]
pub struct UidSource {
    node: NodeId,
    next: AtomicU64,
}

impl UidSource {
    pub fn new(node: NodeId) -> UidSource {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        UidSource {
            node,
            next: AtomicU64::new(start.max(1)),
        }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn next(&self) -> Uid {
        Uid {
            node: self.node,
            n: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_and_differ_by_name() {
        let a = NodeId::from_name("warren@a");
        assert_eq!(a, NodeId::from_name("warren@a"));
        assert_ne!(a, NodeId::from_name("warren@b"));
        // FNV-1a of the empty string is its offset basis: the function is the documented one.
        assert_eq!(NodeId::from_name("").0, 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn ids_from_one_source_never_repeat_and_carry_the_node() {
        let node = NodeId::from_name("warren@a");
        let s = UidSource::new(node);
        let a = s.next();
        let b = s.next();
        assert_ne!(a, b);
        assert_eq!(a.node, node);
        assert!(b.n > a.n);
        // A source started later (a restarted node) starts above the earlier one's numbers.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = UidSource::new(node).next();
        assert!(later.n > b.n);
    }
}
