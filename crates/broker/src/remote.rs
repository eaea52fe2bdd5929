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
                let delivered = self
                    .post
                    .get_local(conn)
                    .is_some_and(|mb| mb.send(mail.into_msg()).is_ok());
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
