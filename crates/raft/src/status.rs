//! How one member of a group stands, as `rabbitmq-queues quorum_status` shows it: its role,
//! how far its log goes and how much of it is applied, its last snapshot and its term. Asked
//! of the member itself, since only it knows; a member that does not answer is shown as not
//! running (RabbitMQ's `noproc`).

use crate::messages::{Request, decode, encode};
use crate::network::{CallError, Transport};
use openraft::{BasicNode, Raft, RaftTypeConfig, ServerState};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// `leader`, `follower`, `candidate`, `learner` (openraft's learner, RabbitMQ's
    /// `promotable`), or `shutdown`.
    pub state: String,
    pub last_log_index: Option<u64>,
    /// The last entry applied, which is committed (openraft does not report the commit index
    /// itself).
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub term: u64,
    /// The leader this member knows of, by raft id.
    pub leader: Option<u64>,
}

/// This member's status.
pub fn status<C>(raft: &Raft<C>) -> MemberStatus
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    let m = raft.metrics();
    let m = m.borrow();
    let state = match (&m.running_state, m.state) {
        (Err(_), _) | (_, ServerState::Shutdown) => "shutdown",
        (_, ServerState::Leader) => "leader",
        (_, ServerState::Follower) => "follower",
        (_, ServerState::Candidate) => "candidate",
        (_, ServerState::Learner) => "learner",
    };
    MemberStatus {
        state: state.to_owned(),
        last_log_index: m.last_log_index,
        applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        term: m.current_term,
        leader: m.current_leader,
    }
}

/// Asks the member at `addr` how it stands.
pub async fn status_of(
    transport: &dyn Transport,
    addr: &str,
    timeout: Duration,
) -> Result<MemberStatus, CallError> {
    let raw = transport
        .call(addr, encode(&Request::<crate::Meta>::Status), timeout)
        .await?;
    decode(&raw).map_err(CallError::Unreachable)
}
