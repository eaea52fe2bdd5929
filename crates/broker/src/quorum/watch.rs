//! Failover faster than openraft 0.9's timers allow. A follower there waits out its leader's
//! lease (the longest election timeout after the last heartbeat) and then an election timeout
//! of its own before it stands, and refuses every vote during the lease: some 600 to 800 ms
//! before a new leader serves. A node knows sooner that a leader is gone: its link to the
//! leader's node ends at once when that node dies, and a leader that hangs or is cut off stops
//! sending heartbeats (every 150 ms). Then every member that followed it calls an election
//! at once. A candidate's own vote is not a leader's, so it holds no lease and grants the vote
//! of a candidate of the same term that openraft ranks higher (terms being equal, the higher
//! id): with all the survivors standing together, one of them wins in one round trip.
//! Standing a second time shortly after settles the race where one asked before the other had
//! seen the leader go (that other still held the lease). Raft's safety does not rest on these
//! timings: a member that suspects a leader wrongly only costs an election.

use super::Replicas;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren_meta::QueueId;
use warren_raft::ReplicaRaft;
use warren_raft::openraft::ServerState;

/// How long a follower goes without entries or heartbeats (sent every 150 ms) from its leader
/// before it stands for election: more than three heartbeats missed.
pub(crate) const SUSPECT_AFTER: Duration = Duration::from_millis(500);

/// How often the node looks at its members.
const EVERY: Duration = Duration::from_millis(50);

/// When a member that stood and has not won (nor seen anyone win) stands once more.
const AGAIN_AFTER: Duration = Duration::from_millis(60);

/// Whether `raft`'s member is a voter that follows `leader`.
pub(crate) fn follows(raft: &ReplicaRaft, leader: u64) -> bool {
    let m = raft.metrics();
    let m = m.borrow();
    m.state == ServerState::Follower
        && m.current_leader == Some(leader)
        && m.id != leader
        && m.membership_config
            .membership()
            .voter_ids()
            .any(|v| v == m.id)
}

/// Has `raft`'s member stand for election now, and once more shortly after if it is still a
/// candidate then.
pub(crate) fn stand(raft: ReplicaRaft, queue: QueueId, why: &'static str) {
    tracing::info!(%queue, why, "a quorum queue's member stands for election");
    tokio::spawn(async move {
        if raft.trigger().elect().await.is_err() {
            return;
        }
        tokio::time::sleep(AGAIN_AFTER).await;
        let candidate = raft.metrics().borrow().state == ServerState::Candidate;
        if candidate {
            let _ = raft.trigger().elect().await;
        }
    });
}

/// Looks at this node's members every [`EVERY`] for as long as `replicas` exists: a member
/// that has heard nothing from the leader it follows for [`SUSPECT_AFTER`] stands.
pub(crate) fn spawn(replicas: &Arc<Replicas>) {
    let replicas = Arc::downgrade(replicas);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(replicas) = replicas.upgrade() else {
                return;
            };
            for (queue, raft) in replicas.silent_leaders(Instant::now(), SUSPECT_AFTER) {
                stand(raft, queue, "no heartbeat from its leader");
            }
        }
    });
}
