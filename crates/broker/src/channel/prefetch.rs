//! What bounds the deliveries a channel is sent, kept on the channel's side of the queue
//! seam so that a queue only ever sees numbers.
//!
//! - **Credit.** Each consumer starts with [`CREDIT`] in its queue and grants it back as its
//!   connection takes deliveries in (a delivery costs `credit_cost` of its size). A client
//!   that does not read stops the connection taking mail, so the credit runs out and its
//!   queues hold their messages: the connection's mailbox stays bounded, as RabbitMQ's
//!   credit flow between queue and channel keeps it.
//! - **Prefetch.** `basic.qos` without `global` is each new consumer's own limit, which its
//!   queue enforces. With `global` (RabbitMQ's channel-wide prefetch) the limit is shared by
//!   the channel's consumers, across queues: each queue is told the limit as the consumer's
//!   own (so no queue sends more than it), and the channel holds back any delivery that
//!   would take the channel as a whole past it, writing it once acknowledgements make room.

use super::consume::Unacked;
use super::{Channel, Ctx};
use crate::mail::Delivery;
use crate::queue::QueueHandle;
use std::collections::VecDeque;

/// The credit a consumer starts with in its queue.
pub const CREDIT: u32 = 2048;
/// Credit is granted back once this much has been taken in, not delivery by delivery.
const GRANT_AT: i64 = CREDIT as i64 / 4;

/// The channel-wide prefetch (`basic.qos` with `global`).
#[derive(Debug, Default)]
pub struct SharedPrefetch {
    /// 0: no limit.
    pub limit: u32,
    /// Deliveries written and not yet settled that count against the limit.
    pub used: u32,
    /// Deliveries that arrived while the channel was at its limit, with their queue.
    held: VecDeque<(Delivery, Option<QueueHandle>)>,
}

impl SharedPrefetch {
    fn is_full(&self) -> bool {
        self.limit != 0 && self.used >= self.limit
    }
}

/// The prefetch a consumer's queue enforces: its own, and the channel's if that is lower.
pub fn effective(own: u32, shared: u32) -> u32 {
    match (own, shared) {
        (0, s) => s,
        (o, 0) => o,
        (o, s) => o.min(s),
    }
}

impl Channel {
    /// Sets the channel-wide prefetch; RabbitMQ applies it to existing consumers too.
    pub(super) fn set_shared_prefetch(&mut self, ctx: &mut Ctx<'_>, limit: u32) {
        self.shared.limit = limit;
        for c in self.consumers.values() {
            if let Some(q) = &c.queue {
                q.set_prefetch(c.id, effective(c.prefetch, limit));
            }
        }
        self.write_held(ctx);
    }

    /// A delivery from a queue arrived for one of this channel's consumers: the consumer's
    /// credit goes back to its queue, and the message goes to the client unless the channel
    /// is at its shared limit.
    pub fn deliver(&mut self, ctx: &mut Ctx<'_>, d: Delivery) {
        if d.repeat && self.holds(&d) {
            // A quorum queue's new leader sent again what its old leader had sent here.
            return;
        }
        let Some(c) = self.consumers.get_mut(&d.consumer_tag) else {
            // Its consumer was cancelled, or its queue deleted. The queue still counts the
            // message as out to this channel and takes it back when the channel closes.
            return;
        };
        let queue = c.queue.clone();
        if let Some(q) = &queue {
            c.owed += crate::queue::credit_cost(d.message.body_size());
            if c.owed >= GRANT_AT {
                ctx.outgoing.credit(q, c.id, c.owed as u32);
                c.owed = 0;
            }
        }
        if !d.no_ack && self.shared.is_full() {
            self.shared.held.push_back((d, queue));
            return;
        }
        self.write_delivery(ctx, d, queue);
    }

    /// Whether this channel holds `d`'s message already, unacknowledged or waiting under the
    /// shared limit. Only repeats are looked up, so the scan costs nothing in steady state.
    fn holds(&self, d: &Delivery) -> bool {
        let same = |queue: Option<&QueueHandle>, seq: u64| {
            seq == d.seq && queue.map(QueueHandle::id) == d.queue
        };
        self.unacked.iter().any(|u| same(u.queue.as_ref(), u.seq))
            || self
                .shared
                .held
                .iter()
                .any(|(h, queue)| h.consumer_tag == d.consumer_tag && same(queue.as_ref(), h.seq))
    }

    /// Acknowledgements made room under the shared limit (or it was raised).
    pub(super) fn write_held(&mut self, ctx: &mut Ctx<'_>) {
        while !self.shared.is_full() {
            let Some((d, queue)) = self.shared.held.pop_front() else {
                return;
            };
            self.write_delivery(ctx, d, queue);
        }
    }

    /// Deliveries held for a consumer that is going: back to their queue.
    pub(super) fn requeue_held(&mut self, ctx: &mut Ctx<'_>, tag: &warren_amqp::ShortStr) {
        let (theirs, others): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.shared.held)
            .into_iter()
            .partition(|(d, _)| &d.consumer_tag == tag);
        self.shared.held = others;
        for (d, queue) in theirs {
            if let Some(q) = &queue {
                ctx.outgoing.settle(q, crate::queue::Settle::Unsent, d.seq);
            }
        }
    }

    /// Writes a delivery to the client.
    fn write_delivery(&mut self, ctx: &mut Ctx<'_>, d: Delivery, queue: Option<QueueHandle>) {
        let tag = self.next_tag();
        if !d.no_ack {
            self.shared.used += 1;
            self.unacked.push_back(Unacked {
                tag,
                queue,
                seq: d.seq,
                charged: true,
            });
        }
        super::consume::write_deliver(ctx, self.id, tag, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_of_two_limits_applies() {
        assert_eq!(effective(0, 0), 0);
        assert_eq!(effective(10, 0), 10);
        assert_eq!(effective(0, 5), 5);
        assert_eq!(effective(10, 5), 5);
        assert_eq!(effective(3, 5), 3);
    }
}
