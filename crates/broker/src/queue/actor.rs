//! The queue actor: one task per queue that owns its messages and consumers.
//!
//! Commands arrive on a bounded mailbox (publishers wait when it is full, which is how a fast
//! producer is slowed to the pace of the queue). After each batch of commands the queue hands
//! ready messages to consumers that have credit, one message at a time in consumer-priority
//! order and round-robin among equals, sends each connection its deliveries as one batch, and
//! starts an fsync of whatever it wrote to disk.
//!
//! Persistent messages in a durable queue go to the queue's log as they arrive, and their
//! publishers are confirmed once an fsync covers them. Any queue also writes messages to its log
//! instead of memory once it holds more than its memory allowance (see `ready`).

use super::command::{ConsumerSpec, GetReply, QueueCmd, Settle};
use super::handle::QueueHandle;
use super::ready::{Entry, Ready, to_stored};
use super::storage::{Storage, StoreConfig, Ticket, settle};
use crate::error::AmqpError;
use crate::mailbox::{ConnHandle, ConnMsg, Delivery};
use crate::message::Message;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use warren_store::QueueLog;

/// Commands handled before the queue looks at its consumers again.
const BATCH: usize = 256;

/// Called when an auto-delete queue loses its last consumer, to take it out of its vhost.
pub type AutoDeleteHook = Box<dyn Fn(&QueueHandle) + Send + Sync>;

struct Unacked {
    entry: Entry,
    /// The connection and channel it went to: if that channel closes, it is requeued.
    owner: (u64, u64),
    consumer: Option<u64>,
}

struct Consumer {
    id: u64,
    spec: ConsumerSpec,
    unacked: u32,
}

impl Consumer {
    fn owned_by(&self, conn_id: u64, channel_key: u64) -> bool {
        self.spec.conn.id == conn_id && self.spec.channel_key == channel_key
    }

    /// Takes the credit one delivery needs, or none at all.
    fn take_credit(&mut self, queue: &QueueHandle) -> bool {
        let spec = &self.spec;
        if !spec.no_ack && spec.prefetch != 0 && self.unacked >= spec.prefetch {
            return false;
        }
        if !spec.conn.backlog.acquire_or_wait(queue) {
            return false;
        }
        if !spec.no_ack && !spec.channel_limiter.acquire_or_wait(queue) {
            spec.conn.backlog.release(1);
            return false;
        }
        true
    }
}

/// What the queue starts with: an empty queue, or what its log held at start-up.
pub struct Start {
    pub store: StoreConfig,
    pub storage: Option<Storage>,
    pub ready: Ready,
    pub next_seq: u64,
}

pub struct QueueActor {
    handle: QueueHandle,
    rx: mpsc::Receiver<QueueCmd>,
    ready: Ready,
    unacked: HashMap<u64, Unacked>,
    /// Highest priority first; within a priority, the next to serve first.
    consumers: Vec<Consumer>,
    next_seq: u64,
    next_consumer_id: u64,
    had_consumers: bool,
    auto_delete_hook: Option<AutoDeleteHook>,
    store: StoreConfig,
    /// The queue's log, once it has one (durable queues always do).
    storage: Option<Storage>,
}

impl QueueActor {
    pub fn new(
        handle: QueueHandle,
        rx: mpsc::Receiver<QueueCmd>,
        auto_delete_hook: Option<AutoDeleteHook>,
        start: Start,
    ) -> Self {
        QueueActor {
            handle,
            rx,
            ready: start.ready,
            unacked: HashMap::new(),
            consumers: Vec::new(),
            next_seq: start.next_seq.max(1),
            next_consumer_id: 1,
            had_consumers: false,
            auto_delete_hook,
            store: start.store,
            storage: start.storage,
        }
    }

    pub async fn run(mut self) {
        while let Some(cmd) = self.rx.recv().await {
            if !self.handle_cmd(cmd) {
                return self.stop();
            }
            for _ in 0..BATCH {
                match self.rx.try_recv() {
                    Ok(cmd) => {
                        if !self.handle_cmd(cmd) {
                            return self.stop();
                        }
                    }
                    Err(_) => break,
                }
            }
            self.dispatch();
            self.flush_disk();
            if self.handle.info().auto_delete && self.had_consumers && self.consumers.is_empty() {
                if let Some(hook) = &self.auto_delete_hook {
                    hook(&self.handle);
                }
                return self.stop();
            }
        }
    }

    /// The queue was deleted: its log goes, and publishes still waiting for disk are nacked.
    fn stop(&mut self) {
        if let Some(mut s) = self.storage.take() {
            s.abandon();
            if let Err(e) = s.log.destroy() {
                tracing::warn!(queue = %self.handle.name(), error = %e, "cannot remove the queue's files");
            }
        }
    }

    fn log(&mut self) -> Option<&mut QueueLog> {
        self.storage.as_mut().map(|s| &mut s.log)
    }

    /// Writes out acknowledgement marks and starts an fsync of new messages.
    fn flush_disk(&mut self) {
        let name = self.handle.name().clone();
        let tx = self.handle.sender();
        if let Some(s) = &mut self.storage {
            if let Err(e) = s.log.write_marks() {
                tracing::warn!(queue = %name, error = %e, "cannot record acknowledgements");
            }
            s.start_sync(&tx);
        }
    }

    /// The queue's log, opened on first use by a queue that had none.
    fn storage(&mut self) -> Option<&mut Storage> {
        if self.storage.is_none() {
            match QueueLog::open(&self.store.dir, self.store.segment_bytes) {
                Ok((log, _)) => self.storage = Some(Storage::new(log)),
                Err(e) => {
                    tracing::error!(queue = %self.handle.name(), error = %e, "cannot open the queue's log");
                    return None;
                }
            }
        }
        self.storage.as_mut()
    }

    fn publish(&mut self, message: Arc<Message>, ticket: Option<Ticket>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let durable = self.handle.info().durable && message.properties.is_persistent();
        let size = message.body_size();
        let to_disk =
            self.ready.tail_on_disk() || self.ready.mem_bytes() + size > self.store.memory_bytes;
        if !durable && !to_disk {
            settle(ticket.into_iter().collect(), true);
            self.ready.push_mem(Entry {
                seq,
                message,
                redelivered: false,
                pos: None,
            });
            return;
        }
        let Some(storage) = self.storage() else {
            // No disk to be had: keep it in memory, and refuse what needed to be durable.
            settle(ticket.into_iter().collect(), !durable);
            self.ready.push_mem(Entry {
                seq,
                message,
                redelivered: false,
                pos: None,
            });
            return;
        };
        match storage.log.append(&to_stored(seq, &message, durable)) {
            Ok(pos) => {
                if durable {
                    storage.appended(ticket);
                } else {
                    storage.appended(None);
                    settle(ticket.into_iter().collect(), true);
                }
                if to_disk {
                    self.ready.push_disk(pos, size);
                } else {
                    self.ready.push_mem(Entry {
                        seq,
                        message,
                        redelivered: false,
                        pos: Some(pos),
                    });
                }
            }
            Err(e) => {
                tracing::error!(queue = %self.handle.name(), error = %e, "cannot write a message to disk");
                settle(ticket.into_iter().collect(), false);
                self.ready.push_mem(Entry {
                    seq,
                    message,
                    redelivered: false,
                    pos: None,
                });
            }
        }
    }

    /// Takes the next ready message, from memory or disk.
    fn pop_ready(&mut self) -> Option<Entry> {
        let name = self.handle.name().clone();
        let log = self.storage.as_mut().map(|s| &mut s.log);
        self.ready.pop(log, &name)
    }

    /// A message leaves the queue for good (acknowledged, dropped, or consumed without ack).
    fn done(&mut self, entry: &Entry) {
        if let (Some(pos), Some(log)) = (entry.pos, self.log()) {
            log.ack(&pos);
        }
    }

    /// Handles one command; false when the queue has been deleted and must stop.
    fn handle_cmd(&mut self, cmd: QueueCmd) -> bool {
        match cmd {
            QueueCmd::Publish { message, ticket } => self.publish(message, ticket),
            QueueCmd::Synced(ok) => {
                let name = self.handle.name().to_string();
                if let Some(s) = &mut self.storage {
                    s.synced(ok, &name);
                }
            }
            QueueCmd::Settle { seqs, how } => self.settle(seqs, how),
            QueueCmd::Wake => {}
            QueueCmd::Consume { consumer, reply } => {
                let _ = reply.send(self.add_consumer(consumer));
            }
            QueueCmd::Cancel {
                conn_id,
                channel_key,
                tag,
                reply,
            } => {
                self.consumers
                    .retain(|c| !(c.owned_by(conn_id, channel_key) && c.spec.tag == tag));
                let _ = reply.send(());
            }
            QueueCmd::ChannelClosed {
                conn_id,
                channel_key,
            } => self.channel_closed(conn_id, channel_key),
            QueueCmd::Get {
                conn_id,
                channel_key,
                no_ack,
                reply,
            } => {
                let got = self.pop_ready().map(|entry| {
                    let r = GetReply {
                        seq: entry.seq,
                        message: entry.message.clone(),
                        redelivered: entry.redelivered,
                        remaining: self.ready.len() as u32,
                    };
                    if no_ack {
                        self.done(&entry);
                    } else {
                        if let (Some(pos), Some(log)) = (entry.pos, self.log()) {
                            log.delivered(&pos);
                        }
                        self.unacked.insert(
                            entry.seq,
                            Unacked {
                                entry,
                                owner: (conn_id, channel_key),
                                consumer: None,
                            },
                        );
                    }
                    r
                });
                let _ = reply.send(got);
            }
            QueueCmd::Purge { reply } => {
                let log = self.storage.as_mut().map(|s| &mut s.log);
                let n = self.ready.purge(log);
                let _ = reply.send(n as u32);
            }
            QueueCmd::Counts { reply } => {
                let _ = reply.send((self.ready.len() as u32, self.consumers.len() as u32));
            }
            QueueCmd::Delete {
                if_unused,
                if_empty,
                reply,
            } => {
                let info = self.handle.info();
                if if_unused && !self.consumers.is_empty() {
                    let _ = reply.send(Err(AmqpError::precondition_failed(format!(
                        "queue '{}' in vhost '{}' in use",
                        info.name, info.vhost
                    ))));
                    return true;
                }
                if if_empty && !self.ready.is_empty() {
                    let _ = reply.send(Err(AmqpError::precondition_failed(format!(
                        "queue '{}' in vhost '{}' not empty",
                        info.name, info.vhost
                    ))));
                    return true;
                }
                for c in self.consumers.drain(..) {
                    c.spec.conn.send(ConnMsg::ConsumerGone {
                        channel: c.spec.channel,
                        channel_key: c.spec.channel_key,
                        consumer_tag: c.spec.tag.clone(),
                    });
                }
                let _ = reply.send(Ok(self.ready.len() as u32));
                return false;
            }
        }
        true
    }

    fn add_consumer(&mut self, spec: ConsumerSpec) -> Result<(), AmqpError> {
        let info = self.handle.info();
        let exclusive_taken = self.consumers.iter().any(|c| c.spec.exclusive);
        if exclusive_taken || (spec.exclusive && !self.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                info.name, info.vhost
            )));
        }
        let at = self
            .consumers
            .iter()
            .position(|c| c.spec.priority < spec.priority)
            .unwrap_or(self.consumers.len());
        let id = self.next_consumer_id;
        self.next_consumer_id += 1;
        self.consumers.insert(
            at,
            Consumer {
                id,
                spec,
                unacked: 0,
            },
        );
        self.had_consumers = true;
        Ok(())
    }

    fn settle(&mut self, seqs: Vec<u64>, how: Settle) {
        let mut back = Vec::new();
        for seq in seqs {
            let Some(u) = self.unacked.remove(&seq) else {
                continue;
            };
            if let Some(cid) = u.consumer {
                if let Some(c) = self.consumers.iter_mut().find(|c| c.id == cid) {
                    c.unacked = c.unacked.saturating_sub(1);
                }
            }
            if how == Settle::Requeue {
                back.push(u.entry);
            } else {
                self.done(&u.entry);
            }
        }
        self.ready.requeue(back);
    }

    fn channel_closed(&mut self, conn_id: u64, channel_key: u64) {
        self.consumers.retain(|c| !c.owned_by(conn_id, channel_key));
        let seqs: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.owner == (conn_id, channel_key))
            .map(|(s, _)| *s)
            .collect();
        let back = seqs
            .into_iter()
            .filter_map(|s| self.unacked.remove(&s))
            .map(|u| u.entry)
            .collect();
        self.ready.requeue(back);
    }

    /// The first consumer, in priority and round-robin order, that can take a message.
    fn pick_consumer(&mut self) -> Option<usize> {
        let handle = &self.handle;
        self.consumers
            .iter_mut()
            .position(|c| c.take_credit(handle))
    }

    /// Moves the consumer just served behind the others of its priority.
    fn rotate(&mut self, i: usize) {
        let p = self.consumers[i].spec.priority;
        let end = i + self.consumers[i..]
            .iter()
            .take_while(|c| c.spec.priority == p)
            .count();
        self.consumers[i..end].rotate_left(1);
    }

    fn dispatch(&mut self) {
        let mut batches: Vec<(ConnHandle, Vec<Delivery>)> = Vec::new();
        while !self.ready.is_empty() && !self.consumers.is_empty() {
            let Some(i) = self.pick_consumer() else {
                break;
            };
            let Some(entry) = self.pop_ready() else {
                // Nothing readable after all: give the credit back.
                let c = &self.consumers[i];
                c.spec.conn.backlog.release(1);
                if !c.spec.no_ack {
                    c.spec.channel_limiter.release(1);
                }
                break;
            };
            let no_ack = self.consumers[i].spec.no_ack;
            if no_ack {
                self.done(&entry);
            } else if let (Some(pos), Some(log)) = (entry.pos, self.log()) {
                log.delivered(&pos);
            }
            let c = &mut self.consumers[i];
            let delivery = Delivery {
                channel: c.spec.channel,
                channel_key: c.spec.channel_key,
                consumer_tag: c.spec.tag.clone(),
                queue: Some(self.handle.clone()),
                seq: entry.seq,
                message: entry.message.clone(),
                redelivered: entry.redelivered,
                no_ack,
            };
            if !no_ack {
                c.unacked += 1;
                self.unacked.insert(
                    entry.seq,
                    Unacked {
                        entry,
                        owner: (c.spec.conn.id, c.spec.channel_key),
                        consumer: Some(c.id),
                    },
                );
            }
            match batches.iter_mut().find(|(h, _)| h.id == c.spec.conn.id) {
                Some((_, b)) => b.push(delivery),
                None => batches.push((c.spec.conn.clone(), vec![delivery])),
            }
            self.rotate(i);
        }
        for (conn, batch) in batches {
            if let Err(mpsc::error::SendError(ConnMsg::Deliver(lost))) =
                conn.tx.send(ConnMsg::Deliver(batch))
            {
                // The connection is gone without telling us; take back what it never got.
                self.consumers.retain(|c| c.spec.conn.id != conn.id);
                let seqs = lost.iter().filter(|d| !d.no_ack).map(|d| d.seq).collect();
                self.settle(seqs, Settle::Requeue);
            }
        }
    }
}
