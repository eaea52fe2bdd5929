//! The queue actor: one task per queue that owns its messages and consumers.
//!
//! Commands arrive on a bounded mailbox (publishers wait when it is full, which is how a fast
//! producer is slowed to the pace of the queue). After each batch of commands the queue drops
//! expired messages from its head, hands ready messages to consumers that have credit (one
//! message at a time in consumer-priority order, round-robin among equals), sends each
//! connection its deliveries as one batch, and starts an fsync of whatever it wrote to disk.
//! Between batches it sleeps until a command arrives or its next deadline (a message or the
//! queue itself expiring).
//!
//! Persistent messages in a durable queue go to the queue's log as they arrive, and their
//! publishers are confirmed once an fsync covers them. Any queue also writes messages to its log
//! instead of memory once it holds more than its memory allowance (see `ready`).

use super::command::{ConsumerSpec, GetReply, QueueCmd, Settle};
use super::deadletter::{DeadLetterSink, Reason, dead_letter};
use super::flow::DrainRate;
use super::handle::QueueHandle;
use super::ready::{Entry, Ready, to_stored};
use super::storage::{Storage, StoreConfig, Ticket, settle};
use crate::connection::mail::{ConnHandle, ConnMsg, Delivery};
use crate::message::Message;
use foldhash::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use warren_amqp::AmqpError;
use warren_meta::{ConnId, Overflow};
use warren_store::QueueLog;

/// Commands handled before the queue looks at its consumers again.
const BATCH: usize = 256;

/// Called when the queue removes itself (auto-delete, or x-expires), to take it out of its
/// vhost.
pub type OnRemove = Arc<dyn Fn(&QueueHandle) + Send + Sync>;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Unacked {
    entry: Entry,
    /// The connection and channel it went to: if that channel closes, it is requeued.
    owner: (ConnId, u64),
    consumer: Option<u64>,
}

struct Consumer {
    id: u64,
    spec: ConsumerSpec,
    unacked: u32,
}

impl Consumer {
    fn owned_by(&self, conn_id: ConnId, channel_key: u64) -> bool {
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

    fn give_back_credit(&self) {
        self.spec.conn.backlog.release(1);
        if !self.spec.no_ack {
            self.spec.channel_limiter.release(1);
        }
    }
}

/// Why a queue's actor ends.
enum End {
    /// Deleted (by a client, auto-delete, x-expires, or its vhost going): its log goes.
    Deleted,
    /// Stopped with its node: its log stays. Whoever asked is told once it is written.
    ShutDown(Option<oneshot::Sender<()>>),
}

/// What the queue starts with: an empty queue, or what its log held at start-up.
pub struct Start {
    pub store: StoreConfig,
    pub storage: Option<Storage>,
    /// Ready messages by priority level (a single level for most queues).
    pub levels: Vec<Ready>,
    pub next_seq: u64,
    pub on_remove: OnRemove,
    pub dead_letters: DeadLetterSink,
}

pub struct QueueActor {
    handle: QueueHandle,
    rx: mpsc::Receiver<QueueCmd>,
    settles: mpsc::UnboundedReceiver<(Vec<u64>, Settle)>,
    /// Ready messages by priority level (one level unless x-max-priority is set).
    levels: Vec<Ready>,
    unacked: HashMap<u64, Unacked>,
    /// Highest priority first; within a priority, the next to serve first.
    consumers: Vec<Consumer>,
    next_seq: u64,
    next_consumer_id: u64,
    had_consumers: bool,
    /// Last time the queue was used, for x-expires.
    last_used: Instant,
    /// How fast consumers take messages, for flow control.
    drain: DrainRate,
    on_remove: OnRemove,
    dead_letters: DeadLetterSink,
    store: StoreConfig,
    /// The queue's log, once it has one (durable queues always do).
    storage: Option<Storage>,
}

impl QueueActor {
    pub fn new(
        handle: QueueHandle,
        rx: mpsc::Receiver<QueueCmd>,
        settles: mpsc::UnboundedReceiver<(Vec<u64>, Settle)>,
        start: Start,
    ) -> Self {
        let n = handle
            .queue()
            .args
            .max_priority
            .map_or(1, |p| p as usize + 1);
        let mut levels = start.levels;
        levels.resize_with(n, Ready::default);
        QueueActor {
            handle,
            rx,
            settles,
            levels,
            unacked: HashMap::default(),
            consumers: Vec::new(),
            next_seq: start.next_seq.max(1),
            next_consumer_id: 1,
            had_consumers: false,
            last_used: Instant::now(),
            drain: DrainRate::new(std::time::Instant::now()),
            on_remove: start.on_remove,
            dead_letters: start.dead_letters,
            store: start.store,
            storage: start.storage,
        }
    }

    pub async fn run(mut self) {
        loop {
            let deadline = self.next_deadline();
            let first = tokio::select! {
                biased;
                settle = self.settles.recv() => {
                    if let Some((seqs, how)) = settle {
                        self.settle(seqs, how);
                    }
                    None
                }
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => Some(cmd),
                    // Nobody can reach the queue any more: it stops, and keeps its log.
                    None => return self.end(End::ShutDown(None)),
                },
                _ = sleep_until(deadline) => None,
            };
            while let Ok((seqs, how)) = self.settles.try_recv() {
                self.settle(seqs, how);
            }
            if let Some(cmd) = first {
                if let Some(end) = self.handle_cmd(cmd) {
                    return self.end(end);
                }
                for _ in 0..BATCH {
                    // A command sent after an acknowledgement must see it done.
                    while let Ok((seqs, how)) = self.settles.try_recv() {
                        self.settle(seqs, how);
                    }
                    match self.rx.try_recv() {
                        Ok(cmd) => {
                            if let Some(end) = self.handle_cmd(cmd) {
                                return self.end(end);
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            self.expire_head();
            self.dispatch();
            self.flush_disk();
            let consuming =
                !self.consumers.is_empty() && self.drain.fast(std::time::Instant::now());
            self.handle.flow().update(self.ready_len(), consuming);
            if self.should_remove() {
                (self.on_remove)(&self.handle);
                return self.end(End::Deleted);
            }
        }
    }

    /// Auto-delete after the last consumer, or x-expires after a quiet spell.
    fn should_remove(&self) -> bool {
        let info = self.handle.queue();
        if !self.consumers.is_empty() {
            return false;
        }
        if info.auto_delete && self.had_consumers {
            return true;
        }
        info.args
            .expires
            .is_some_and(|ms| self.last_used.elapsed() >= Duration::from_millis(ms))
    }

    /// When the queue must next wake up without a command: its head message expiring, or
    /// the queue itself.
    fn next_deadline(&mut self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if let Some(ms) = self.handle.queue().args.expires {
            if self.consumers.is_empty() {
                earliest(self.last_used + Duration::from_millis(ms));
            }
        }
        let now = now_ms();
        let name = self.handle.name().clone();
        let log = self.storage.as_mut().map(|s| &mut s.log);
        if let Some(level) = self.levels.iter_mut().rev().find(|l| !l.is_empty()) {
            if let Some(head) = level.head(log, &name) {
                if head.expires_at != 0 {
                    earliest(
                        Instant::now() + Duration::from_millis(head.expires_at.saturating_sub(now)),
                    );
                }
            }
        }
        at
    }

    /// The actor's last act. Deleting a queue and stopping it are different ends: a deleted
    /// queue's log goes; a queue stopped with its node keeps every record, so that a durable
    /// queue comes back with its messages. Either way, publishes still waiting for an fsync are
    /// nacked (they were never confirmed).
    fn end(&mut self, why: End) {
        let Some(mut s) = self.storage.take() else {
            if let End::ShutDown(Some(done)) = why {
                let _ = done.send(());
            }
            return;
        };
        s.abandon();
        match why {
            End::Deleted => {
                if let Err(e) = s.log.destroy() {
                    tracing::warn!(queue = %self.handle.name(), error = %e, "cannot remove the queue's files");
                }
            }
            End::ShutDown(done) => {
                // Hand what is written to the OS; the files are closed when the log drops.
                if let Err(e) = s.log.write_marks().and_then(|()| s.log.flush()) {
                    tracing::warn!(queue = %self.handle.name(), error = %e, "cannot write the queue's log at shutdown");
                }
                drop(s);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }

    fn log(&mut self) -> Option<&mut QueueLog> {
        self.storage.as_mut().map(|s| &mut s.log)
    }

    fn ready_len(&self) -> u64 {
        self.levels.iter().map(Ready::len).sum()
    }

    fn ready_bytes(&self) -> u64 {
        self.levels.iter().map(Ready::bytes).sum()
    }

    fn mem_bytes(&self) -> u64 {
        self.levels.iter().map(Ready::mem_bytes).sum()
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
            match QueueLog::open(&self.store.dir, self.store.segment_bytes, 1) {
                Ok((log, _)) => self.storage = Some(Storage::new(log)),
                Err(e) => {
                    tracing::error!(queue = %self.handle.name(), error = %e, "cannot open the queue's log");
                    return None;
                }
            }
        }
        self.storage.as_mut()
    }

    fn level_of(&self, m: &Message) -> usize {
        match self.handle.queue().args.max_priority {
            Some(max) => m.properties.priority().unwrap_or(0).min(max) as usize,
            None => 0,
        }
    }

    /// Whether one more message of `size` bytes would take the queue past a length limit.
    fn over_limit_with(&self, size: u64) -> bool {
        let args = &self.handle.queue().args;
        args.max_length
            .is_some_and(|max| self.ready_len() + 1 > max)
            || args
                .max_length_bytes
                .is_some_and(|max| self.ready_bytes() + size > max)
    }

    fn over_limit(&self) -> bool {
        let args = &self.handle.queue().args;
        args.max_length.is_some_and(|max| self.ready_len() > max)
            || args
                .max_length_bytes
                .is_some_and(|max| self.ready_bytes() > max)
    }

    fn publish(&mut self, message: Arc<Message>, ticket: Option<Ticket>) {
        let args = self.handle.queue().args.clone();
        let size = message.body_size();
        if args.overflow != Overflow::DropHead && self.over_limit_with(size) {
            // reject-publish: the newest message is refused (and, with -dlx, dead-lettered).
            settle(ticket.into_iter().collect(), false);
            if args.overflow == Overflow::RejectPublishDlx {
                self.dead_letter(&message, Reason::MaxLen);
            }
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let ttl = [
            args.message_ttl,
            message
                .properties
                .expiration()
                .and_then(|e| e.as_str_lossy().parse().ok()),
        ]
        .into_iter()
        .flatten()
        .min();
        if ttl == Some(0) {
            return self.publish_at_once(seq, message, ticket);
        }
        let expires_at = ttl.map_or(0, |t| now_ms() + t);
        let level = self.level_of(&message);
        let durable = self.handle.queue().durable && message.properties.is_persistent();
        let to_disk =
            self.levels[level].tail_on_disk() || self.mem_bytes() + size > self.store.memory_bytes;
        let mut entry = Entry {
            seq,
            message,
            redelivered: false,
            pos: None,
            expires_at,
        };
        if durable || to_disk {
            let stored = to_stored(seq, &entry.message, durable, expires_at);
            match self.storage().map(|s| (s.log.append(&stored), s)) {
                Some((Ok(pos), storage)) => {
                    if durable {
                        storage.appended(ticket);
                    } else {
                        // A page of a transient message: on disk only to spare memory, never
                        // fsynced (it does not outlive the node anyway).
                        settle(ticket.into_iter().collect(), true);
                    }
                    if to_disk {
                        self.levels[level].push_disk(pos, size);
                    } else {
                        entry.pos = Some(pos);
                        self.levels[level].push_mem(entry);
                    }
                }
                failed => {
                    // No disk to be had: keep it in memory, and refuse what had to be durable.
                    if let Some((Err(e), _)) = failed {
                        tracing::error!(queue = %self.handle.name(), error = %e, "cannot write a message to disk");
                    }
                    settle(ticket.into_iter().collect(), !durable);
                    self.levels[level].push_mem(entry);
                }
            }
        } else {
            settle(ticket.into_iter().collect(), true);
            self.levels[level].push_mem(entry);
        }
        // drop-head: the oldest messages make room.
        while args.overflow == Overflow::DropHead && self.over_limit() {
            match self.pop_ready() {
                Some(old) => self.drop_message(old, Reason::MaxLen),
                None => break,
            }
        }
    }

    /// A message with a TTL of 0 (RabbitMQ's "deliver now or never"): a consumer that can
    /// take it at once gets it; otherwise, or behind other messages, it expires on arrival
    /// (and is dead-lettered if the queue says so). It is never kept, so never written.
    fn publish_at_once(&mut self, seq: u64, message: Arc<Message>, ticket: Option<Ticket>) {
        settle(ticket.into_iter().collect(), true);
        let entry = Entry {
            seq,
            message,
            redelivered: false,
            pos: None,
            expires_at: 0,
        };
        // Messages ahead of it (earlier in the same batch) go to consumers first, as they
        // would have had they arrived one by one.
        if self.ready_len() > 0 && !self.consumers.is_empty() {
            self.dispatch();
        }
        if self.ready_len() > 0 || self.consumers.is_empty() {
            return self.drop_message(entry, Reason::Expired);
        }
        let level = self.level_of(&entry.message);
        self.levels[level].push_mem(entry);
        self.dispatch();
        match self.unacked.get_mut(&seq) {
            // Delivered: if it comes back (rejected, or its channel closes), it has expired.
            Some(u) => u.entry.expires_at = now_ms(),
            None => {
                if let Some(left) = self.pop_ready() {
                    self.drop_message(left, Reason::Expired);
                }
            }
        }
    }

    /// Takes the next ready message: the head of the highest non-empty priority level.
    fn pop_ready(&mut self) -> Option<Entry> {
        let name = self.handle.name().clone();
        let log = self.storage.as_mut().map(|s| &mut s.log);
        self.levels
            .iter_mut()
            .rev()
            .find(|l| !l.is_empty())?
            .pop(log, &name)
    }

    /// Drops expired messages from the head (RabbitMQ expires them only at the head).
    fn expire_head(&mut self) {
        let now = now_ms();
        loop {
            let name = self.handle.name().clone();
            let log = self.storage.as_mut().map(|s| &mut s.log);
            let Some(level) = self.levels.iter_mut().rev().find(|l| !l.is_empty()) else {
                return;
            };
            match level.head(log, &name) {
                Some(h) if h.expires_at != 0 && h.expires_at <= now => {}
                _ => return,
            }
            if let Some(e) = self.pop_ready() {
                self.drop_message(e, Reason::Expired);
            }
        }
    }

    /// A message leaves the queue for good (acknowledged, or consumed without ack).
    fn done(&mut self, entry: &Entry) {
        if let (Some(pos), Some(log)) = (entry.pos, self.log()) {
            log.ack(&pos);
        }
    }

    /// A message is dropped (rejected, expired, or over a length limit): dead-lettered if the
    /// queue has a dead-letter exchange.
    fn drop_message(&mut self, entry: Entry, reason: Reason) {
        self.done(&entry);
        self.dead_letter(&entry.message, reason);
    }

    fn dead_letter(&self, m: &Message, reason: Reason) {
        let args = &self.handle.queue().args;
        if let Some(dlx) = &args.dead_letter_exchange {
            let dead = dead_letter(
                m,
                reason,
                self.handle.name(),
                dlx,
                args.dead_letter_routing_key.as_ref(),
            );
            (self.dead_letters)(dead);
        }
    }

    fn expired(entry: &Entry) -> bool {
        entry.expires_at != 0 && entry.expires_at <= now_ms()
    }

    /// Handles one command; says so when the queue must end.
    fn handle_cmd(&mut self, cmd: QueueCmd) -> Option<End> {
        match cmd {
            QueueCmd::Publish(batch) => {
                for (message, ticket) in batch {
                    self.publish(message, ticket);
                }
            }
            QueueCmd::Synced(ok) => {
                let name = self.handle.name().to_string();
                if let Some(s) = &mut self.storage {
                    s.synced(ok, &name);
                }
            }
            QueueCmd::Wake => {}
            QueueCmd::Consume { consumer, reply } => {
                self.last_used = Instant::now();
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
                self.last_used = Instant::now();
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
                self.last_used = Instant::now();
                let got = self.get(conn_id, channel_key, no_ack);
                let _ = reply.send(got);
            }
            QueueCmd::Purge { reply } => {
                let mut n = 0;
                let log = self.storage.as_mut().map(|s| &mut s.log);
                let mut log = log;
                for level in &mut self.levels {
                    n += level.purge(log.as_deref_mut());
                }
                let _ = reply.send(n as u32);
            }
            QueueCmd::Counts { reply } => {
                // A declaration counts as use for x-expires, as in RabbitMQ.
                self.last_used = Instant::now();
                self.expire_head();
                let _ = reply.send((self.ready_len() as u32, self.consumers.len() as u32));
            }
            QueueCmd::Delete {
                if_unused,
                if_empty,
                reply,
            } => {
                let info = self.handle.queue();
                if if_unused && !self.consumers.is_empty() {
                    let _ = reply.send(Err(AmqpError::precondition_failed(format!(
                        "queue '{}' in vhost '{}' in use",
                        info.name,
                        self.handle.vhost()
                    ))));
                    return None;
                }
                if if_empty && self.ready_len() > 0 {
                    let _ = reply.send(Err(AmqpError::precondition_failed(format!(
                        "queue '{}' in vhost '{}' not empty",
                        info.name,
                        self.handle.vhost()
                    ))));
                    return None;
                }
                for c in self.consumers.drain(..) {
                    c.spec.conn.send(ConnMsg::ConsumerGone {
                        channel: c.spec.channel,
                        channel_key: c.spec.channel_key,
                        consumer_tag: c.spec.tag.clone(),
                    });
                }
                let _ = reply.send(Ok(self.ready_len() as u32));
                return Some(End::Deleted);
            }
            QueueCmd::Shutdown { done } => return Some(End::ShutDown(Some(done))),
        }
        None
    }

    fn get(&mut self, conn_id: ConnId, channel_key: u64, no_ack: bool) -> Option<GetReply> {
        let entry = loop {
            let e = self.pop_ready()?;
            if Self::expired(&e) {
                self.drop_message(e, Reason::Expired);
                continue;
            }
            break e;
        };
        let reply = GetReply {
            seq: entry.seq,
            message: entry.message.clone(),
            redelivered: entry.redelivered,
            remaining: self.ready_len() as u32,
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
        Some(reply)
    }

    fn add_consumer(&mut self, spec: ConsumerSpec) -> Result<(), AmqpError> {
        let info = self.handle.queue();
        let exclusive_taken = self.consumers.iter().any(|c| c.spec.exclusive);
        if exclusive_taken || (spec.exclusive && !self.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                info.name,
                self.handle.vhost()
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
        let mut back: Vec<Vec<Entry>> = (0..self.levels.len()).map(|_| Vec::new()).collect();
        for seq in seqs {
            let Some(u) = self.unacked.remove(&seq) else {
                continue;
            };
            if let Some(cid) = u.consumer {
                if let Some(c) = self.consumers.iter_mut().find(|c| c.id == cid) {
                    c.unacked = c.unacked.saturating_sub(1);
                }
            }
            match how {
                Settle::Requeue => {
                    let level = self.level_of(&u.entry.message);
                    back[level].push(u.entry);
                }
                Settle::Ack => self.done(&u.entry),
                Settle::Discard => self.drop_message(u.entry, Reason::Rejected),
            }
        }
        for (level, entries) in back.into_iter().enumerate() {
            self.levels[level].requeue(entries);
        }
    }

    fn channel_closed(&mut self, conn_id: ConnId, channel_key: u64) {
        self.consumers.retain(|c| !c.owned_by(conn_id, channel_key));
        self.last_used = Instant::now();
        let seqs: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.owner == (conn_id, channel_key))
            .map(|(s, _)| *s)
            .collect();
        self.settle(seqs, Settle::Requeue);
    }

    /// The first consumer, in priority and round-robin order, that can take a message. With
    /// x-single-active-consumer only the oldest consumer ever receives.
    fn pick_consumer(&mut self) -> Option<usize> {
        let handle = &self.handle;
        if handle.queue().args.single_active_consumer {
            let (i, c) = self
                .consumers
                .iter_mut()
                .enumerate()
                .min_by_key(|(_, c)| c.id)?;
            return c.take_credit(handle).then_some(i);
        }
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
        while self.ready_len() > 0 && !self.consumers.is_empty() {
            let Some(i) = self.pick_consumer() else {
                break;
            };
            let entry = loop {
                match self.pop_ready() {
                    Some(e) if Self::expired(&e) => self.drop_message(e, Reason::Expired),
                    other => break other,
                }
            };
            let Some(entry) = entry else {
                // Nothing deliverable after all: give the credit back.
                self.consumers[i].give_back_credit();
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
        let delivered: usize = batches.iter().map(|(_, b)| b.len()).sum();
        if delivered > 0 {
            self.drain
                .delivered(delivered as u64, std::time::Instant::now());
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
