//! The queue channel's receiving end: what other nodes send this one. Commands for queues
//! that live here run against their local handles, in the order they arrived, and answers go
//! back by number; mail for connections here is handed to their mailboxes. Mail that this
//! node's queues send to connections elsewhere leaves through a forwarder per connection
//! (this node's [`MailRouter`]): when that connection is gone, or its node cannot be reached,
//! the forwarder closes, and the queue treats the connection as gone (it requeues what the
//! connection had not acknowledged), exactly as for a local connection that closed.

use crate::mail::{ConnMsg, MailRouter, Mailbox, Mailboxes};
use crate::metadata::Metadata;
use crate::queue::remote::Peers;
use crate::queue::state::{Command, Reply};
use crate::queue::wire::{Answer, Cmd, Frame, Mail, QueueRef, decode, encode};
use crate::queue::{QueueHandle, Ticket, ticket_mail};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use warren_meta::{ConnId, NodeId};

pub struct Remote {
    peers: Arc<Peers>,
    meta: Weak<Metadata>,
    post: Arc<Mailboxes>,
    forwarders: Mutex<HashMap<ConnId, (Mailbox, AbortHandle)>>,
}

impl Remote {
    pub fn new(peers: Arc<Peers>, meta: &Arc<Metadata>, post: Arc<Mailboxes>) -> Arc<Remote> {
        Arc::new(Remote {
            peers,
            meta: Arc::downgrade(meta),
            post,
            forwarders: Mutex::new(HashMap::new()),
        })
    }

    /// The queue a frame names, if it runs here.
    fn local(&self, q: &QueueRef) -> Option<QueueHandle> {
        let h = self.meta.upgrade()?.vhost(&q.vhost)?.queue(&q.name)?;
        (h.id() == q.id && h.is_local()).then_some(h)
    }

    async fn reply(&self, to: NodeId, frame: Frame) {
        self.peers.links().send(to, encode(&frame)).await;
    }

    /// Handles one frame from node `from`.
    pub async fn receive(&self, from: NodeId, raw: &[u8]) {
        let frame = match decode(raw) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a queue frame");
                return;
            }
        };
        match frame {
            Frame::Queue { queue, ask, cmd } => {
                let answer = match self.local(&queue) {
                    Some(h) => self.run(&h, cmd, ask.is_some()).await,
                    None => {
                        if let Cmd::Publish(batch) = cmd {
                            self.refuse(batch.into_iter().filter_map(|(_, t)| t).collect());
                        }
                        Answer::Gone
                    }
                };
                if let Some(ask) = ask {
                    self.reply(from, Frame::Answer { ask, answer }).await;
                }
            }
            Frame::Answer { ask, answer } => self.peers.answered(ask, answer),
            Frame::Mail { conn, mail } => {
                let msg = mail.into_msg();
                self.peers.tickets_answered(from, conn, &msg);
                let delivered = self
                    .post
                    .get_local(conn)
                    .is_some_and(|mb| mb.send(msg).is_ok());
                if !delivered {
                    self.reply(from, Frame::NoConnection { conn }).await;
                }
            }
            Frame::NoConnection { conn } => {
                let gone = self
                    .forwarders
                    .lock()
                    .ok()
                    .and_then(|mut f| f.remove(&conn));
                if let Some((_, task)) = gone {
                    task.abort();
                }
            }
            Frame::Broker { running: true } => self.peers.node_up(from),
            Frame::Broker { running: false } => self.node_down(from),
        }
    }

    /// The link to node `from` ended, after everything it delivered was handled here.
    pub fn link_ended(&self, from: NodeId) {
        self.node_down(from);
    }

    /// Node `node`'s broker stopped or cannot be reached, and nothing more will come from it:
    /// publishes it had not confirmed are refused, connections here lose their consumers of
    /// its queues (basic.cancel), queues here forget its connections (requeueing what they
    /// had not acknowledged), and mail for those connections stops.
    fn node_down(&self, node: NodeId) {
        self.refuse(self.peers.node_down(node));
        let gone: Vec<AbortHandle> = self
            .forwarders
            .lock()
            .map(|mut f| {
                let conns: Vec<ConnId> = f.keys().filter(|c| c.node == node).copied().collect();
                conns
                    .into_iter()
                    .filter_map(|c| f.remove(&c))
                    .map(|(_, task)| task)
                    .collect()
            })
            .unwrap_or_default();
        for task in gone {
            task.abort();
        }
        for mb in self.post.locals() {
            let _ = mb.send(ConnMsg::NodeDown { node });
        }
        if let Some(meta) = self.meta.upgrade() {
            meta.node_gone(node);
        }
    }

    /// Answers publishers whose messages could not be enqueued.
    fn refuse(&self, tickets: Vec<Ticket>) {
        for (conn, mail) in ticket_mail(tickets, false) {
            if let Some(mb) = self.post.get(conn) {
                let _ = mb.send(mail);
            }
        }
    }

    async fn run(&self, h: &QueueHandle, cmd: Cmd, ask: bool) -> Answer {
        match cmd.into_command() {
            Command::Publish(batch) => {
                if let Err(back) = h.publish_batch(batch).await {
                    self.refuse(back.into_iter().filter_map(|(_, t)| t).collect());
                }
                Answer::Other(Reply::Done)
            }
            cmd => h
                .run_for_peer(cmd, ask)
                .await
                .map_or(Answer::Gone, Answer::of),
        }
    }
}

/// The frame that tells other nodes whether this node's broker runs.
pub fn broker_frame(running: bool) -> bytes::Bytes {
    encode(&Frame::Broker { running })
}

/// What a node whose broker does not run (after `stop_app`) answers a frame on the queue
/// channel: a command that asks is told the queue is gone, publishers waiting on tickets are
/// refused, and mail for a connection is answered with "no such connection".
pub fn answer_while_stopped(raw: &[u8]) -> Vec<bytes::Bytes> {
    let Ok(frame) = decode(raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match frame {
        Frame::Queue { ask, cmd, .. } => {
            if let Cmd::Publish(batch) = cmd {
                let tickets = batch.into_iter().filter_map(|(_, t)| t).collect();
                for (conn, msg) in ticket_mail(tickets, false) {
                    out.push(Frame::Mail {
                        conn,
                        mail: Mail::of(msg),
                    });
                }
            }
            if let Some(ask) = ask {
                out.push(Frame::Answer {
                    ask,
                    answer: Answer::Gone,
                });
            }
        }
        Frame::Mail { conn, .. } => out.push(Frame::NoConnection { conn }),
        Frame::Answer { .. } | Frame::NoConnection { .. } | Frame::Broker { .. } => {}
    }
    out.iter().map(encode).collect()
}

impl MailRouter for Remote {
    fn mailbox_for(&self, conn: ConnId) -> Option<Mailbox> {
        let mut forwarders = self.forwarders.lock().ok()?;
        if let Some((mb, _)) = forwarders.get(&conn) {
            if !mb.is_closed() {
                return Some(mb.clone());
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<ConnMsg>();
        let links = self.peers.links().clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let frame = Frame::Mail {
                    conn,
                    mail: Mail::of(msg),
                };
                if !links.send(conn.node, encode(&frame)).await {
                    break;
                }
            }
        });
        forwarders.insert(conn, (tx.clone(), task.abort_handle()));
        Some(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::wire::WireMessage;
    use warren_meta::Uid;

    /// A node whose broker is stopped answers at once: an ask with "gone", a publish's
    /// tickets with a refusal, mail with "no such connection".
    #[test]
    fn a_stopped_broker_answers_what_waits_for_it() {
        let conn = Uid {
            node: NodeId(1),
            n: 2,
        };
        let ticket = Ticket {
            conn,
            channel: 1,
            channel_key: 3,
            seq: 7,
            commit: false,
        };
        let message = WireMessage {
            exchange: "".into(),
            routing_key: "q".into(),
            properties: warren_amqp::RawProperties::empty().as_bytes().clone(),
            body: bytes::Bytes::from_static(b"m"),
        };
        let queue = QueueRef {
            vhost: "/".into(),
            name: "q".into(),
            id: conn,
        };
        let publish = Frame::Queue {
            queue,
            ask: Some(4),
            cmd: Cmd::Publish(vec![(message, Some(ticket))]),
        };
        let replies: Vec<String> = answer_while_stopped(&encode(&publish))
            .iter()
            .map(|r| format!("{:?}", decode(r).unwrap()))
            .collect();
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert!(replies[0].contains("Confirmed") && replies[0].contains("seqs: [7], ok: false"));
        assert!(replies[1].contains("Answer { ask: 4, answer: Gone }"));
        let mail = Frame::Mail {
            conn,
            mail: Mail::of(ConnMsg::Close {
                code: 320,
                text: "bye".into(),
            }),
        };
        let replies = answer_while_stopped(&encode(&mail));
        assert!(matches!(
            decode(&replies[0]),
            Ok(Frame::NoConnection { conn: c }) if c == conn
        ));
        assert!(answer_while_stopped(b"\xff\xff").is_empty(), "garbage");
    }
}
