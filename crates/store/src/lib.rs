//! # warren-store
//!
//! Where messages live on disk. Each queue that needs it has a [`log::QueueLog`]: segment
//! files of framed, checksummed message records ([`record`]) and small sidecars of
//! acknowledgements. The broker's queue appends a message (to keep it across a restart, or to
//! take its body out of memory), fsyncs in groups before confirming, reads messages back in
//! order when they reach the head of the queue, and records acknowledgements; a segment whose
//! messages are all acknowledged is deleted. Opening a log recovers its live messages as
//! [`log::Run`]s (stretches of consecutive records), so even millions of stored messages cost
//! almost no memory; torn or damaged data is cut off or skipped, never returned. The node's
//! metadata goes to a [`journal::Journal`]: an append-only file of checksummed records, which
//! its Raft log is kept in.

pub mod journal;
pub mod log;
pub mod record;

pub use journal::Journal;
pub use log::{Position, QueueLog, Recovered, Run};
pub use record::StoredMessage;
