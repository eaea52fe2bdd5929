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
//! every declaration changes by a command.

pub mod alarms;
pub mod auth;
pub mod broker;
pub mod channel;
pub mod config;
pub mod connection;
pub mod data_lock;
pub mod mail;
pub mod message;
pub mod metadata;
pub mod names;
pub mod persist;
pub mod queue;
pub mod routing;
pub mod server;
pub mod trim;
pub mod vhost;

pub use broker::Broker;
pub use config::Config;
pub use server::Server;
