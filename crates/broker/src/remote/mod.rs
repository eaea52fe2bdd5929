//! The queue channel's receiving end: what other nodes send this one. Commands for queues
//! that live here run against their local handles, each queue's in the order they arrived
//! (`lanes`), and answers go back by number; mail for connections here is handed to their
//! mailboxes. Mail that this
//! node's queues send to connections elsewhere leaves through a forwarder per connection
//! (this node's [`MailRouter`]): when that connection is gone, or its node cannot be reached,
//! the forwarder closes, and the queue treats the connection as gone (it requeues what the
//! connection had not acknowledged), exactly as for a local connection that closed.

mod lanes;
mod stopped;

pub use stopped::{answer_while_stopped, broker_frame};

use crate::mail::{ConnMsg, MailRouter, Mailbox, Mailboxes};
use crate::message::Message;
use crate::metadata::Metadata;
use crate::queue::QueueHandle;
use crate::queue::remote::Peers;
use crate::queue::wire::{Frame, Mail, QueueRef, WireMessage, decode, encode};
use crate::reply_to::ReplyConsumers;
use lanes::{Job, Lanes, Replier};
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
    lanes: Lanes,
    replier: Replier,
    replies: Arc<ReplyConsumers>,
}

impl Remote {
    pub fn new(
        peers: Arc<Peers>,
        meta: &Arc<Metadata>,
        post: Arc<Mailboxes>,
        replies: Arc<ReplyConsumers>,
    ) -> Arc<Remote> {
        Arc::new(Remote {
            replier: Replier {
                peers: peers.clone(),
                post: post.clone(),
            },
            peers,
            meta: Arc::downgrade(meta),
            post,
            forwarders: Mutex::new(HashMap::new()),
            lanes: Lanes::default(),
            replies,
        })
    }

    /// The queue a frame names, if it runs here.
    fn local(&self, q: &QueueRef) -> Option<QueueHandle> {
        let h = self.meta.upgrade()?.vhost(&q.vhost)?.queue(&q.name)?;
        (h.id() == q.id && h.is_local()).then_some(h)
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
                let job = Job { from, ask, cmd };
                match self.local(&queue) {
                    Some(h) if job.cmd.is_control() => {
                        self.replier.handle(Some(&h), queue.id, job).await;
                    }
                    Some(h) => self.lanes.push(h, job, &self.replier),
                    None => self.replier.handle(None, queue.id, job).await,
                }
            }
            Frame::Credit { queue, n } => self.peers.credit(from, queue, n),
            Frame::Reply { token, message } => {
                if let Some(m) = message.into_message() {
                    self.replies.deliver(&token, m);
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
                    self.replier.reply(from, Frame::NoConnection { conn }).await;
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
            Frame::Broker { running: true } => {
                if self.peers.node_up(from) {
                    tracing::info!(node = %self.peers.name_of(from), "node's broker runs again");
                }
            }
            Frame::Broker { running: false } => self.node_down(from),
        }
    }

    /// Sends a direct reply to its consumer on node `node`; false if that node cannot be
    /// reached.
    pub(crate) fn send_reply(&self, node: NodeId, token: &str, message: &Message) -> bool {
        if !self.peers.is_reachable(node) {
            return false;
        }
        let frame = Frame::Reply {
            token: token.to_owned(),
            message: WireMessage::of(message),
        };
        self.peers.send_in_order(node, encode(&frame));
        true
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
        tracing::info!(node = %self.peers.name_of(node), "node down or its broker stopped");
        self.replier.refuse(self.peers.node_down(node));
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
