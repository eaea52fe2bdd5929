//! What the leader does with what other nodes hand it: commits changes and membership
//! changes, or says it is not the leader and names the one it knows of; [`serve`] answers
//! every request another node sends this one.

use crate::messages::{Answer, Committed, MemberChange, ProposeError, Request, decode, encode};
use bytes::Bytes;
use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};
use openraft::impls::OneshotResponder;
use openraft::{BasicNode, Raft, RaftTypeConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The leader this node knows of, by address.
fn leader_addr<C: RaftTypeConfig<Node = BasicNode>>(raft: &Raft<C>) -> Option<String> {
    let m = raft.metrics();
    let m = m.borrow();
    let leader = m.current_leader.clone()?;
    m.membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.addr.clone())
}

fn write_error<C, T>(
    raft: &Raft<C>,
    e: RaftError<C::NodeId, ClientWriteError<C::NodeId, BasicNode>>,
) -> Result<Answer<T>, ProposeError>
where
    C: RaftTypeConfig<Node = BasicNode>,
{
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            Ok(Answer::NotLeader(leader_addr(raft)))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Err(ProposeError::Refused(e.to_string()))
        }
        e => Err(ProposeError::Stopped(e.to_string())),
    }
}

/// Commits a change on this node if it leads.
pub(crate) async fn commit_here<C>(
    raft: &Raft<C>,
    change: C::D,
    timeout: Duration,
) -> Result<Answer<Committed<C>>, ProposeError>
where
    C: RaftTypeConfig<Node = BasicNode, Responder = OneshotResponder<C>>,
{
    match tokio::time::timeout(timeout, raft.client_write(change)).await {
        Err(_) => Err(ProposeError::TimedOut),
        Ok(Ok(r)) => Ok(Answer::Done((r.log_id.index, r.data))),
        Ok(Err(e)) => write_error(raft, e),
    }
}

/// Changes the membership on this node if it leads.
pub(crate) async fn change_members_here<C>(
    raft: &Raft<C>,
    change: MemberChange,
    timeout: Duration,
) -> Result<Answer<u64>, ProposeError>
where
    C: RaftTypeConfig<Node = BasicNode, NodeId = u64, Responder = OneshotResponder<C>>,
{
    let voters: BTreeSet<u64> = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    let (members, retain): (ChangeMembers<u64, BasicNode>, bool) = match change {
        MemberChange::Add { id, addr } => (
            ChangeMembers::SetNodes(BTreeMap::from([(id, BasicNode::new(addr))])),
            true,
        ),
        MemberChange::Promote { id } => (ChangeMembers::AddVoterIds(BTreeSet::from([id])), true),
        MemberChange::Demote { id } => (ChangeMembers::RemoveVoters(BTreeSet::from([id])), true),
        MemberChange::Remove { id } if voters.contains(&id) => {
            (ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
        }
        MemberChange::Remove { id } => (ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
    };
    match tokio::time::timeout(timeout, raft.change_membership(members, retain)).await {
        Err(_) => Err(ProposeError::TimedOut),
        Ok(Ok(r)) => Ok(Answer::Done(r.log_id.index)),
        Ok(Err(e)) => write_error(raft, e),
    }
}

/// Whether `request` (as [`serve`] takes it) asks for a vote.
pub fn is_vote(request: &[u8]) -> bool {
    // postcard writes a variant's index first, as a varint: one byte for these.
    request.first() == Some(&VOTE)
}

/// The index of `Request::Vote`.
const VOTE: u8 = 1;

/// Whether `request` is one only a leader sends: entries (heartbeats among them) or a
/// snapshot. A follower that stops receiving these has lost its leader.
pub fn is_from_leader(request: &[u8]) -> bool {
    matches!(request.first(), Some(&APPEND) | Some(&SNAPSHOT))
}

/// The indexes of `Request::Append` and `Request::Snapshot`.
const APPEND: u8 = 0;
const SNAPSHOT: u8 = 2;

/// Answers a request from node `from`. A vote request from a node that is not a member (one
/// forgotten by the others, restarted with its old view of the cluster) gets no answer: its
/// higher terms would otherwise unseat the leader again and again. A node that has no
/// membership yet (it is joining, or forming) answers everyone.
pub async fn serve<C>(raft: &Raft<C>, from: u64, request: &[u8]) -> Bytes
where
    C: RaftTypeConfig<Node = BasicNode, NodeId = u64, Responder = OneshotResponder<C>>,
{
    let request: Request<C> = match decode(request) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "dropping a raft request");
            return Bytes::new();
        }
    };
    match request {
        Request::Append(r) => encode(&raft.append_entries(r).await),
        Request::Vote(_) if !may_vote(raft, from) => {
            tracing::warn!(
                node = from,
                "ignored a vote request from a node that is not a member of the cluster \
                 (reset it before it starts again)"
            );
            Bytes::new()
        }
        Request::Vote(r) => encode(&raft.vote(r).await),
        Request::Snapshot(r) => encode(&raft.install_snapshot(r).await),
        Request::Propose { change, timeout_ms } => {
            let timeout = Duration::from_millis(timeout_ms);
            encode(&commit_here(raft, change, timeout).await)
        }
        Request::Members(r) => {
            let timeout = Duration::from_millis(r.timeout_ms);
            encode(&change_members_here(raft, r.change, timeout).await)
        }
        Request::Status => encode(&crate::status::status(raft)),
        Request::Stand => encode(&raft.trigger().elect().await.is_ok()),
    }
}

/// Whether node `from` may ask this one for its vote: it is a member, or this node knows of no
/// members yet.
fn may_vote<C>(raft: &Raft<C>, from: u64) -> bool
where
    C: RaftTypeConfig<Node = BasicNode, NodeId = u64, Responder = OneshotResponder<C>>,
{
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let members = m.membership_config.membership();
    members.nodes().next().is_none() || members.get_node(&from).is_some()
}
