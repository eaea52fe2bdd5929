//! A queue's semantics as a deterministic state machine: commands in, replies and effects out.
//!
//! `QueueState` holds the ready messages (by priority level), the deliveries out and not yet
//! settled, and the consumers. It never reads a clock (the time comes with each command), never
//! spawns, never sends: what should happen outside it (a delivery to a connection, a
//! confirm, a dead-lettered message) is an [`Effect`] the caller carries out. Given the same
//! commands at the same times it does the same thing, which is what lets the tokio shell
//! (`actor`) stay thin, lets these rules be tested without sockets, and is what a replicated
//! queue will run on every replica.
//!
//! The one thing it touches beyond memory is the queue's own log: persistent messages are
//! appended as they arrive and paged ones read back as they reach the head. The fsync that
//! makes them durable is the shell's ([`QueueState::start_sync`], [`Command::Synced`]).

mod consumers;
mod deliver;
mod enqueue;
mod held;
#[cfg(test)]
mod held_tests;
mod image;
#[cfg(test)]
mod quorum_tests;
#[cfg(test)]
pub(crate) mod tests;

use super::command::{ConsumerSpec, GetReply, Settle, Ticket};
use super::deadletter::{Reason, dead_letter};
use super::ready::{Entry, Ready};
use super::storage::{QueueDisk, Storage};
use crate::mail::Delivery;
use crate::message::Message;
use consumers::Consumers;
use foldhash::HashMap;
pub(crate) use image::Image;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use warren_amqp::{AmqpError, AmqpResult, ShortStr};
use warren_meta::{ConnId, NodeId, Queue, QueueType};
use warren_store::QueueLog;

/// What a queue is asked to do. Everything but messages crosses to another node as it is
/// (see `queue::wire`); what does not cross comes last (see `mail::ConnMsg`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Command {
    /// Deliveries acknowledged, requeued or dropped.
    Settle(Vec<u64>, Settle),
    /// A consumer's connection took deliveries in and grants that much credit back.
    Credit {
        consumer: u64,
        n: u32,
    },
    /// A consumer's limit of unacknowledged deliveries changed (a channel-wide prefetch).
    Prefetch {
        consumer: u64,
        prefetch: u32,
    },
    Consume(ConsumerSpec),
    Cancel {
        conn: ConnId,
        channel_key: u64,
        tag: ShortStr,
    },
    /// A channel closed: its consumers go and what it had not acknowledged is requeued.
    ChannelClosed {
        conn: ConnId,
        channel_key: u64,
    },
    Get {
        conn: ConnId,
        channel_key: u64,
        no_ack: bool,
    },
    Purge,
    /// Message and consumer counts, as declare-ok reports them.
    Counts,
    /// The consumers, for listings.
    Consumers,
    Delete {
        if_unused: bool,
        if_empty: bool,
    },
    /// Deliveries could not be handed to a connection: it is gone, and so are its consumers;
    /// whatever it had not acknowledged is requeued.
    ConnectionGone {
        conn: ConnId,
    },
    /// Node `node` went down: its connections are gone, as for [`Command::ConnectionGone`].
    NodeGone {
        node: NodeId,
    },
    /// Time passed (a quorum queue's leader proposes it when the replicas' next deadline is
    /// due): messages whose TTL ran out expire, and an unused queue with `x-expires` goes.
    Tick,
    /// A leader that got its leadership back at a restart, without an election and so
    /// without a first entry of its own, takes over with this entry instead (see
    /// `quorum::machine`): what is out to consumers goes again.
    Resend,
    /// The leader's worker had these held dead letters confirmed by every queue they were
    /// routed to: the replicas let them go.
    DeadLettered {
        ids: Vec<u64>,
    },
    // What never crosses comes last. serde numbers a variant by its place among all of them
    // when it writes and among those not skipped when it reads: a skipped variant in the
    // middle would make every later one read back as another.
    /// Messages to enqueue, in order; each ticket is answered once its message is safe.
    #[serde(skip)]
    Publish(Vec<(Arc<Message>, Option<Ticket>)>),
    /// The fsync begun by [`QueueState::start_sync`] ended (true: successfully).
    #[serde(skip)]
    Synced(bool),
}

/// The answer to a command, for whoever asked. Everything but messages crosses to another
/// node as it is.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Reply {
    Done,
    /// The new consumer's id, by which its connection grants credit.
    Consumed(AmqpResult<u64>),
    Purged(u32),
    Counts {
        /// Ready to be delivered.
        messages: u32,
        /// Delivered and not yet acknowledged.
        unacked: u32,
        consumers: u32,
    },
    Consumers(Vec<ConsumerRow>),
    /// The number of messages the queue held; once deleted, the queue takes no more commands.
    Deleted(AmqpResult<u32>),
    #[serde(skip)]
    Got(Option<GetReply>),
}

/// A consumer as `list_consumers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerRow {
    pub tag: ShortStr,
    pub conn: ConnId,
    pub channel: u16,
    pub ack_required: bool,
    pub prefetch: u32,
    /// Whether it receives (with single-active-consumer, only one does).
    pub active: bool,
}

/// What must happen outside the queue.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Deliveries for consumers on one connection.
    Deliver {
        conn: ConnId,
        deliveries: Vec<Delivery>,
    },
    /// Publishers or transactions to answer.
    Settled { tickets: Vec<Ticket>, ok: bool },
    /// A consumer's queue went away.
    ConsumerGone {
        conn: ConnId,
        channel: u16,
        channel_key: u64,
        tag: ShortStr,
    },
    /// A message to republish to the queue's dead-letter exchange; `held` numbers one the
    /// queue keeps until told it was confirmed (at least once, see `held`).
    DeadLetter {
        message: Arc<Message>,
        held: Option<u64>,
    },
}

/// Why a queue stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Deleted (by a client, auto-delete, x-expires, or its vhost going): its log goes.
    Deleted,
    /// Stopped with its node: its log stays.
    ShutDown,
}

struct Unacked {
    entry: Entry,
    /// The connection and channel it went to: if that channel closes, it is requeued.
    owner: (ConnId, u64),
    consumer: Option<u64>,
}

/// What a queue starts with: an empty queue, or what its log held at start-up.
pub struct Start {
    pub store: QueueDisk,
    pub storage: Option<Storage>,
    /// Ready messages by priority level (a single level for most queues).
    pub levels: Vec<Ready>,
    pub next_seq: u64,
}

pub(crate) struct QueueState {
    vhost: String,
    info: Queue,
    levels: Vec<Ready>,
    unacked: HashMap<u64, Unacked>,
    consumers: Consumers,
    next_seq: u64,
    had_consumers: bool,
    deleted: bool,
    /// The time of the command being handled, in milliseconds since the Unix epoch.
    now: u64,
    /// Last time the queue was used, for x-expires.
    last_used: u64,
    store: QueueDisk,
    /// The queue's log, once it has one (durable queues always do).
    storage: Option<Storage>,
    /// Tickets answered since the effects were last taken (one effect for many).
    settled_ok: Vec<Ticket>,
    settled_failed: Vec<Ticket>,
    effects: Vec<Effect>,
    /// A quorum queue's replica: its log is the group's, so it keeps no files of its own, and
    /// it counts returns (`x-delivery-count`, `x-delivery-limit`) and puts them at the back.
    replicated: bool,
    /// A quorum queue with `reject-publish` that went over its limit refuses publishes until
    /// it is down to 80 % of it, as RabbitMQ's `rabbit_fifo` does.
    refusing: bool,
    /// Dead letters held until confirmed (at least once).
    held: held::Held,
}

impl QueueState {
    pub fn new(vhost: &str, info: Queue, start: Start, now: u64) -> Self {
        let replicated = info.kind == QueueType::Quorum;
        let n = info.args.max_priority.map_or(1, |p| p as usize + 1);
        let mut levels = start.levels;
        levels.resize_with(n, Ready::default);
        QueueState {
            vhost: vhost.to_owned(),
            info,
            levels,
            unacked: HashMap::default(),
            consumers: Consumers::default(),
            next_seq: start.next_seq.max(1),
            had_consumers: false,
            deleted: false,
            now,
            last_used: now,
            refusing: false,
            store: start.store,
            storage: start.storage,
            settled_ok: Vec::new(),
            settled_failed: Vec::new(),
            effects: Vec::new(),
            replicated,
            held: held::Held::default(),
        }
    }

    pub fn name(&self) -> &ShortStr {
        &self.info.name
    }

    /// Handles one command at time `now`.
    pub fn apply(&mut self, cmd: Command, now: u64) -> Reply {
        self.now = now;
        match cmd {
            Command::Publish(batch) => {
                for (message, ticket) in batch {
                    self.publish(message, ticket);
                }
            }
            Command::Settle(seqs, how) => self.settle(seqs, how),
            Command::Credit { consumer, n } => {
                if let Some(c) = self.consumers.get_mut(consumer) {
                    c.credit += i64::from(n);
                }
            }
            Command::Prefetch { consumer, prefetch } => {
                if let Some(c) = self.consumers.get_mut(consumer) {
                    c.spec.prefetch = prefetch;
                }
            }
            Command::Consume(spec) => {
                self.last_used = now;
                return Reply::Consumed(self.add_consumer(spec));
            }
            Command::Cancel {
                conn,
                channel_key,
                tag,
            } => {
                self.consumers
                    .retain(|c| !(c.owned_by(conn, channel_key) && c.spec.tag == tag));
                self.last_used = now;
            }
            Command::ChannelClosed { conn, channel_key } => {
                self.consumers.retain(|c| !c.owned_by(conn, channel_key));
                self.last_used = now;
                self.requeue_owned_by(|owner| owner == (conn, channel_key));
            }
            Command::ConnectionGone { conn } => {
                self.consumers.retain(|c| c.spec.conn != conn);
                self.requeue_owned_by(|(owner, _)| owner == conn);
            }
            Command::Tick | Command::Resend => {}
            Command::DeadLettered { ids } => self.dead_lettered(&ids),
            Command::NodeGone { node } => {
                self.consumers.retain(|c| c.spec.conn.node != node);
                self.requeue_owned_by(|(owner, _)| owner.node == node);
            }
            Command::Get {
                conn,
                channel_key,
                no_ack,
            } => {
                self.last_used = now;
                return Reply::Got(self.get(conn, channel_key, no_ack));
            }
            Command::Purge => {
                let mut log = self.storage.as_mut().map(|s| &mut s.log);
                let n: u64 = self
                    .levels
                    .iter_mut()
                    .map(|l| l.purge(log.as_deref_mut()))
                    .sum();
                // As RabbitMQ's purge: held dead letters go too (not counted).
                self.held.clear();
                return Reply::Purged(n as u32);
            }
            Command::Counts => {
                // A declaration counts as use for x-expires, as in RabbitMQ.
                self.last_used = now;
                self.expire_head();
                return Reply::Counts {
                    messages: self.ready_len() as u32,
                    unacked: self.unacked.len() as u32,
                    consumers: self.consumers.len() as u32,
                };
            }
            Command::Delete {
                if_unused,
                if_empty,
            } => return Reply::Deleted(self.delete(if_unused, if_empty)),
            Command::Consumers => {
                let single_active = self.info.args.single_active_consumer;
                return Reply::Consumers(self.consumers.rows(single_active));
            }
            Command::Synced(ok) => {
                if !ok {
                    tracing::error!(queue = %self.info.name, "fsync failed: publishes waiting for it are nacked");
                }
                let tickets = self.storage.as_mut().map(Storage::synced);
                self.answer(tickets.unwrap_or_default(), ok);
            }
        }
        Reply::Done
    }

    /// After a batch of commands: drops expired messages from the head and hands ready
    /// messages to consumers that can take them.
    pub fn run(&mut self, now: u64) {
        self.now = now;
        self.expire_head();
        self.dispatch();
    }

    /// What must happen outside the queue since this was last asked.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        if !self.settled_ok.is_empty() {
            let tickets = std::mem::take(&mut self.settled_ok);
            self.effects.push(Effect::Settled { tickets, ok: true });
        }
        if !self.settled_failed.is_empty() {
            let tickets = std::mem::take(&mut self.settled_failed);
            self.effects.push(Effect::Settled { tickets, ok: false });
        }
        std::mem::take(&mut self.effects)
    }

    /// Writes out acknowledgement marks; returns the files an fsync must cover, if anything
    /// waits to be made durable and no fsync is running.
    pub fn start_sync(&mut self) -> Option<Vec<File>> {
        let s = self.storage.as_mut()?;
        if let Err(e) = s.log.write_marks() {
            tracing::warn!(queue = %self.info.name, error = %e, "cannot record acknowledgements");
        }
        match s.start_sync()? {
            Ok(files) => Some(files),
            Err(e) => {
                tracing::error!(queue = %self.info.name, error = %e, "cannot sync the queue's log");
                let failed = s.synced();
                self.answer(failed, false);
                None
            }
        }
    }

    /// The queue stops. A deleted queue's log goes; a queue stopped with its node keeps every
    /// record, so that a durable queue comes back with its messages. Either way, publishes
    /// still waiting for an fsync are refused (they were never confirmed).
    pub fn stop(&mut self, end: End) {
        let Some(mut s) = self.storage.take() else {
            return;
        };
        let waiting = s.abandon();
        self.answer(waiting, false);
        match end {
            End::Deleted => {
                if let Err(e) = s.log.destroy() {
                    tracing::warn!(queue = %self.info.name, error = %e, "cannot remove the queue's files");
                }
            }
            End::ShutDown => {
                // Hand what is written to the OS; the files are closed when the log drops.
                if let Err(e) = s.log.write_marks().and_then(|()| s.log.flush()) {
                    tracing::warn!(queue = %self.info.name, error = %e, "cannot write the queue's log at shutdown");
                }
            }
        }
    }

    /// Where the queue pages messages out, and its segments' size.
    pub fn page_file(&self) -> (PathBuf, u64) {
        (self.store.dir.clone(), self.store.segment_bytes)
    }

    /// Hands every message paged out so far to the OS, so that a snapshot taking the page
    /// file's segments finds them whole.
    pub fn flush_pages(&mut self) -> std::io::Result<()> {
        self.log().map_or(Ok(()), QueueLog::flush)
    }

    /// Whether the queue was deleted by a command.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// The time of the last command handled, in ms since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Auto-delete after the last consumer, or x-expires after a quiet spell.
    pub fn should_remove(&self, now: u64) -> bool {
        if !self.consumers.is_empty() {
            return false;
        }
        if self.info.auto_delete && self.had_consumers {
            return true;
        }
        self.info
            .args
            .expires
            .is_some_and(|ms| now >= self.last_used.saturating_add(ms))
    }

    /// When the queue must next look at itself without a command (its head message expiring,
    /// or the queue itself), in milliseconds since the Unix epoch.
    pub fn next_deadline(&mut self) -> Option<u64> {
        let mut at: Option<u64> = None;
        let mut earliest = |t: u64| at = Some(at.map_or(t, |a| a.min(t)));
        if let Some(ms) = self.info.args.expires {
            if self.consumers.is_empty() {
                earliest(self.last_used.saturating_add(ms));
            }
        }
        let log = self.storage.as_mut().map(|s| &mut s.log);
        if let Some(level) = self.levels.iter_mut().rev().find(|l| !l.is_empty()) {
            if let Some(head) = level.head(log, &self.info.name) {
                if head.expires_at != 0 {
                    earliest(head.expires_at);
                }
            }
        }
        at
    }

    /// Ready messages, and whether anyone consumes them (for publisher flow control).
    pub fn ready_len(&self) -> u64 {
        self.levels.iter().map(Ready::len).sum()
    }

    pub fn has_consumers(&self) -> bool {
        !self.consumers.is_empty()
    }

    pub fn ready_bytes(&self) -> u64 {
        self.levels.iter().map(Ready::bytes).sum()
    }

    /// Body bytes of the ready messages held in memory.
    pub fn mem_bytes(&self) -> u64 {
        self.levels.iter().map(Ready::mem_bytes).sum()
    }

    fn answer(&mut self, tickets: Vec<Ticket>, ok: bool) {
        if ok {
            self.settled_ok.extend(tickets);
        } else {
            self.settled_failed.extend(tickets);
        }
    }

    fn log(&mut self) -> Option<&mut QueueLog> {
        self.storage.as_mut().map(|s| &mut s.log)
    }

    /// The queue's log, opened on first use by a queue that had none.
    fn storage(&mut self) -> Option<&mut Storage> {
        if self.storage.is_none() {
            // A replica's page file starts empty: its messages are in the group's log.
            let opened = if self.replicated {
                QueueLog::pages(&self.store.dir, self.store.segment_bytes)
            } else {
                QueueLog::open(&self.store.dir, self.store.segment_bytes, 1).map(|(log, _)| log)
            };
            match opened {
                Ok(log) => self.storage = Some(Storage::new(log)),
                Err(e) => {
                    tracing::error!(queue = %self.info.name, error = %e, "cannot open the queue's log");
                    return None;
                }
            }
        }
        self.storage.as_mut()
    }

    fn level_of(&self, m: &Message) -> usize {
        match self.info.args.max_priority {
            Some(max) => m.properties.priority().unwrap_or(0).min(max) as usize,
            None => 0,
        }
    }

    /// Takes the next ready message: the head of the highest non-empty priority level.
    fn pop_ready(&mut self) -> Option<Entry> {
        let log = self.storage.as_mut().map(|s| &mut s.log);
        self.levels
            .iter_mut()
            .rev()
            .find(|l| !l.is_empty())?
            .pop(log, &self.info.name)
    }

    /// Takes the next ready message that has not expired, dropping those that have.
    fn pop_live(&mut self) -> Option<Entry> {
        loop {
            let e = self.pop_ready()?;
            if self.expired(&e) {
                self.drop_message(e, Reason::Expired);
                continue;
            }
            return Some(e);
        }
    }

    /// Drops expired messages from the head (RabbitMQ expires them only at the head).
    fn expire_head(&mut self) {
        loop {
            let now = self.now;
            let log = self.storage.as_mut().map(|s| &mut s.log);
            let Some(level) = self.levels.iter_mut().rev().find(|l| !l.is_empty()) else {
                return;
            };
            match level.head(log, &self.info.name) {
                Some(h) if h.expires_at != 0 && h.expires_at <= now => {}
                _ => return,
            }
            if let Some(e) = self.pop_ready() {
                self.drop_message(e, Reason::Expired);
            }
        }
    }

    fn expired(&self, entry: &Entry) -> bool {
        entry.expires_at != 0 && entry.expires_at <= self.now
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

    fn dead_letter(&mut self, m: &Message, reason: Reason) {
        let args = &self.info.args;
        if let Some(dlx) = &args.dead_letter_exchange {
            let dead = dead_letter(
                m,
                reason,
                &self.info.name,
                dlx,
                args.dead_letter_routing_key.as_ref(),
                self.now,
            );
            if self.dead_letters_at_least_once() {
                self.hold(dead);
            } else {
                self.effects.push(Effect::DeadLetter {
                    message: dead,
                    held: None,
                });
            }
        }
    }

    fn describe(&self) -> String {
        format!("queue '{}' in vhost '{}'", self.info.name, self.vhost)
    }

    fn delete(&mut self, if_unused: bool, if_empty: bool) -> AmqpResult<u32> {
        if if_unused && !self.consumers.is_empty() {
            return Err(AmqpError::precondition_failed(format!(
                "{} in use",
                self.describe()
            )));
        }
        if if_empty && self.ready_len() > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "{} not empty",
                self.describe()
            )));
        }
        let gone: Vec<Effect> = self
            .consumers
            .drain()
            .map(|c| Effect::ConsumerGone {
                conn: c.spec.conn,
                channel: c.spec.channel,
                channel_key: c.spec.channel_key,
                tag: c.spec.tag,
            })
            .collect();
        self.effects.extend(gone);
        self.deleted = true;
        Ok(self.ready_len() as u32)
    }

    fn add_consumer(&mut self, spec: ConsumerSpec) -> AmqpResult<u64> {
        if self.consumers.has_exclusive() || (spec.exclusive && !self.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format!(
                "{} in exclusive use",
                self.describe()
            )));
        }
        self.had_consumers = true;
        Ok(self.consumers.add(spec))
    }
}
