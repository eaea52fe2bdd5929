//! Handing a change to the group. Any node takes a change: the leader commits it itself, any
//! other node forwards it to the leader it knows of. Every change has a deadline, so a node
//! that cannot reach a majority answers with an error in bounded time instead of hanging; a
//! forwarded change is sent again only when it certainly had no effect (no link, or the node
//! it reached was not the leader), so nothing is applied twice by a retry.

use crate::leader::{change_members_here, commit_here};
use crate::messages::{
    Answer, MemberChange, MemberOnly, MemberRequest, ProposeError, Request, decode, encode,
};
use crate::network::{CallError, Transport};
use openraft::impls::OneshotResponder;
use openraft::{BasicNode, Raft, RaftTypeConfig};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
