//! What nodes ask each other for the metadata group, postcard-encoded: openraft's own
//! messages, and changes (and membership changes) handed to the leader, with their answers.

use bytes::Bytes;
use openraft::RaftTypeConfig;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What one node asks another.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum Request<C: RaftTypeConfig> {
    Append(AppendEntriesRequest<C>),
    Vote(VoteRequest<C::NodeId>),
    Snapshot(InstallSnapshotRequest<C>),
    /// A change for the leader to commit, from a node that is not the leader.
    Propose {
        change: C::D,
        timeout_ms: u64,
    },
    /// A membership change for the leader.
    Members(MemberRequest),
    /// How the member asked stands (`status::MemberStatus`); any member answers.
    Status,
    /// Stand for election now (`stand`).
    Stand,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct MemberRequest {
    pub change: MemberChange,
    pub timeout_ms: u64,
}

/// The type config of a request that is only ever `Members` (sent by a node whose group is
/// not running): it encodes as the same bytes as the running group's `Request::Members`.
pub(crate) type MemberOnly = crate::Meta;

/// `value` postcard-encoded into a buffer of exactly its size: measuring walks the value
/// without copying its bytes, where a buffer grown while it is written would copy a
/// megabyte entry again at every doubling. Encoding fails only for types postcard cannot
/// represent (an empty buffer then), which none here are.
pub fn encode<T: Serialize>(value: &T) -> Bytes {
    let size = postcard::experimental::serialized_size(value).unwrap_or(0);
    postcard::to_extend(value, Vec::with_capacity(size))
        .map(Bytes::from)
        .unwrap_or_default()
}

pub(crate) fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, String> {
    postcard::from_bytes(raw).map_err(|e| format!("an unreadable raft message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vote_request_is_known_by_its_first_byte() {
        let vote = openraft::raft::VoteRequest::new(openraft::Vote::new(1, 1), None);
        assert!(crate::leader::is_vote(&encode(
            &Request::<crate::Meta>::Vote(vote)
        )));
        assert!(!crate::leader::is_vote(&encode(
            &Request::<crate::Meta>::Status
        )));
    }

    #[test]
    fn entries_and_snapshots_are_known_as_a_leader_s() {
        let vote = openraft::Vote::new_committed(1, 1);
        let append = openraft::raft::AppendEntriesRequest::<crate::Meta> {
            vote,
            prev_log_id: None,
            leader_commit: None,
            entries: Vec::new(),
        };
        assert!(crate::leader::is_from_leader(&encode(&Request::<
            crate::Meta,
        >::Append(
            append
        ))));
        let snapshot = openraft::raft::InstallSnapshotRequest::<crate::Meta> {
            vote,
            meta: Default::default(),
            offset: 0,
            data: Vec::new(),
            done: true,
        };
        assert!(crate::leader::is_from_leader(&encode(&Request::<
            crate::Meta,
        >::Snapshot(
            snapshot
        ))));
        let ask = openraft::raft::VoteRequest::new(vote, None);
        assert!(!crate::leader::is_from_leader(&encode(&Request::<
            crate::Meta,
        >::Vote(
            ask
        ))));
        assert!(!crate::leader::is_from_leader(&encode(
            &Request::<crate::Meta>::Status
        )));
    }
}

/// Why a change was not committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposeError {
    /// No leader committed it in time: this node cannot reach a majority, or the cluster has
    /// none. It may still be committed later.
    TimedOut,
    /// The group has stopped on this node (it is shutting down, or its log cannot be written).
    Stopped(String),
    /// The group refused the change (a membership change while another is under way, one
    /// that would leave no voter).
    Refused(String),
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::TimedOut => f.write_str("the metadata store operation timed out"),
            ProposeError::Stopped(why) => write!(f, "the metadata store has stopped: {why}"),
            ProposeError::Refused(why) => f.write_str(why),
        }
    }
}

/// What the node asked answers: done, or not the leader (naming the leader it knows of).
#[derive(Serialize, Deserialize)]
pub(crate) enum Answer<T> {
    Done(T),
    /// Nothing was done here.
    NotLeader(Option<String>),
}

/// A committed change: the log index it was applied at, with what applying it answered.
pub(crate) type Committed<C> = (u64, <C as RaftTypeConfig>::R);

/// A change to the group's membership. Nodes join as learners (RabbitMQ's RAM nodes: they
/// receive the log but do not vote); a voter (a disc node) counts towards the majority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// Adds a node as a learner, or gives a member a new address.
    Add { id: u64, addr: String },
    /// Makes a learner a voter.
    Promote { id: u64 },
    /// Makes a voter a learner.
    Demote { id: u64 },
    /// Takes a node out of the group.
    Remove { id: u64 },
}
