//! Direct reply-to (`amq.rabbitmq.reply-to`): the channels consuming from it, by the token in
//! their address. The token starts with the consumer's node, as RabbitMQ's encodes the
//! consumer's process, so that a reply published on any node of the cluster finds its way:
//! to the consumer here, or over the cluster's queue channel to its node.

use crate::mail::{ConnHandle, ConnMsg, Delivery};
use crate::message::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use warren_amqp::ShortStr;
use warren_meta::NodeId;

/// A channel consuming from `amq.rabbitmq.reply-to`.
#[derive(Debug, Clone)]
pub struct ReplyConsumer {
    pub conn: ConnHandle,
    pub channel: u16,
    pub channel_key: u64,
    pub consumer_tag: ShortStr,
}

/// This node's reply consumers, by token.
#[derive(Debug, Default)]
pub struct ReplyConsumers(Mutex<HashMap<String, ReplyConsumer>>);

impl ReplyConsumers {
    /// A new token for a consumer on node `node`.
    pub fn token(node: NodeId) -> String {
        format!("{node}.{}", crate::names::random_token())
    }

    /// The node a token's consumer is on (none: not a token this cluster made).
    pub fn node_of(token: &str) -> Option<NodeId> {
        let (node, _) = token.split_once('.')?;
        u64::from_str_radix(node, 16).ok().map(NodeId)
    }

    pub fn register(&self, token: String, consumer: ReplyConsumer) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(token, consumer);
        }
    }

    pub fn remove(&self, token: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(token);
        }
    }

    /// Hands a reply to the consumer on this node that `token` names; false if there is none.
    pub fn deliver(&self, token: &str, message: Arc<Message>) -> bool {
        let target = self.0.lock().ok().and_then(|m| m.get(token).cloned());
        let Some(target) = target else {
            return false;
        };
        target.conn.send(ConnMsg::Deliver(vec![Delivery {
            channel: target.channel,
            channel_key: target.channel_key,
            consumer_tag: target.consumer_tag,
            queue: None,
            seq: 0,
            message,
            redelivered: false,
            no_ack: true,
            repeat: false,
        }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_node() {
        let node = NodeId(0x00ab_cdef_0123_4567);
        let token = ReplyConsumers::token(node);
        assert_eq!(ReplyConsumers::node_of(&token), Some(node));
        assert_eq!(ReplyConsumers::node_of("nonsense"), None);
        assert_eq!(ReplyConsumers::node_of("zz.abc"), None);
    }
}
