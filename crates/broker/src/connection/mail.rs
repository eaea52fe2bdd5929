//! What queues send to connections: deliveries for consumers and notices that a consumer is
//! gone. A connection's mailbox is unbounded so that a queue never waits on a connection
//! (which could wait on the queue in turn); the `backlog` limiter is what bounds it.

use crate::connection::credit::Credit;
use crate::message::Message;
use crate::queue::QueueHandle;
use std::sync::Arc;
use tokio::sync::mpsc;
use warren_amqp::ShortStr;
use warren_meta::ConnId;

/// One message handed to one consumer.
#[derive(Debug)]
pub struct Delivery {
    pub channel: u16,
    /// Which opening of the channel the consumer belongs to.
    pub channel_key: u64,
    pub consumer_tag: ShortStr,
    /// The queue it came from; none for direct reply-to, which has no queue.
    pub queue: Option<QueueHandle>,
    /// The queue's id for this message, used to acknowledge it.
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    pub no_ack: bool,
}

#[derive(Debug)]
pub enum ConnMsg {
    Deliver(Vec<Delivery>),
    /// The queue of this consumer went away (deleted); the client is told with basic.cancel
    /// if it asked for consumer-cancel notifications.
    ConsumerGone {
        channel: u16,
        channel_key: u64,
        consumer_tag: ShortStr,
    },
    /// Publishes on a channel are now on disk in one queue (or could not be written).
    Confirmed {
        channel: u16,
        channel_key: u64,
        seqs: Vec<u64>,
        ok: bool,
    },
    /// Close the connection from the server side (admin action).
    Close {
        code: u16,
        text: String,
    },
}

/// How a queue reaches a connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: ConnId,
    pub tx: mpsc::UnboundedSender<ConnMsg>,
    /// Deliveries sent to this connection and not yet taken into its write buffer.
    pub backlog: Arc<Credit>,
}

impl ConnHandle {
    pub fn send(&self, msg: ConnMsg) -> bool {
        self.tx.send(msg).is_ok()
    }
}
