//! Quorum queues: a queue replicated by a Raft group of its own over several nodes, as
//! RabbitMQ's quorum queues are (on Ra). Every member runs the queue's deterministic state
//! machine on the same log ([`machine`]); only the leader carries out what it says should
//! happen (deliveries, confirms, dead letters).
//!
//! The replica and its group are built and tested here first; the broker starts them for
//! queues declared `x-queue-type: quorum` once declarations, placement and the queue handle's
//! quorum backend are in (until then such declarations are refused).
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod group;
pub(crate) mod machine;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
