//! # warren-amqp
//!
//! The AMQP 0-9-1 wire format as RabbitMQ speaks it, with no I/O: the broker, the load tool and
//! the balancer's health check all build on it.
//!
//! Data flows in one direction per side. Reading: the connection appends socket bytes to a
//! `BytesMut`, and [`frame::parse_frame`] splits whole frames off its front into [`Frame`]s,
//! decoding method arguments ([`Method`]), content headers ([`ContentHeader`], whose
//! properties stay raw as [`RawProperties`]) and leaving body payloads as `Bytes` slices of
//! the read buffer. Writing: the `write_*` functions in [`frame`] append frames to an output
//! buffer. Field tables ([`FieldTable`], [`FieldValue`]) cover every value type RabbitMQ
//! accepts. Malformed input is always a [`DecodeError`] that names the reply code to close
//! with, never a panic.

pub mod amqp_error;
pub mod codec;
pub mod constants;
pub mod error;
pub mod frame;
pub mod methods;
pub mod properties;
pub mod table;
pub mod types;

pub use amqp_error::{AmqpError, AmqpResult};
pub use constants::reply;
pub use error::DecodeError;
pub use frame::{Frame, FrameError, parse_frame};
pub use methods::Method;
pub use properties::{BasicProperties, ContentHeader, RawProperties};
pub use table::{FieldTable, FieldValue};
pub use types::{LongStr, ShortStr};
