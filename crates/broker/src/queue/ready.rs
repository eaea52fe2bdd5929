//! The messages of a queue that are ready for delivery, in order. The head of a queue is kept
//! in memory; once the queue holds more than its memory allows, further messages are kept only
//! on disk, as runs of consecutive records in the queue's log, and are read back as they reach
//! the head. A run costs a few dozen bytes however many messages it holds, which is how a queue
//! of millions of messages stays small in memory.

use crate::message::{Body, Message};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use warren_amqp::{RawProperties, ShortStr};
use warren_store::{Position, QueueLog, Run, StoredMessage};

/// A message in memory.
#[derive(Debug)]
pub struct Entry {
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// How often it came back unacknowledged (a quorum queue's `x-delivery-count`).
    pub delivery_count: u32,
    /// Where it also is on disk (persistent, or paged out and read back).
    pub pos: Option<Position>,
    /// When it expires, in milliseconds since the Unix epoch (0: never).
    pub expires_at: u64,
}

/// A stretch of a queue's ready messages (see [`Ready::parts`]).
pub enum Part<'a> {
    Mem(&'a Entry),
    Disk(&'a Run),
}

#[derive(Debug)]
enum Item {
    Mem(Entry),
    Disk(Run),
}

#[derive(Debug, Default)]
pub struct Ready {
    items: VecDeque<Item>,
    count: u64,
    /// Body bytes of all ready messages.
    bytes: u64,
    /// Body bytes of the ready messages held in memory.
    mem_bytes: u64,
    /// Records (segment, offset) delivered before a restart: read back as redelivered.
    delivered_before: HashSet<(u64, u64)>,
}

impl Ready {
    /// Starts from what a log held at start-up.
    pub fn recovered(runs: Vec<Run>, delivered_before: HashSet<(u64, u64)>) -> Ready {
        let count = runs.iter().map(|r| r.count).sum();
        let bytes = runs.iter().map(|r| r.bytes).sum();
        Ready {
            items: runs.into_iter().map(Item::Disk).collect(),
            count,
            bytes,
            mem_bytes: 0,
            delivered_before,
        }
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn mem_bytes(&self) -> u64 {
        self.mem_bytes
    }

    /// Whether the newest ready message is on disk only: a new message must then go to disk
    /// too, so that order is kept without holding it in memory.
    pub fn tail_on_disk(&self) -> bool {
        matches!(self.items.back(), Some(Item::Disk(_)))
    }

    pub fn push_mem(&mut self, e: Entry) {
        let n = e.message.body_size();
        self.count += 1;
        self.bytes += n;
        self.mem_bytes += n;
        self.items.push_back(Item::Mem(e));
    }

    /// Adds a message that is only on disk, at `pos`.
    pub fn push_disk(&mut self, pos: Position, body: u64) {
        self.count += 1;
        self.bytes += body;
        let end = pos.offset + pos.len as u64;
        if let Some(Item::Disk(run)) = self.items.back_mut() {
            if run.segment == pos.segment && run.end == pos.offset {
                run.end = end;
                run.count += 1;
                run.bytes += body;
                return;
            }
        }
        self.items.push_back(Item::Disk(Run {
            segment: pos.segment,
            offset: pos.offset,
            end,
            count: 1,
            bytes: body,
            level: 0,
        }));
    }

    /// Takes the next message, reading it from disk if needed. Records that fail their
    /// checksum are dropped (and logged), never returned.
    pub fn pop(&mut self, log: Option<&mut QueueLog>, queue: &ShortStr) -> Option<Entry> {
        let mut log = log;
        loop {
            match self.items.front_mut()? {
                Item::Mem(_) => {
                    let Some(Item::Mem(e)) = self.items.pop_front() else {
                        return None;
                    };
                    let n = e.message.body_size();
                    self.count -= 1;
                    self.bytes -= n;
                    self.mem_bytes -= n;
                    return Some(e);
                }
                Item::Disk(run) => {
                    let (segment, at) = (run.segment, run.offset);
                    let Some(log) = log.as_deref_mut() else {
                        // A disk run without a log cannot happen; drop it rather than spin.
                        self.count -= run.count;
                        self.bytes = self.bytes.saturating_sub(run.bytes);
                        self.items.pop_front();
                        continue;
                    };
                    let (stored, next) = match log.read(segment, at) {
                        Ok(r) => r,
                        Err(e) => {
                            // The rest of this run cannot be read: give it up, loudly.
                            tracing::error!(queue = %queue, error = %e, lost = run.count, "cannot read messages from disk");
                            self.count -= run.count;
                            self.bytes = self.bytes.saturating_sub(run.bytes);
                            self.items.pop_front();
                            continue;
                        }
                    };
                    let body = stored.as_ref().map_or(0, |m| m.body.len() as u64);
                    run.offset = next;
                    run.count -= 1;
                    run.bytes = run.bytes.saturating_sub(body);
                    self.count -= 1;
                    self.bytes = self.bytes.saturating_sub(body);
                    if run.count == 0 || run.offset >= run.end {
                        // Both end together; if they do not, the run's count was wrong.
                        self.count -= run.count;
                        self.items.pop_front();
                    }
                    let pos = Position {
                        segment,
                        offset: at,
                        len: (next - at) as u32,
                    };
                    let Some(stored) = stored else {
                        tracing::error!(queue = %queue, segment, offset = at, "dropped a damaged message (checksum mismatch)");
                        log.ack(&pos);
                        continue;
                    };
                    let redelivered = self.delivered_before.remove(&(segment, at));
                    let expires_at = stored.expires_at_ms;
                    match to_message(stored) {
                        Some((seq, message)) => {
                            return Some(Entry {
                                seq,
                                message,
                                redelivered,
                                delivery_count: 0,
                                pos: Some(pos),
                                expires_at,
                            });
                        }
                        None => {
                            tracing::error!(queue = %queue, segment, offset = at, "dropped a stored message with unreadable properties");
                            log.ack(&pos);
                        }
                    }
                }
            }
        }
    }

    /// The head message, brought into memory if it was on disk, without taking it.
    pub fn head(&mut self, log: Option<&mut QueueLog>, queue: &ShortStr) -> Option<&Entry> {
        if matches!(self.items.front(), Some(Item::Disk(_))) {
            let e = self.pop(log, queue)?;
            let n = e.message.body_size();
            self.count += 1;
            self.bytes += n;
            self.mem_bytes += n;
            self.items.push_front(Item::Mem(e));
        }
        match self.items.front() {
            Some(Item::Mem(e)) => Some(e),
            _ => None,
        }
    }

    /// Puts delivered messages back before everything still ready, in their original order
    /// (marked redelivered or not, as the caller set them).
    /// (Delivery always takes from the head, so a returning message is older than every
    /// message still ready, and disk runs hold only newer ones.)
    pub fn requeue(&mut self, mut entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        entries.sort_by_key(|e| e.seq);
        for e in entries.into_iter().rev() {
            // Items are in sequence order and every returning message is older than anything
            // ready, so this finds its place by bisection.
            let at = self
                .items
                .partition_point(|i| matches!(i, Item::Mem(m) if m.seq < e.seq));
            let n = e.message.body_size();
            self.count += 1;
            self.bytes += n;
            self.mem_bytes += n;
            self.items.insert(at, Item::Mem(e));
        }
    }

    /// Puts messages a quorum queue took back (rejected with requeue, or out to a consumer
    /// that went) behind every ready message, as RabbitMQ's quorum queues do.
    pub fn give_back(&mut self, entries: Vec<Entry>) {
        for e in entries {
            self.push_mem(e);
        }
    }

    /// What is ready, in the order it goes out: messages in memory and runs on disk.
    pub fn parts(&self) -> impl Iterator<Item = Part<'_>> {
        self.items.iter().map(|i| match i {
            Item::Mem(e) => Part::Mem(e),
            Item::Disk(run) => Part::Disk(run),
        })
    }

    /// Adds, after everything ready, a run of messages that are on disk only.
    pub fn push_run(&mut self, run: Run) {
        self.count += run.count;
        self.bytes += run.bytes;
        self.items.push_back(Item::Disk(run));
    }

    /// Drops every ready message; returns how many there were. Messages on disk are marked
    /// acknowledged so their segments can go.
    pub fn purge(&mut self, log: Option<&mut QueueLog>) -> u64 {
        let n = self.count;
        let mut log = log;
        for item in self.items.drain(..) {
            match item {
                Item::Mem(e) => {
                    if let (Some(pos), Some(log)) = (e.pos, log.as_deref_mut()) {
                        log.ack(&pos);
                    }
                }
                Item::Disk(run) => {
                    if let Some(log) = log.as_deref_mut() {
                        log.ack_run(&run);
                    }
                }
            }
        }
        self.count = 0;
        self.bytes = 0;
        self.mem_bytes = 0;
        n
    }
}

/// The stored form of a message, to write it to a log.
pub fn to_stored(seq: u64, m: &Message, persistent: bool, expires_at: u64) -> StoredMessage {
    StoredMessage {
        seq,
        persistent,
        expires_at_ms: expires_at,
        priority: m.properties.priority().unwrap_or(0),
        exchange: m.exchange.bytes().clone(),
        routing_key: m.routing_key.bytes().clone(),
        properties: m.properties.as_bytes().clone(),
        body: m.body.to_bytes(),
    }
}

fn to_message(s: StoredMessage) -> Option<(u64, Arc<Message>)> {
    let properties = RawProperties::new(s.properties).ok()?;
    Some((
        s.seq,
        Arc::new(Message {
            exchange: ShortStr::from_bytes(s.exchange),
            routing_key: ShortStr::from_bytes(s.routing_key),
            properties,
            body: Body::from_bytes(s.body),
        }),
    ))
}
