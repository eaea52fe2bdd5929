//! warren-vip: the Keepalived of the classic RabbitMQ HA setup. Balancers share a virtual IP
//! address by VRRP; the one that holds it serves, and when it dies another takes the address
//! over, so applications keep one address.
//!
//! `packet` encodes and checks VRRP version 2 and 3 advertisements; `state` is the RFC 5798
//! state machine, pure (events in, actions out); `config` reads the keepalived.conf subset.
//! `daemon` runs an instance: it wires the machine to `sys` (raw socket, rtnetlink,
//! gratuitous ARP) and to `track` (scripts, interfaces, a local warren-lb).

pub mod config;
pub mod daemon;
pub mod packet;
pub mod state;
pub mod sys;
pub mod track;
