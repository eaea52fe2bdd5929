//! Taking messages in: length limits and overflow, per-message and per-queue TTL (with TTL 0's
//! "now or never"), priority levels, and where a message is kept (memory, disk, or both).

use super::{QueueState, Ticket};
use crate::message::Message;
use crate::queue::deadletter::Reason;
use crate::queue::ready::{Entry, to_stored};
use std::sync::Arc;
use warren_meta::Overflow;

impl QueueState {
    /// Messages and bytes counted against the length limits: the ready ones, and the dead
    /// letters held until confirmed (as RabbitMQ's quorum queues count them).
    fn limited(&self) -> (u64, u64) {
        (
            self.ready_len() + self.held.len(),
            self.ready_bytes() + self.held.bytes(),
        )
    }

    /// Whether one more message of `size` bytes would take the queue past a length limit.
    fn over_limit_with(&self, size: u64) -> bool {
        let args = &self.info.args;
        let (len, bytes) = self.limited();
        args.max_length.is_some_and(|max| len + 1 > max)
            || args.max_length_bytes.is_some_and(|max| bytes + size > max)
    }

    fn over_limit(&self) -> bool {
        let args = &self.info.args;
        let (len, bytes) = self.limited();
        args.max_length.is_some_and(|max| len > max)
            || args.max_length_bytes.is_some_and(|max| bytes > max)
    }

    /// Whether the queue is at or below 80 % of its limits (rounded down), where a quorum
    /// queue that refuses publishes takes them again.
    fn at_low_water(&self) -> bool {
        let args = &self.info.args;
        let low = |max: u64| max * 4 / 5;
        let (len, bytes) = self.limited();
        args.max_length.is_none_or(|max| len <= low(max))
            && args.max_length_bytes.is_none_or(|max| bytes <= low(max))
    }

    pub(super) fn publish(&mut self, message: Arc<Message>, ticket: Option<Ticket>) {
        let overflow = self.info.args.overflow;
        if self.replicated && overflow == Overflow::RejectPublish {
            // RabbitMQ's quorum queues check after taking a message: the one that goes over
            // the limit is kept, and refusals go on until the queue is down to 80 %.
            if self.refusing && self.at_low_water() {
                self.refusing = false;
            }
            if self.refusing {
                self.answer(ticket.into_iter().collect(), false);
                return;
            }
            self.take_in(message, ticket);
            self.refusing = self.over_limit();
            return;
        }
        let size = message.body_size();
        if overflow != Overflow::DropHead && self.over_limit_with(size) {
            // reject-publish: the newest message is refused (and, with -dlx, dead-lettered).
            self.answer(ticket.into_iter().collect(), false);
            if overflow == Overflow::RejectPublishDlx {
                self.dead_letter(&message, Reason::MaxLen);
            }
            return;
        }
        self.take_in(message, ticket);
    }

    /// Enqueues a message that the length limits let in.
    fn take_in(&mut self, message: Arc<Message>, ticket: Option<Ticket>) {
        let overflow = self.info.args.overflow;
        let size = message.body_size();
        let seq = self.next_seq;
        self.next_seq += 1;
        let ttl = [
            self.info.args.message_ttl,
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
        let expires_at = ttl.map_or(0, |t| self.now.saturating_add(t));
        let level = self.level_of(&message);
        // A quorum queue's messages are in its group's log already: a replica writes them
        // out only as pages, to spare its memory.
        let durable = !self.replicated && self.info.durable && message.properties.is_persistent();
        let full = |q: &Self| q.mem_bytes() + size > q.store.memory_bytes;
        if full(self) && !self.replicated && self.consumers.can_any_take() {
            // Memory is full, but consumers are waiting: what is ready goes to them now rather
            // than this message going to disk and back (large messages fill the allowance in
            // a handful). Not on a replica: its replicas may page at different moments, and
            // where a message waits must never change what happens to it.
            self.dispatch();
        }
        let to_disk = self.levels[level].tail_on_disk() || full(self);
        let mut entry = Entry {
            seq,
            message,
            redelivered: false,
            delivery_count: 0,
            pos: None,
            expires_at,
        };
        if durable || to_disk {
            let stored = to_stored(seq, &entry.message, durable, expires_at);
            let name = self.info.name.clone();
            match self.storage().map(|s| (s.log.append(&stored), s)) {
                Some((Ok(pos), storage)) => {
                    if durable {
                        storage.appended(ticket);
                    } else {
                        // A page of a transient message: on disk only to spare memory, never
                        // fsynced (it does not outlive the node anyway).
                        self.answer(ticket.into_iter().collect(), true);
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
                        tracing::error!(queue = %name, error = %e, "cannot write a message to disk");
                    }
                    self.answer(ticket.into_iter().collect(), !durable);
                    self.levels[level].push_mem(entry);
                }
            }
        } else {
            self.answer(ticket.into_iter().collect(), true);
            self.levels[level].push_mem(entry);
        }
        // drop-head: the oldest messages make room.
        while overflow == Overflow::DropHead && self.over_limit() {
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
        self.answer(ticket.into_iter().collect(), true);
        let entry = Entry {
            seq,
            message,
            redelivered: false,
            delivery_count: 0,
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
        let now = self.now;
        match self.unacked.get_mut(&seq) {
            // Delivered: if it comes back (rejected, or its channel closes), it has expired.
            Some(u) => u.entry.expires_at = now,
            None => {
                if let Some(left) = self.pop_ready() {
                    self.drop_message(left, Reason::Expired);
                }
            }
        }
    }
}
