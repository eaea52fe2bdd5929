//! # warren-broker
//!
//! The broker node: everything between a client's TCP connection and the queues that hold
//! its messages, speaking AMQP 0-9-1 as RabbitMQ does.
//!
//! Data flows like this. [`server`] accepts a socket and hands it to [`connection`], one task
//! per client, which runs the opening handshake and then owns the state of all the client's
//! [`channel`]s. A published message is assembled from its frames without copying the body
//! ([`message`]), routed against the vhost's immutable routing [`routing::Snapshot`] (swapped
//! whole by [`vhost`] when declarations change it), and handed to each destination
//! [`queue`] through a [`queue::QueueHandle`]. A queue is an actor: it owns its messages and
//! consumers and sends deliveries back to connection tasks as [`mail`], addressed by
//! connection id and bounded by the credit each consumer grants its queue. Connections write replies
//! and deliveries in batches. [`broker`] holds what the whole node shares: configuration,
//! alarms, and the topology ([`metadata`], around the pure core in `warren-meta`), which
//! every declaration changes by a command committed through the metadata's Raft [`group`]
//! (`warren-raft`), applied on every node of the cluster by [`meta_machine`].

pub mod admin;
pub mod alarms;
pub(crate) mod auth;
pub(crate) mod broker;
pub(crate) mod channel;
pub mod config;
pub(crate) mod connection;
pub mod data_lock;
pub mod formation;
pub mod group;
pub(crate) mod mail;
pub(crate) mod message;
pub(crate) mod meta_machine;
pub(crate) mod metadata;
pub(crate) mod names;
pub(crate) mod persist;
pub(crate) mod placement;
pub(crate) mod queue;
pub(crate) mod quorum;
pub(crate) mod rebalance;
pub(crate) mod remote;
pub(crate) mod reply_to;
pub(crate) mod routing;
pub(crate) mod server;
pub(crate) mod trim;
pub(crate) mod vhost;

pub use broker::Broker;
pub use config::Config;
pub use group::ClusterSetup;
pub use queue::remote::{Links, NoLinks, Sending};
pub use remote::{Remote, answer_while_stopped, broker_frame};
pub use server::Server;
