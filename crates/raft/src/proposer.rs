//! Handing a change to the group. Any node takes a change: the leader commits it itself, any
//! other node forwards it to the leader it knows of. Every change has a deadline, so a node
//! that cannot reach a majority answers with an error in bounded time instead of hanging; a
//! forwarded change is sent again only when it certainly had no effect (no link, or the node
//! it reached was not the leader), so nothing is applied twice by a retry.

use crate::network::{CallError, Request, Transport, decode, encode};
use openraft::error::{ClientWriteError, RaftError};
use openraft::impls::OneshotResponder;
use openraft::{BasicNode, Raft, RaftTypeConfig};
use serde::{Deserialize, Serialize};
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
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::TimedOut => f.write_str("the metadata store operation timed out"),
            ProposeError::Stopped(why) => write!(f, "the metadata store has stopped: {why}"),
        }
    }
}

/// The leader's answer to a forwarded change.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum Proposed<C: RaftTypeConfig> {
    /// Committed and applied at this log index, with what applying it answered.
    Done { index: u64, reply: C::R },
    /// The node asked is not (or no longer) the leader: nothing was proposed.
    NotLeader,
}

/// Commits a change on this node if it leads.
pub(crate) async fn commit_here<C>(
    raft: &Raft<C>,
    change: C::D,
    timeout: Duration,
) -> Result<Proposed<C>, ProposeError>
where
    C: RaftTypeConfig<Node = BasicNode, Responder = OneshotResponder<C>>,
{
    match tokio::time::timeout(timeout, raft.client_write(change)).await {
        Err(_) => Err(ProposeError::TimedOut),
        Ok(Ok(r)) => Ok(Proposed::Done {
            index: r.log_id.index,
            reply: r.data,
        }),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
            Ok(Proposed::NotLeader)
        }
        Ok(Err(e)) => Err(ProposeError::Stopped(e.to_string())),
    }
}

/// How long to wait before asking again when there is no leader to ask.
const RETRY: Duration = Duration::from_millis(50);

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
    C: RaftTypeConfig<Node = BasicNode, Responder = OneshotResponder<C>>,
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
        let deadline = Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProposeError::TimedOut);
            }
            let (me, leader) = {
                let m = metrics.borrow_and_update();
                let leader = m.current_leader.clone().map(|id| {
                    let addr = m
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .map(|n| n.addr.clone());
                    (id, addr)
                });
                (m.id.clone(), leader)
            };
            let answer = match leader {
                Some((id, _)) if id == me => commit_here(&self.raft, change.clone(), left).await?,
                Some((_, Some(addr))) => {
                    let request = Request::<C>::Propose {
                        change: change.clone(),
                        timeout_ms: left.as_millis() as u64,
                    };
                    match self.transport.call(&addr, encode(&request), left).await {
                        Ok(raw) => decode::<Result<Proposed<C>, ProposeError>>(&raw)
                            .map_err(ProposeError::Stopped)??,
                        // Never sent: safe to try again, once there is a link or a new leader.
                        Err(CallError::Unreachable(_)) => Proposed::NotLeader,
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
                Proposed::Done { index, reply } => return Ok((index, reply)),
                Proposed::NotLeader => tokio::time::sleep(RETRY.min(left)).await,
            }
        }
    }
}
