//! The messages a queue actor understands.

use super::storage::Ticket;
use crate::connection::credit::Credit;
use crate::connection::mail::ConnHandle;
use crate::message::Message;
use std::sync::Arc;
use tokio::sync::oneshot;
use warren_amqp::AmqpResult;
use warren_amqp::ShortStr;
use warren_meta::ConnId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Requeue,
    /// Rejected without requeue: the message is dropped.
    Discard,
}

#[derive(Debug)]
pub struct ConsumerSpec {
    pub tag: ShortStr,
    pub channel: u16,
    /// Distinguishes this opening of the channel from an earlier one with the same number.
    pub channel_key: u64,
    pub conn: ConnHandle,
    pub no_ack: bool,
    /// Per-consumer prefetch (0: unlimited).
    pub prefetch: u32,
    pub exclusive: bool,
    pub priority: i64,
    /// The channel's global prefetch, shared with its other consumers.
    pub channel_limiter: Arc<Credit>,
}

#[derive(Debug)]
pub struct GetReply {
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Messages left ready after this one.
    pub remaining: u32,
}

#[derive(Debug)]
pub enum QueueCmd {
    /// Messages to enqueue, in order; each ticket is settled once its message is on disk.
    Publish(Vec<(Arc<Message>, Option<Ticket>)>),
    /// The fsync in flight finished (true: successfully).
    Synced(bool),
    Wake,
    Consume {
        consumer: ConsumerSpec,
        reply: oneshot::Sender<AmqpResult<()>>,
    },
    Cancel {
        conn_id: ConnId,
        channel_key: u64,
        tag: ShortStr,
        reply: oneshot::Sender<()>,
    },
    ChannelClosed {
        conn_id: ConnId,
        channel_key: u64,
    },
    Get {
        conn_id: ConnId,
        channel_key: u64,
        no_ack: bool,
        reply: oneshot::Sender<Option<GetReply>>,
    },
    Purge {
        reply: oneshot::Sender<u32>,
    },
    Counts {
        reply: oneshot::Sender<(u32, u32)>,
    },
    Delete {
        if_unused: bool,
        if_empty: bool,
        reply: oneshot::Sender<AmqpResult<u32>>,
    },
    /// The node is stopping: the queue stops and keeps its log.
    Shutdown {
        done: oneshot::Sender<()>,
    },
}
