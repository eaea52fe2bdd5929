//! Handing a change to the group. Any node takes a change: the leader commits it itself, any
//! other node forwards it to the leader it knows of. Every change has a deadline, so a node
//! that cannot reach a majority answers with an error in bounded time instead of hanging; a
//! forwarded change is sent again only when it certainly had no effect (no link, or the node
//! it reached was not the leader), so nothing is applied twice by a retry.

use crate::network::{CallError, MemberOnly, MemberRequest, Request, Transport, decode, encode};
use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};
use openraft::impls::OneshotResponder;
use openraft::{BasicNode, Raft, RaftTypeConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How long to wait before asking again when there is no leader to ask.
const RETRY: Duration = Duration::from_millis(50);

/// Asks the node at `addr` (and then the leader it names) until one does it, or `timeout`
/// passes: for a node whose own group is not running (one joining a cluster).
pub async fn ask_cluster(
    transport: &dyn Transport,
    addr: &str,
    change: MemberChange,
    timeout: Duration,
) -> Result<u64, ProposeError> {
    let deadline = Instant::now() + timeout;
    let mut addr = addr.to_owned();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProposeError::TimedOut);
        }
        let request = MemberRequest {
            change: change.clone(),
            timeout_ms: left.as_millis() as u64,
        };
        match transport
            .call(
                &addr,
                encode(&Request::<MemberOnly>::Members(request)),
                left,
            )
            .await
        {
            Ok(raw) => match decode::<Result<Answer<u64>, ProposeError>>(&raw)
                .map_err(ProposeError::Stopped)??
            {
                Answer::Done(index) => return Ok(index),
                Answer::NotLeader(Some(leader)) => addr = leader,
                Answer::NotLeader(None) => tokio::time::sleep(RETRY.min(left)).await,
            },
            Err(CallError::Unreachable(_)) => tokio::time::sleep((RETRY * 4).min(left)).await,
            Err(CallError::TimedOut) => return Err(ProposeError::TimedOut),
        }
    }
}

/// Hands changes to the group from this node.
pub struct Proposer<C: RaftTypeConfig> {
    raft: Raft<C>,
    transport: Arc<dyn Transport>,
}

impl<C: RaftTypeConfig> Clone for Proposer<C> {
    fn clone(&self) -> Self {
        Proposer {
            raft: self.raft.clone(),
            transport: self.transport.clone(),
        }
    }
}

impl<C> Proposer<C>
where
    C: RaftTypeConfig<Node = BasicNode, NodeId = u64, Responder = OneshotResponder<C>>,
    C::D: Clone,
{
    pub fn new(raft: Raft<C>, transport: Arc<dyn Transport>) -> Proposer<C> {
        Proposer { raft, transport }
    }

    pub fn raft(&self) -> &Raft<C> {
        &self.raft
    }

    /// Commits `change` through the leader, wherever it is; returns the log index it was
    /// applied at and what applying it answered. Gives up after `timeout`.
    pub async fn propose(
        &self,
        change: C::D,
        timeout: Duration,
    ) -> Result<(u64, C::R), ProposeError> {
        self.through_leader(
            timeout,
            |left| Request::Propose {
                change: change.clone(),
                timeout_ms: left.as_millis() as u64,
            },
            |left| commit_here(&self.raft, change.clone(), left),
        )
        .await
    }

    /// Changes the group's membership through the leader; returns the log index of the
    /// change.
    pub async fn change_members(
        &self,
        change: MemberChange,
        timeout: Duration,
    ) -> Result<u64, ProposeError> {
        self.through_leader(
            timeout,
            |left| {
                Request::Members(MemberRequest {
                    change: change.clone(),
                    timeout_ms: left.as_millis() as u64,
                })
            },
            |left| change_members_here(&self.raft, change.clone(), left),
        )
        .await
    }

    /// Does something where the leader is: here, or by asking it.
    async fn through_leader<T, R, H, F>(
        &self,
        timeout: Duration,
        request: R,
        here: H,
    ) -> Result<T, ProposeError>
    where
        T: serde::de::DeserializeOwned,
        R: Fn(Duration) -> Request<C>,
        H: Fn(Duration) -> F,
        F: Future<Output = Result<Answer<T>, ProposeError>>,
    {
        let deadline = Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProposeError::TimedOut);
            }
            let (me, leader) = {
                let m = metrics.borrow_and_update();
                let leader = m.current_leader.map(|id| {
                    let addr = m
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .map(|n| n.addr.clone());
                    (id, addr)
                });
                (m.id, leader)
            };
            let answer = match leader {
                Some((id, _)) if id == me => here(left).await?,
                Some((_, Some(addr))) => {
                    match self
                        .transport
                        .call(&addr, encode(&request(left)), left)
                        .await
                    {
                        Ok(raw) => decode::<Result<Answer<T>, ProposeError>>(&raw)
                            .map_err(ProposeError::Stopped)??,
                        // Never sent: safe to try again, once there is a link or a new leader.
                        Err(CallError::Unreachable(_)) => Answer::NotLeader(None),
                        Err(CallError::TimedOut) => return Err(ProposeError::TimedOut),
                    }
                }
                // No leader known: wait for one (or for the deadline).
                _ => {
                    let _ = tokio::time::timeout(left.min(RETRY * 4), metrics.changed()).await;
                    continue;
                }
            };
            match answer {
                Answer::Done(t) => return Ok(t),
                Answer::NotLeader(_) => tokio::time::sleep(RETRY.min(left)).await,
            }
        }
    }
}
