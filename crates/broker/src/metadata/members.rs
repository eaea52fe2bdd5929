//! Changing which nodes hold a quorum queue (rabbitmq-queues' `add_member`, `delete_member`,
//! `grow`, `shrink`) and asking its members how they stand (`quorum_status`). The queue's
//! group changes first, through its leader; the topology follows, and each node then starts or
//! stops its member. Done in this order a change that fails half way can be asked again: the
//! group's changes are idempotent, and the topology is only told what the group already is.

use super::Metadata;
use crate::quorum::group;
use std::sync::Arc;
use std::time::Duration;
use warren_amqp::ShortStr;
use warren_meta::{Command, NodeId, Queue, QueueType};
use warren_raft::{MemberChange, MemberStatus};

/// How long one change of a group may take.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a member has to say how it stands.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a membership change was refused, in rabbitmq-queues' words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberError {
    /// No such queue, or no such vhost.
    NotFound,
    /// The queue is a classic queue (RabbitMQ says "add" for both verbs).
    Classic,
    /// The node is not a running member of the cluster.
    NodeNotRunning,
    /// The node holds the queue's only member.
    LastNode,
    /// The group did not take the change.
    Failed(String),
}

impl std::fmt::Display for MemberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberError::NotFound => f.write_str("not_found"),
            MemberError::Classic => f.write_str("Cannot add members to a classic queue"),
            MemberError::NodeNotRunning => f.write_str("node_not_running"),
            MemberError::LastNode => f.write_str("last_node"),
            MemberError::Failed(why) => f.write_str(why),
        }
    }
}

impl Metadata {
    /// The quorum queue `name` of `vhost`.
    pub fn quorum_queue(&self, vhost: &str, name: &str) -> Result<Queue, MemberError> {
        let q = self
            .read(|t| t.vhost(vhost)?.queue(&ShortStr::from(name)).cloned())
            .ok_or(MemberError::NotFound)?;
        match q.kind {
            QueueType::Quorum => Ok(q),
            QueueType::Classic => Err(MemberError::Classic),
        }
    }

    /// The cluster node named `name` (`name@host`).
    pub fn node_named(&self, name: &str) -> Option<NodeId> {
        self.node_names()
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| id)
    }

    /// Every quorum queue, with its vhost.
    pub fn quorum_queues(&self) -> Vec<(String, Queue)> {
        self.read(|t| {
            t.vhosts()
                .flat_map(|v| {
                    v.queues()
                        .filter(|q| q.kind == QueueType::Quorum)
                        .map(|q| (v.name.clone(), q.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
    }

    pub(super) fn address(&self, node: NodeId) -> Option<String> {
        self.addresses
            .read()
            .ok()
            .and_then(|a| a.get(&node.0).cloned())
    }

    /// Adds a member of `q` on `node`; answers the queue's size after. A node that holds one
    /// already is left as it is.
    pub async fn add_member(
        self: &Arc<Self>,
        vhost: &str,
        q: &Queue,
        node: NodeId,
    ) -> Result<usize, MemberError> {
        if q.members.contains(&node) {
            return Ok(q.members.len());
        }
        if !self.running_nodes().contains(&node) {
            return Err(MemberError::NodeNotRunning);
        }
        let addr = self.address(node).ok_or(MemberError::NodeNotRunning)?;
        // The topology first, so that the node runs its (empty) member by the time the
        // leader sends to it; then a learner, so that the group never counts on a voter that
        // has not caught up; then a voter. If the group does not take it, the topology goes
        // back to what it was, and the verb can be asked again.
        let mut members = q.members.clone();
        members.push(node);
        let size = self.set_members(vhost, q, members).await?;
        let joined = async {
            self.change_group(q, MemberChange::Add { id: node.0, addr })
                .await?;
            self.change_group(q, MemberChange::Promote { id: node.0 })
                .await
        };
        if let Err(e) = joined.await {
            let _ = self.set_members(vhost, q, q.members.clone()).await;
            return Err(e);
        }
        Ok(size)
    }

    /// Takes `node`'s member out of `q`; answers the queue's size after. A node that holds
    /// none is left as it is; the last member stays.
    pub async fn delete_member(
        self: &Arc<Self>,
        vhost: &str,
        q: &Queue,
        node: NodeId,
    ) -> Result<usize, MemberError> {
        if !q.members.contains(&node) {
            return Ok(q.members.len());
        }
        if q.members.len() == 1 {
            return Err(MemberError::LastNode);
        }
        self.change_group(q, MemberChange::Remove { id: node.0 })
            .await?;
        let members: Vec<NodeId> = q.members.iter().copied().filter(|n| *n != node).collect();
        self.set_members(vhost, q, members).await
    }

    async fn set_members(
        &self,
        vhost: &str,
        q: &Queue,
        members: Vec<NodeId>,
    ) -> Result<usize, MemberError> {
        let size = members.len();
        self.change(&Command::SetQueueMembers {
            vhost: vhost.to_owned(),
            name: q.name.clone(),
            id: q.id,
            members,
        })
        .await
        .map_err(|e| MemberError::Failed(e.text.to_string()))?;
        Ok(size)
    }

    /// Hands a change to `q`'s group: through this node's member if it has one, else through
    /// each member in turn until one takes it.
    async fn change_group(&self, q: &Queue, change: MemberChange) -> Result<(), MemberError> {
        let links = self.replicas().links.clone();
        let failed = |e: warren_raft::ProposeError| MemberError::Failed(e.to_string());
        if let Some(raft) = self.replicas().get(q.id) {
            let proposer = warren_raft::Proposer::new(raft, group::transport(q.id, links));
            return proposer
                .change_members(change, CHANGE_TIMEOUT)
                .await
                .map(drop)
                .map_err(failed);
        }
        let transport = group::transport(q.id, links);
        let addrs: Vec<String> = q.members.iter().filter_map(|m| self.address(*m)).collect();
        group::ask_any(&*transport, &addrs, &change, CHANGE_TIMEOUT)
            .await
            .map(drop)
            .map_err(failed)
    }

    /// How each member of `q` stands, in the queue's order; `None` for a member that did not
    /// answer (its node is down, or it runs no member).
    /// The member that leads quorum queue `q`, as the member that answers with the latest
    /// term knows it.
    pub(crate) async fn quorum_leader(&self, q: &Queue) -> Option<NodeId> {
        self.member_statuses(q)
            .await
            .into_iter()
            .filter_map(|(_, s)| s)
            .filter(|s| s.leader.is_some())
            .max_by_key(|s| s.term)
            .and_then(|s| s.leader)
            .map(NodeId)
    }

    pub async fn member_statuses(&self, q: &Queue) -> Vec<(NodeId, Option<MemberStatus>)> {
        let transport = group::transport(q.id, self.replicas().links.clone());
        let mut out = Vec::with_capacity(q.members.len());
        for member in &q.members {
            let status = if *member == self.node() {
                self.replicas()
                    .get(q.id)
                    .map(|raft| warren_raft::status(&raft))
            } else {
                match self.address(*member) {
                    Some(addr) => warren_raft::status_of(&*transport, &addr, STATUS_TIMEOUT)
                        .await
                        .ok(),
                    None => None,
                }
            };
            out.push((*member, status));
        }
        out
    }
}
