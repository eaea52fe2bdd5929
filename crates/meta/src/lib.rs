//! # warren-meta
//!
//! The topology as pure data, with no I/O and no tokio: vhosts, users and permissions,
//! exchanges, queues (with their type and home node), bindings and policies.
//!
//! Every change is a [`Command`] (one serde enum), applied by [`Topology::apply`]: a plain,
//! deterministic `match` that checks RabbitMQ's naming and equivalence rules and answers with
//! the exact protocol error, or with the [`Effect`]s the change had (a queue to start or stop,
//! a binding for routing to add). A node applies commands directly today; a replicated log
//! will carry the same commands to every node, and a snapshot of it is the [`Definitions`]
//! JSON ([`Topology::export`] with [`Scope::All`]). Reads that must not wait for a round trip,
//! like an equivalent redeclaration, are answered from the local copy
//! ([`Vhost::check_queue_declaration`]).

pub mod bindings;
pub mod command;
pub mod default_type;
pub mod definitions;
pub mod equivalence;
pub mod headers;
pub mod ids;
pub mod mirroring;
pub mod model;
pub mod password;
pub mod queue_args;
pub mod rules;
pub mod snapshot;
pub mod topology;
pub mod vhost;

pub use command::{Applied, Command, Effect, QueueDeclaration};
pub use definitions::Definitions;
pub use ids::{ConnId, NodeId, QueueId, Uid, UidSource};
pub use model::{
    Binding, Destination, Exchange, ExchangeKind, Permissions, Policy, Queue, QueueType, User,
};
pub use password::PasswordHash;
pub use queue_args::{Locator, Overflow, QueueArgs};
pub use snapshot::Scope;
pub use topology::{Topology, Vhost};

#[cfg(test)]
mod tests;
