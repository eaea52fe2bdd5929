//! # warren-perf
//!
//! A load generator modelled on RabbitMQ's PerfTest, to measure warren and RabbitMQ the same
//! way. [`options`] holds the PerfTest-style flags; [`run`] sets up the exchange and queues,
//! starts consumers, then producers, prints a line a second and a summary ([`stats`]:
//! counts, rates, end-to-end and confirm latency percentiles). Messages carry a send time and
//! a sequence number in their first 16 bytes ([`body`]).
//!
//! Two drivers produce the load: [`native`], on warren's own codec with batched writes and
//! pipelined confirms (a client that writes one frame set per publish is slower than a fast
//! broker), and [`amqprs_driver`], on the third-party amqprs client, for cross-checks. The
//! [`sink`] is a do-nothing server: the same workload against it shows the tool's own ceiling.

pub mod amqprs_driver;
pub mod body;
pub mod native;
pub mod options;
pub mod run;
pub mod sink;
pub mod stats;
