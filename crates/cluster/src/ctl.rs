//! What warrenctl asks a node and what the node answers, on the control channel. Requests and
//! answers are JSON (they are small and rare, and JSON keeps them readable in a capture): a
//! verb with its arguments and options, and an answer that is either a result to print or an
//! error with the exit code rabbitmqctl would give.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Exit codes, as rabbitmqctl's (from sysexits.h).
pub mod exit {
    pub const OK: i32 = 0;
    /// Bad usage: unknown verb, wrong number of arguments.
    pub const USAGE: i32 = 64;
    /// Input that names nothing: an unknown vhost.
    pub const DATA: i32 = 65;
    /// An unknown user.
    pub const NO_USER: i32 = 67;
    /// The node cannot be reached, or does not accept our cookie.
    pub const UNAVAILABLE: i32 = 69;
    /// The node refused the operation.
    pub const SOFTWARE: i32 = 70;
    /// No answer in time.
    pub const TEMP_FAIL: i32 = 75;
}

/// The columns of `list_bindings`, which are also its default ones.
pub const BINDING_COLUMNS: &[&str] = &[
    "source_name",
    "source_kind",
    "destination_name",
    "destination_kind",
    "routing_key",
    "arguments",
];

/// The columns of `list_consumers`, which are also its default ones.
pub const CONSUMER_COLUMNS: &[&str] = &[
    "queue_name",
    "channel_pid",
    "consumer_tag",
    "ack_required",
    "prefetch_count",
    "active",
    "arguments",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub verb: String,
    pub args: Vec<String>,
    /// `-p VHOST` and the like, by long name.
    pub options: BTreeMap<String, String>,
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// Done, with nothing to show beyond warrenctl's own line.
    Done,
    /// Done, with a warning for the operator (warrenctl prints it to stderr).
    Warned(String),
    /// Rows with named columns (the listing verbs).
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<serde_json::Value>>,
    },
    /// A report (status, cluster_status): JSON as rabbitmqctl's `--formatter json` prints it,
    /// and its text form.
    Report {
        json: serde_json::Value,
        text: String,
    },
    Failed {
        code: i32,
        message: String,
    },
}

impl Answer {
    pub fn failed(code: i32, message: impl Into<String>) -> Answer {
        Answer::Failed {
            code,
            message: message.into(),
        }
    }
}

pub fn encode<T: Serialize>(v: &T) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

pub fn decode<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> Result<T, String> {
    serde_json::from_slice(raw).map_err(|e| format!("malformed control message: {e}"))
}
