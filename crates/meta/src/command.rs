//! The changes the topology takes, as one serde enum: what a Raft log will carry between
//! nodes, and what a single node applies directly. Each command holds everything its apply
//! needs (ids, hashes, the home node), so applying it is deterministic on every node.

use crate::ids::{ConnId, NodeId, QueueId};
use crate::model::{Binding, Exchange, Permissions, Policy, Queue, QueueType};
use crate::password::PasswordHash;
use serde::{Deserialize, Serialize};
use warren_amqp::{FieldTable, ShortStr};

/// What `queue.declare` asks for, once the node has named the queue and picked its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDeclaration {
    pub name: ShortStr,
    pub id: QueueId,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive_owner: Option<ConnId>,
    pub arguments: FieldTable,
    pub home: NodeId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    AddVhost {
        name: String,
    },
    DeleteVhost {
        name: String,
    },
    AddUser {
        name: String,
        password: PasswordHash,
        tags: Vec<String>,
    },
    ChangePassword {
        name: String,
        password: PasswordHash,
    },
    SetUserTags {
        name: String,
        tags: Vec<String>,
    },
    DeleteUser {
        name: String,
    },
    SetPermissions {
        user: String,
        vhost: String,
        permissions: Permissions,
    },
    ClearPermissions {
        user: String,
        vhost: String,
    },
    SetPolicy {
        vhost: String,
        policy: Policy,
    },
    ClearPolicy {
        vhost: String,
        name: String,
    },
    /// `exchange.declare` without `passive`.
    DeclareExchange {
        vhost: String,
        exchange: Exchange,
    },
    DeleteExchange {
        vhost: String,
        name: ShortStr,
        if_unused: bool,
    },
    /// `queue.declare` without `passive`.
    DeclareQueue {
        vhost: String,
        queue: QueueDeclaration,
    },
    /// Takes a queue out of the topology, if it is still the queue `id` (a queue that removed
    /// itself may have been replaced by a new one of the same name meanwhile).
    DeleteQueue {
        vhost: String,
        name: ShortStr,
        id: QueueId,
    },
    /// Node `home` started again: the queues that lived only in its memory (transient and
    /// exclusive ones) did not survive, so they leave the topology with their bindings, as
    /// RabbitMQ deletes them when their node goes. With `exchanges`, transient exchanges go
    /// too (the proposer sets it when the node is the cluster's only voter, i.e. the whole
    /// cluster restarted).
    ForgetTransient {
        home: NodeId,
        exchanges: bool,
    },
    /// `by`: the connection asking, checked against exclusive destination queues.
    Bind {
        vhost: String,
        binding: Binding,
        by: Option<ConnId>,
    },
    Unbind {
        vhost: String,
        binding: Binding,
        by: Option<ConnId>,
    },
    /// Takes these queues out (vhost, name, id), each only if it is still that queue: the
    /// transient and exclusive queues of a node seen going down, as RabbitMQ deletes them.
    /// Naming them one by one, rather than by home node, leaves alone the queues the node
    /// declares after it comes back, should this change commit after that.
    DeleteQueues {
        queues: Vec<(String, ShortStr, QueueId)>,
    },
    /// `set_cluster_name`: the name clients see in `connection.start` and operators in
    /// `cluster_status`.
    SetClusterName {
        name: String,
    },
    /// `queue.declare` of a quorum queue, with the nodes placed to hold it (the first to lead).
    DeclareQuorumQueue {
        vhost: String,
        queue: QueueDeclaration,
        members: Vec<NodeId>,
    },
    /// `add_vhost --default-queue-type`: a vhost whose declarations that name no queue type
    /// get `default_queue_type`. Like `AddVhost`, a vhost that exists is left as it is.
    AddVhostWithDefaultType {
        name: String,
        default_queue_type: QueueType,
    },
    /// The nodes that hold quorum queue `id` now (`add_member`, `delete_member`, `grow`,
    /// `shrink`), once its group has changed. Only if it is still that queue.
    SetQueueMembers {
        vhost: String,
        name: ShortStr,
        id: QueueId,
        members: Vec<NodeId>,
    },
}

/// What applying a command changed, for the runtime to carry out: start or stop queues,
/// update routing, refresh what it caches of users.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    VhostAdded(String),
    VhostDeleted(String),
    ExchangeAdded {
        vhost: String,
        exchange: Exchange,
    },
    ExchangeDeleted {
        vhost: String,
        exchange: Exchange,
    },
    QueueAdded {
        vhost: String,
        queue: Queue,
    },
    QueueDeleted {
        vhost: String,
        queue: Queue,
    },
    /// A quorum queue's members changed: `queue` as it is now, `before` its members until
    /// then.
    QueueMembersChanged {
        vhost: String,
        queue: Queue,
        before: Vec<NodeId>,
    },
    BindingAdded {
        vhost: String,
        binding: Binding,
    },
    BindingRemoved {
        vhost: String,
        binding: Binding,
    },
    /// Users, their passwords, tags or permissions.
    AccessChanged,
    PoliciesChanged {
        vhost: String,
    },
    ClusterNamed(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied {
    pub effects: Vec<Effect>,
    /// Whether something that outlives a restart changed (so it must be written down before
    /// the client is told it is done).
    pub durable: bool,
}

impl Applied {
    /// Nothing changed: a redeclaration of what exists, a delete of what does not.
    pub fn unchanged() -> Applied {
        Applied::default()
    }

    /// Adds what another change did.
    pub fn merge(&mut self, other: Applied) {
        self.durable |= other.durable;
        self.effects.extend(other.effects);
    }

    pub fn is_unchanged(&self) -> bool {
        self.effects.is_empty()
    }
}
