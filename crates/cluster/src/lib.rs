//! # warren-cluster
//!
//! How warren nodes become one cluster. Every node holds the same secret, the [`cookie`]
//! (found as Erlang finds its own). Nodes are named as RabbitMQ's are, `name@host`, and reached
//! on their cluster port ([`name`]). Between two nodes runs one TCP connection, a [`mesh`]
//! link, on which each side proves the cookie to the other before anything else
//! ([`handshake`]: HMAC-SHA256 challenge-response; the cookie itself never crosses). After
//! that the link carries frames ([`wire`]) for a few channels (the metadata's Raft group, queue
//! traffic, control requests), with heartbeats that notice a silent peer in seconds, and is
//! redialled with backoff when it drops. Nodes call each other over a channel with [`rpc`]
//! (requests and their answers, matched by number). warrenctl connects the same way, as a
//! tool rather than a node ([`mesh::ToolLink`]).

pub mod codec;
pub mod cookie;
pub mod ctl;
pub mod handshake;
mod link;
pub mod mesh;
pub mod name;
pub mod rpc;
pub mod wire;

pub use cookie::Cookie;
pub use link::{Inbound, Timing};
pub use mesh::{Mesh, NotConnected, PeerEvent, ToolLink};
pub use name::NodeAddr;
pub use rpc::Rpc;
pub use wire::{Channel, PeerKind};
