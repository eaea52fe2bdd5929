//! What crosses the queue channel between two nodes, postcard-encoded: commands for a queue
//! that lives on the receiving node (and their answers), and mail for a connection that lives
//! there. These mirror the queue seam's own data (`queue::command`, `mail`) one for one; a
//! message travels as its exchange, routing key, raw properties and body.

use super::command::{GetReply, Ticket};
use super::state::{Command, Reply};
use crate::mail::{ConnMsg, Delivery};
use crate::message::{Body, Message};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use warren_amqp::{RawProperties, ShortStr};
use warren_meta::{ConnId, QueueId};

/// A queue, as a frame names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueRef {
    pub vhost: String,
    pub name: ShortStr,
    pub id: QueueId,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// A command for a queue on the receiving node; `ask` numbers one that wants an answer.
    Queue {
        queue: QueueRef,
        ask: Option<u64>,
        cmd: Cmd,
    },
    Answer {
        ask: u64,
        answer: Answer,
    },
    /// Mail for a connection on the receiving node.
    Mail {
        conn: ConnId,
        mail: Mail,
    },
    /// The connection named is not on the sending node (any more): mail for it stops.
    NoConnection {
        conn: ConnId,
    },
    /// Whether the sending node's broker runs: sent when it starts or stops, and whenever a
    /// link comes up, so that the other nodes know which queues they can reach.
    Broker {
        running: bool,
    },
    /// The sending node handed `n` publish frames from this node to queue `queue`: the
    /// publish window to it reopens by as many (see `Peers::publish`).
    Credit {
        queue: QueueId,
        n: u32,
    },
    /// A reply for the direct reply-to consumer `token` names, on the receiving node.
    Reply {
        token: String,
        message: WireMessage,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireMessage {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub properties: Bytes,
    pub body: Bytes,
}

impl WireMessage {
    pub(crate) fn of(m: &Message) -> WireMessage {
        WireMessage {
            exchange: m.exchange.clone(),
            routing_key: m.routing_key.clone(),
            properties: m.properties.as_bytes().clone(),
            body: m.body.to_bytes(),
        }
    }

    pub(crate) fn into_message(self) -> Option<Arc<Message>> {
        Some(Arc::new(Message {
            exchange: self.exchange,
            routing_key: self.routing_key,
            properties: RawProperties::new(self.properties).ok()?,
            body: Body::from_bytes(self.body),
        }))
    }
}

#[cfg(test)]
impl WireMessage {
    /// A small message to the default exchange, for tests.
    pub(crate) fn sample() -> WireMessage {
        WireMessage {
            exchange: "".into(),
            routing_key: "q".into(),
            properties: RawProperties::empty().as_bytes().clone(),
            body: Bytes::from_static(b"m"),
        }
    }
}

/// A command for a queue: the queue's own command, with messages in their wire form.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Cmd {
    Publish(Vec<(WireMessage, Option<Ticket>)>),
    Other(Command),
}

impl Cmd {
    /// `None` for the commands only a queue's own shell sends itself.
    pub(crate) fn of(cmd: Command) -> Option<Cmd> {
        match cmd {
            Command::Publish(batch) => Some(Cmd::Publish(
                batch
                    .into_iter()
                    .map(|(m, t)| (WireMessage::of(&m), t))
                    .collect(),
            )),
            Command::ConnectionGone { .. } | Command::NodeGone { .. } | Command::Synced(_) => None,
            other => Some(Cmd::Other(other)),
        }
    }

    /// A command as a quorum queue's log carries it: what another node may send, and what a
    /// queue's shell tells its own queue about connections and nodes that went (every
    /// replica must see those too). `None` for an fsync's end, which no replica has.
    pub(crate) fn logged(cmd: Command) -> Option<Cmd> {
        match cmd {
            Command::ConnectionGone { .. } | Command::NodeGone { .. } => Some(Cmd::Other(cmd)),
            cmd => Cmd::of(cmd),
        }
    }

    /// Settlements and credit: they never wait on the queue (they go to its control
    /// channel), and must not wait behind publishes either, since they are what lets a
    /// congested queue take more.
    pub(crate) fn is_control(&self) -> bool {
        matches!(
            self,
            Cmd::Other(Command::Settle(..) | Command::Credit { .. } | Command::Prefetch { .. })
        )
    }

    pub(crate) fn into_command(self) -> Command {
        match self {
            Cmd::Publish(batch) => Command::Publish(
                batch
                    .into_iter()
                    .filter_map(|(m, t)| Some((m.into_message()?, t)))
                    .collect(),
            ),
            Cmd::Other(cmd) => cmd,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireGot {
    pub seq: u64,
    pub message: WireMessage,
    pub redelivered: bool,
    pub remaining: u32,
}

/// A queue's answer: its own reply, with a message in its wire form.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    Got(Option<WireGot>),
    Other(Reply),
    /// The queue is not running on the node asked.
    Gone,
}

impl Answer {
    pub(crate) fn of(reply: Reply) -> Answer {
        match reply {
            Reply::Got(got) => Answer::Got(got.map(|g| WireGot {
                seq: g.seq,
                message: WireMessage::of(&g.message),
                redelivered: g.redelivered,
                remaining: g.remaining,
            })),
            other => Answer::Other(other),
        }
    }

    /// `None` if the queue was gone.
    pub(crate) fn into_reply(self) -> Option<Reply> {
        match self {
            Answer::Got(got) => Some(Reply::Got(got.and_then(|g| {
                Some(GetReply {
                    seq: g.seq,
                    message: g.message.into_message()?,
                    redelivered: g.redelivered,
                    remaining: g.remaining,
                })
            }))),
            Answer::Other(reply) => Some(reply),
            Answer::Gone => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireDelivery {
    pub channel: u16,
    pub channel_key: u64,
    pub consumer_tag: ShortStr,
    pub queue: Option<QueueId>,
    pub seq: u64,
    pub message: WireMessage,
    pub redelivered: bool,
    pub no_ack: bool,
    pub repeat: bool,
}

/// Mail for a connection: deliveries with their messages in wire form, anything else as it is.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Mail {
    Deliver(Vec<WireDelivery>),
    Other(ConnMsg),
}

impl Mail {
    pub(crate) fn of(msg: ConnMsg) -> Mail {
        match msg {
            ConnMsg::Deliver(ds) => Mail::Deliver(
                ds.into_iter()
                    .map(|d| WireDelivery {
                        channel: d.channel,
                        channel_key: d.channel_key,
                        consumer_tag: d.consumer_tag,
                        queue: d.queue,
                        seq: d.seq,
                        message: WireMessage::of(&d.message),
                        redelivered: d.redelivered,
                        no_ack: d.no_ack,
                        repeat: d.repeat,
                    })
                    .collect(),
            ),
            other => Mail::Other(other),
        }
    }

    pub(crate) fn into_msg(self) -> ConnMsg {
        match self {
            Mail::Deliver(ds) => ConnMsg::Deliver(
                ds.into_iter()
                    .filter_map(|d| {
                        Some(Delivery {
                            channel: d.channel,
                            channel_key: d.channel_key,
                            consumer_tag: d.consumer_tag,
                            queue: d.queue,
                            seq: d.seq,
                            message: d.message.into_message()?,
                            redelivered: d.redelivered,
                            no_ack: d.no_ack,
                            repeat: d.repeat,
                        })
                    })
                    .collect(),
            ),
            Mail::Other(msg) => msg,
        }
    }
}

pub(crate) fn encode(frame: &Frame) -> Bytes {
    warren_raft::messages::encode(frame)
}

pub(crate) fn decode(raw: &[u8]) -> Result<Frame, String> {
    postcard::from_bytes(raw).map_err(|e| format!("an unreadable queue frame: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{ConsumerSpec, Settle};
    use warren_meta::{NodeId, Uid};

    fn round_trip(frame: Frame) {
        let before = format!("{frame:?}");
        let after = decode(&encode(&frame)).expect("decodes");
        assert_eq!(format!("{after:?}"), before);
    }

    /// Every kind of frame comes back as it went, the commands, replies and mail that cross
    /// as themselves included (whose variants a reader numbers without the skipped ones).
    #[test]
    fn frames_come_back_as_they_went() {
        let conn = Uid {
            node: NodeId(3),
            n: 9,
        };
        let queue = QueueRef {
            vhost: "/".into(),
            name: "q".into(),
            id: Uid {
                node: NodeId(4),
                n: 1,
            },
        };
        let message = WireMessage {
            exchange: "x".into(),
            routing_key: "k".into(),
            properties: RawProperties::empty().as_bytes().clone(),
            body: Bytes::from_static(b"body"),
        };
        let ticket = Ticket {
            conn,
            channel: 1,
            channel_key: 2,
            seq: 3,
            commit: false,
        };
        let commands = [
            Cmd::Publish(vec![(message.clone(), Some(ticket))]),
            Cmd::Other(Command::Settle(vec![1, 2], Settle::Requeue)),
            Cmd::Other(Command::Credit { consumer: 1, n: 5 }),
            Cmd::Other(Command::Consume(ConsumerSpec {
                tag: "t".into(),
                conn,
                channel: 1,
                channel_key: 2,
                no_ack: false,
                prefetch: 10,
                exclusive: false,
                priority: 0,
                credit: 2048,
            })),
            Cmd::Other(Command::Purge),
            Cmd::Other(Command::Delete {
                if_unused: true,
                if_empty: false,
            }),
        ];
        for cmd in commands {
            round_trip(Frame::Queue {
                queue: queue.clone(),
                ask: Some(7),
                cmd,
            });
        }
        let answers = [
            Answer::Other(Reply::Done),
            Answer::Other(Reply::Counts {
                messages: 3,
                unacked: 2,
                consumers: 1,
            }),
            Answer::Other(Reply::Deleted(Ok(4))),
            Answer::Got(Some(WireGot {
                seq: 1,
                message: message.clone(),
                redelivered: true,
                remaining: 0,
            })),
            Answer::Gone,
        ];
        for answer in answers {
            round_trip(Frame::Answer { ask: 7, answer });
        }
        let mail = [
            Mail::Other(ConnMsg::Confirmed {
                channel: 1,
                channel_key: 2,
                seqs: vec![3],
                ok: true,
            }),
            Mail::Other(ConnMsg::ConsumerGone {
                channel: 1,
                channel_key: 2,
                consumer_tag: "t".into(),
            }),
            Mail::Deliver(vec![WireDelivery {
                channel: 1,
                channel_key: 2,
                consumer_tag: "t".into(),
                queue: Some(queue.id),
                seq: 5,
                message: message.clone(),
                redelivered: false,
                no_ack: true,
                repeat: true,
            }]),
        ];
        for mail in mail {
            round_trip(Frame::Mail { conn, mail });
        }
        round_trip(Frame::NoConnection { conn });
        round_trip(Frame::Broker { running: false });
        round_trip(Frame::Credit {
            queue: queue.id,
            n: 1,
        });
        round_trip(Frame::Reply {
            token: "t".into(),
            message,
        });
    }
}
