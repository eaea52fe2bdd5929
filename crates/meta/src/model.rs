//! The records the topology is made of. Plain data: what a declaration asked for and what the
//! broker keeps of it, with no handles to anything running.

use crate::ids::{ConnId, NodeId, QueueId};
use crate::password::PasswordHash;
use crate::queue_args::QueueArgs;
use crate::rules::{describe, locked};
use serde::{Deserialize, Serialize};
use warren_amqp::{AmqpResult, FieldTable, FieldValue, ShortStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &[u8]) -> Option<ExchangeKind> {
        match s {
            b"direct" => Some(ExchangeKind::Direct),
            b"fanout" => Some(ExchangeKind::Fanout),
            b"topic" => Some(ExchangeKind::Topic),
            b"headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub name: ShortStr,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

impl Exchange {
    /// The exchange that takes what this one cannot route (`alternate-exchange`).
    pub fn alternate(&self) -> Option<ShortStr> {
        match self.arguments.get("alternate-exchange") {
            Some(FieldValue::LongStr(b)) => Some(ShortStr::from_bytes(b.clone())),
            _ => None,
        }
    }

    /// Built in to every vhost (`""` and the `amq.*` set): never exported, never deleted.
    pub fn is_builtin(&self) -> bool {
        self.name.is_empty() || self.name.starts_with(b"amq.")
    }
}

/// How a queue keeps its messages: classic (on one node), or quorum (replicated by a Raft
/// group of its own over several nodes). Both sit behind the same boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

impl QueueType {
    /// A type by the name `x-queue-type`, `add_vhost --default-queue-type` and definitions
    /// use.
    pub fn parse(name: &str) -> Option<QueueType> {
        match name {
            "classic" => Some(QueueType::Classic),
            "quorum" => Some(QueueType::Quorum),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    pub name: ShortStr,
    pub id: QueueId,
    pub durable: bool,
    pub auto_delete: bool,
    /// The connection that declared an exclusive queue.
    pub exclusive_owner: Option<ConnId>,
    pub arguments: FieldTable,
    /// The arguments that change how the queue behaves, validated (derived from `arguments`).
    pub args: QueueArgs,
    pub kind: QueueType,
    /// The node the queue lives on (a classic queue's only node; a quorum queue's member
    /// placed to lead it first).
    pub home: NodeId,
    /// A quorum queue's members, the first placed to lead (empty for a classic queue).
    pub members: Vec<NodeId>,
}

impl Queue {
    /// Whether connection `by` may use the queue: 405 if another connection owns it.
    pub fn check_exclusive(&self, vhost: &str, by: Option<ConnId>) -> AmqpResult<()> {
        match self.exclusive_owner {
            Some(owner) if Some(owner) != by => Err(locked(&describe("queue", &self.name, vhost))),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Destination {
    Queue(ShortStr),
    Exchange(ShortStr),
}

impl Destination {
    pub fn name(&self) -> &ShortStr {
        match self {
            Destination::Queue(n) | Destination::Exchange(n) => n,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Queue(_) => "queue",
            Destination::Exchange(_) => "exchange",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub source: ShortStr,
    pub destination: Destination,
    pub routing_key: ShortStr,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password: PasswordHash,
    pub tags: Vec<String>,
}

/// What a user may do in one vhost: regular expressions over resource names, as RabbitMQ's
/// `set_permissions` takes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub pattern: String,
    /// `queues`, `exchanges` or `all`.
    pub apply_to: String,
    /// The policy's keys and values, as the JSON text RabbitMQ's definitions carry. Kept as
    /// text so that commands stay encodable by formats that are not self-describing.
    pub definition: String,
    pub priority: i64,
}
