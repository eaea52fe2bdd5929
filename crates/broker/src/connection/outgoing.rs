//! Work for queues gathered while a connection handles one chunk of input: the messages it
//! routed, one list per queue, the acknowledgements it received, one list per queue and
//! outcome, and the credit its consumers grant back. Each queue gets each list as one mailbox message: a mailbox send (and a wake-up)
//! per queue per read, not per message.
//!
//! The connection flushes before anything that must see the queues up to date: the end of the
//! chunk (before confirms are written), and any method other than a publish or an
//! acknowledgement.

use crate::mail::ConnHandle;
use crate::message::Message;
use crate::queue::{QueueHandle, Settle, Ticket, ticket_mail};
use std::sync::Arc;
use std::time::Duration;

/// The longest a flush waits for a congested queue (see `queue::flow`): long enough for busy
/// consumers to catch up, short enough that a queue whose consumers have stalled only slows
/// its publishers down.
const FLOW_WAIT: Duration = Duration::from_millis(20);

type Batch = Vec<(Arc<Message>, Option<Ticket>)>;

#[derive(Default)]
pub struct Outgoing {
    publishes: Vec<(QueueHandle, Batch)>,
    settles: Vec<(QueueHandle, Settle, Vec<u64>)>,
    /// Credit granted back: queue, consumer id, amount.
    credits: Vec<(QueueHandle, u64, u32)>,
    /// Whether this connection consumes: such a connection never waits on a queue's flow,
    /// since the queue may be waiting for its acknowledgements.
    pub consumes: bool,
}

impl Outgoing {
    pub fn push(&mut self, queue: &QueueHandle, message: Arc<Message>, ticket: Option<Ticket>) {
        match self
            .publishes
            .iter_mut()
            .find(|(q, _)| q.id() == queue.id())
        {
            Some((_, list)) => list.push((message, ticket)),
            None => self
                .publishes
                .push((queue.clone(), vec![(message, ticket)])),
        }
    }

    /// Tells `queue` what became of one of its deliveries, at the next flush.
    pub fn settle(&mut self, queue: &QueueHandle, how: Settle, seq: u64) {
        match self
            .settles
            .iter_mut()
            .find(|(q, h, _)| *h == how && q.id() == queue.id())
        {
            Some((_, _, seqs)) => seqs.push(seq),
            None => self.settles.push((queue.clone(), how, vec![seq])),
        }
    }

    /// Grants a consumer credit back, at the next flush.
    pub fn credit(&mut self, queue: &QueueHandle, consumer: u64, n: u32) {
        self.credits.push((queue.clone(), consumer, n));
    }

    pub fn is_empty(&self) -> bool {
        self.publishes.is_empty() && self.settles.is_empty() && self.credits.is_empty()
    }

    /// Hands every list to its queue, waiting where a mailbox is full or (for a connection
    /// that only publishes) briefly where the queue is congested. `me` is told about
    /// publishes whose queue went away meanwhile.
    pub async fn flush(&mut self, me: &ConnHandle) {
        // Settles and credit first: they let consumers take more, which is what a congested
        // queue needs.
        for (queue, how, seqs) in self.settles.drain(..) {
            queue.settle(seqs, how);
        }
        for (queue, consumer, n) in self.credits.drain(..) {
            queue.credit(consumer, n);
        }
        for (queue, batch) in self.publishes.drain(..) {
            if !self.consumes && queue.flow().is_congested() {
                let _ = tokio::time::timeout(FLOW_WAIT, queue.flow().wait()).await;
            }
            if let Err(lost) = queue.publish_batch(batch).await {
                // The queue was deleted meanwhile: like RabbitMQ, the message counts as routed
                // and whoever waits for it is answered. A queue on another node that could not
                // be reached may still exist, without the message: that is refused (nacked).
                let tickets = lost.into_iter().filter_map(|(_, t)| t).collect();
                for (_, mail) in ticket_mail(tickets, queue.is_local()) {
                    me.send(mail);
                }
            }
        }
    }
}
