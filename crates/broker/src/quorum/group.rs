//! A quorum queue's group as one member runs it: its log and snapshot in a directory of its
//! own, its replica of the queue, and openraft with timings short enough that a new leader
//! serves within a second of the old one going; and how members reach each other: every
//! group's messages share the cluster's links, each request prefixed by its queue's id.

use super::machine::{Applied, QuorumMachine};
use crate::queue::state::QueueState;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use warren_meta::{NodeId, QueueId};
use warren_raft::network::BoxFuture;
use warren_raft::openraft::BasicNode;
use warren_raft::{CallError, LogStore, Network, Proposer, Replica, ReplicaRaft, Transport};

/// How a quorum queue's group keeps time. openraft 0.9 gives every append the heartbeat
/// interval as its deadline, and sends a lagging follower up to `max_payload_entries` entries
/// at once: an append that misses its deadline is sent again while the follower still works
/// on the first, and a follower that falls behind under load then never catches up (seen:
/// elections by the hundred and gigabytes of resent appends). So heartbeats every 150 ms,
/// appends of at most 4 entries (each at most `shell::BATCH` commands), and openraft's own
/// elections after 600 to 1,200 ms of silence. Failover does not wait for them: the node's
/// watch (`watch`) has the followers stand as soon as the leader's node is gone or silent.
pub(crate) fn config(queue: QueueId) -> Result<warren_raft::openraft::Config, String> {
    warren_raft::openraft::Config {
        cluster_name: format!("queue-{}", queue),
        heartbeat_interval: 150,
        election_timeout_min: 600,
        election_timeout_max: 1_200,
        max_payload_entries: 4,
        install_snapshot_timeout: 5_000,
        snapshot_max_chunk_size: 4 * 1024 * 1024,
        // Each member takes a snapshot when its log has grown by enough bytes
        // (`machine::SNAPSHOT_AFTER`), not after a count of entries. After one, a few entries
        // (of a megabyte at most, see `shell::BATCH_BYTES`) stay for a follower just behind;
        // one further behind gets the snapshot.
        snapshot_policy: warren_raft::openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 16,
        ..Default::default()
    }
    .validate()
    .map_err(|e| e.to_string())
}

/// The bytes that name a group in front of each of its requests.
const ID_LEN: usize = 16;

fn prefix(queue: QueueId) -> [u8; ID_LEN] {
    let mut b = [0u8; ID_LEN];
    b[..8].copy_from_slice(&queue.node.0.to_be_bytes());
    b[8..].copy_from_slice(&queue.n.to_be_bytes());
    b
}

/// The group a request is for, and the request.
pub(crate) fn split(request: &[u8]) -> Option<(QueueId, &[u8])> {
    if request.len() < ID_LEN {
        return None;
    }
    let (id, rest) = request.split_at(ID_LEN);
    let node = u64::from_be_bytes(id[..8].try_into().ok()?);
    let n = u64::from_be_bytes(id[8..].try_into().ok()?);
    Some((
        QueueId {
            node: NodeId(node),
            n,
        },
        rest,
    ))
}

/// One group's way to its other members: the node's quorum transport, each request prefixed
/// by the group's id.
struct GroupTransport {
    queue: QueueId,
    links: Arc<dyn Transport>,
}

impl Transport for GroupTransport {
    fn call(
        &self,
        to: &str,
        request: Bytes,
        timeout: Duration,
    ) -> BoxFuture<Result<Bytes, CallError>> {
        self.links
            .call_parts(to, &prefix(self.queue), request, timeout)
    }
}

/// The way to `queue`'s members over the node's quorum links.
pub(crate) fn transport(queue: QueueId, links: Arc<dyn Transport>) -> Arc<dyn Transport> {
    Arc::new(GroupTransport { queue, links })
}

/// Hands a membership change to `queue`'s group through the first of the members at `addrs`
/// that takes it (each follows the group to its leader); the last refusal if none does.
pub(crate) async fn ask_any(
    transport: &dyn Transport,
    addrs: &[String],
    change: &warren_raft::MemberChange,
    timeout: Duration,
) -> Result<u64, warren_raft::ProposeError> {
    let mut last = warren_raft::ProposeError::Stopped("no member of the queue to ask".to_owned());
    for addr in addrs {
        match warren_raft::ask_cluster(transport, addr, change.clone(), timeout).await {
            Ok(index) => return Ok(index),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A member of a quorum queue's group, running on this node.
pub(crate) struct Member {
    pub raft: ReplicaRaft,
    /// Hands commands to the group's leader, wherever it is.
    pub proposer: Proposer<Replica>,
    /// What applying the log left for the leader to carry out.
    pub applied: mpsc::UnboundedReceiver<Applied>,
    /// The last index the log held when the member started: entries up to it are replayed.
    pub started_at: u64,
    /// The member led the group when it stopped (openraft restores that without an election).
    pub led: bool,
}

/// Starts this node's member of `queue`'s group, with its log and snapshot in `dir`. `id` is
/// this node's raft id; `members` (raft id → address) are the group's first voters, set up
/// by the member that `initialize`s them (the one the queue was placed on first) when the
/// group has never run. It keeps time by `config` (`config(queue)`; tests slow openraft's
/// own timers down with another).
pub(crate) async fn start(
    config: warren_raft::openraft::Config,
    queue: QueueId,
    id: u64,
    state: QueueState,
    dir: PathBuf,
    links: Arc<dyn Transport>,
    members: Option<BTreeMap<u64, String>>,
) -> Result<Member, String> {
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (log, _) = LogStore::<Replica>::open(&dir.join("log"))?;
    let fresh = log.is_empty();
    let (started_at, led) = (log.last_index(), log.led(&id));
    let (tx, applied) = mpsc::unbounded_channel();
    let machine = QuorumMachine::open(state, dir, tx)?;
    let transport = self::transport(queue, links);
    let raft = ReplicaRaft::new(
        id,
        Arc::new(config),
        Network::new(transport.clone()),
        log,
        machine,
    )
    .await
    .map_err(|e| format!("cannot start the queue's group: {e}"))?;
    if let (true, Some(members)) = (fresh, members) {
        let nodes: BTreeMap<u64, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        if let Err(e) = raft.initialize(nodes).await {
            // Already initialized (a restart that found its log empty after a snapshot):
            // the group's own membership stands.
            tracing::debug!(error = %e, "the queue's group was set up before");
        }
    }
    let proposer = Proposer::new(raft.clone(), transport);
    Ok(Member {
        raft,
        proposer,
        applied,
        started_at,
        led,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_group() {
        let q = QueueId {
            node: NodeId(0xfeed),
            n: 42,
        };
        let mut framed = prefix(q).to_vec();
        framed.extend_from_slice(b"raft");
        assert_eq!(split(&framed), Some((q, &b"raft"[..])));
        assert_eq!(split(b"short"), None);
    }
}
