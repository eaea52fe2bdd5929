//! The native driver: producers and consumers on warren's own codec, writing frames in batches
//! and keeping confirms pipelined, so the client costs as little CPU as possible.

pub mod conn;
pub mod consumer;
pub mod producer;
