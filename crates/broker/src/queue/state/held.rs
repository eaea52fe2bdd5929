//! At-least-once dead-lettering (a quorum queue's `x-dead-letter-strategy: at-least-once`): a
//! message the queue drops is held, as it will be republished, until the leader reports that
//! every queue the dead-letter exchange routed it to confirmed it. Held messages are part of
//! the replicated state, so a new leader publishes them again (duplicates are allowed, losses
//! are not), and they count against the queue's length limits, as in RabbitMQ's `rabbit_fifo`.
//! RabbitMQ uses this strategy only with `x-overflow: reject-publish` and a dead-letter
//! exchange; otherwise it falls back to at-most-once.

use super::{Effect, QueueState};
use crate::message::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use warren_meta::Overflow;

/// Dead letters not yet confirmed, by number.
#[derive(Debug, Default)]
pub(super) struct Held {
    messages: BTreeMap<u64, Arc<Message>>,
    next: u64,
    bytes: u64,
}

impl Held {
    fn add(&mut self, message: Arc<Message>) -> u64 {
        let id = self.next;
        self.next += 1;
        self.bytes += message.body_size();
        self.messages.insert(id, message);
        id
    }

    fn remove(&mut self, id: u64) {
        if let Some(m) = self.messages.remove(&id) {
            self.bytes -= m.body_size();
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.messages.len() as u64
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn clear(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }

    /// What an image keeps: the messages in order, and the next number.
    pub(super) fn entries(&self) -> (impl Iterator<Item = (u64, &Arc<Message>)> + '_, u64) {
        (self.messages.iter().map(|(id, m)| (*id, m)), self.next)
    }

    pub(super) fn of(messages: impl IntoIterator<Item = (u64, Arc<Message>)>, next: u64) -> Held {
        let messages: BTreeMap<u64, Arc<Message>> = messages.into_iter().collect();
        let bytes = messages.values().map(|m| m.body_size()).sum();
        Held {
            messages,
            next,
            bytes,
        }
    }
}

impl QueueState {
    /// Whether dropped messages are held until confirmed: RabbitMQ's conditions for its
    /// at-least-once strategy.
    pub(super) fn dead_letters_at_least_once(&self) -> bool {
        let args = &self.info.args;
        self.replicated
            && args.dead_letter_at_least_once
            && args.dead_letter_exchange.is_some()
            && args.overflow == Overflow::RejectPublish
    }

    /// Holds a dead letter and asks the leader to publish it.
    pub(super) fn hold(&mut self, message: Arc<Message>) {
        let id = self.held.add(message.clone());
        self.effects.push(Effect::DeadLetter {
            message,
            held: Some(id),
        });
    }

    /// The leader reports these dead letters confirmed by every queue they were routed to.
    pub(super) fn dead_lettered(&mut self, ids: &[u64]) {
        for id in ids {
            self.held.remove(*id);
        }
    }

    /// The held dead letters, for a new leader to publish again.
    pub(super) fn held_again(&self) -> impl Iterator<Item = Effect> + '_ {
        self.held.messages.iter().map(|(id, m)| Effect::DeadLetter {
            message: m.clone(),
            held: Some(*id),
        })
    }

    /// Dead letters held until confirmed.
    #[cfg(test)]
    pub fn held_len(&self) -> u64 {
        self.held.len()
    }
}
