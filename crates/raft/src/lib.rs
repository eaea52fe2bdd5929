//! # warren-raft
//!
//! The cluster's metadata (vhosts, users, permissions, exchanges, queues, bindings, policies)
//! is one Raft group run by [openraft]: every change is a [`warren_meta::Command`] in its log,
//! committed once a majority of the voting nodes have it on disk, then applied in the same
//! order on every node. This crate holds what does not depend on what the log is applied to:
//! the log's storage ([`log_store`]), its messages between nodes over any [`Transport`]
//! ([`network`]), and the [`Proposer`] that hands a change to whichever node leads, with a
//! deadline. The state machine (the topology, and the queues it starts) is the broker's.

// openraft's traits fix the error types, and its `StorageError` is large.
#![allow(clippy::result_large_err)]

mod leader;
mod log_records;
pub mod log_store;
pub mod messages;
pub mod network;
pub mod proposer;
pub mod snapshot_data;
pub mod stand;
pub mod status;

use std::io::Cursor;
use std::time::Duration;

pub use leader::{is_from_leader, is_vote, serve};
pub use log_store::LogStore;
pub use messages::{MemberChange, ProposeError};
pub use network::{CallError, Network, Transport};
pub use openraft;
pub use proposer::{Proposer, ask_cluster};
pub use stand::stand_at;
pub use status::{MemberStatus, status, status_of};

/// What applying a change answered: whether it changed anything, or why it was refused (the
/// AMQP error a client gets, the same from every node).
pub type Outcome = Result<bool, warren_amqp::AmqpError>;

openraft::declare_raft_types!(
    /// The metadata group's types: the log carries topology commands, nodes are addressed by
    /// their cluster name (`name@host:port`), snapshots are the definitions, in JSON.
    pub Meta:
        D = warren_meta::Command,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The metadata group's raft.
pub type MetaRaft = openraft::Raft<Meta>;

openraft::declare_raft_types!(
    /// A quorum queue's group: its log carries the queue's commands and its state machine
    /// answers with the queue's replies, both encoded by the broker (this crate does not
    /// know what a queue is); snapshots are files (a queue may be deep), sent as pieces of files
    /// (see `snapshot_data`).
    pub Replica:
        D = bytes::Bytes,
        R = bytes::Bytes,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = crate::snapshot_data::SnapshotData,
);

/// A quorum queue's raft.
pub type ReplicaRaft = openraft::Raft<Replica>;

/// How the metadata group keeps time. Its leader need not move within a second (queues do
/// not wait on it), so the timing leaves room for a follower's fsync within a heartbeat.
pub fn config(cluster_name: &str) -> Result<openraft::Config, String> {
    openraft::Config {
        cluster_name: cluster_name.to_owned(),
        heartbeat_interval: 300,
        election_timeout_min: 1_500,
        election_timeout_max: 3_000,
        install_snapshot_timeout: 10_000,
        snapshot_max_chunk_size: 1024 * 1024,
        // Snapshots are asked for by the node, when as many entries have accumulated as the
        // last snapshot held things: their cost per change stays flat however large the
        // topology grows.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        ..Default::default()
    }
    .validate()
    .map_err(|e| e.to_string())
}

/// How long a node waits for an answer to a Raft message by default.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(5);
