//! At-least-once dead-lettering, the leader's half: publishes the dead letters the replicas
//! hold (see `queue::state::held`) to the queues the dead-letter exchange routes them to, with
//! a ticket each, as a publisher in confirm mode would, and reports each one whose every target
//! confirmed it, so that the replicas let it go. One with no route, or refused by a target,
//! is published again after a pause (RabbitMQ's worker waits for its
//! `dead_letter_worker_publisher_confirm_timeout`, 3 minutes by default). A leader that loses
//! its leadership forgets what it had out: the next one publishes everything still held.

use crate::mail::{ConnHandle, ConnMsg, Mailboxes};
use crate::message::Message;
use crate::queue::{DeadLetterSink, QueueHandle, Ticket};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use warren_meta::{ConnId, Overflow, Queue};

/// Dead letters out at once, waiting for their confirms (RabbitMQ's worker takes 32).
const WINDOW: usize = 256;

/// The pause before a dead letter with no route, or refused, is published again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What RabbitMQ logs when a queue asks for at-least-once dead-lettering that cannot be had
/// (the client is told nothing): without a dead-letter exchange there is none at all, with
/// `drop-head` it is at most once.
pub(crate) fn fallback_warning(vhost: &str, queue: &Queue) -> Option<String> {
    let args = &queue.args;
    if !args.dead_letter_at_least_once {
        return None;
    }
    let which = format!("queue '{}' in vhost '{vhost}'", queue.name);
    if args.dead_letter_exchange.is_none() {
        return Some(format!(
            "Disabling dead-lettering for {which} despite configured dead-letter-strategy \
             'at-least-once' because dead-letter-exchange is not configured."
        ));
    }
    (args.overflow == Overflow::DropHead).then(|| {
        format!(
            "Falling back to dead-letter-strategy at-most-once for {which} because configured \
             dead-letter-strategy at-least-once is incompatible with effective overflow \
             strategy drop-head. To enable dead-letter-strategy at-least-once, set overflow \
             strategy to reject-publish."
        )
    })
}

/// A dead letter out to its targets.
struct Out {
    message: Arc<Message>,
    /// Confirms still to come.
    left: u32,
    refused: bool,
}

pub(crate) struct DeadLetterWorker {
    conn: ConnHandle,
    post: Arc<Mailboxes>,
    sink: DeadLetterSink,
    /// Tickets of one leadership carry its number (as their channel key): a confirm for an
    /// earlier one is not counted.
    generation: u64,
    out: HashMap<u64, Out>,
    waiting: VecDeque<(u64, Arc<Message>)>,
    known: HashSet<u64>,
    /// Refused or unroutable, and when they go again.
    again: Vec<(u64, Arc<Message>)>,
    again_at: Option<Instant>,
    confirmed: Vec<u64>,
    /// To the task that hands dead letters to their queues, in order.
    sends: mpsc::UnboundedSender<Send>,
}

/// A dead letter for one queue, with its ticket and the generation it belongs to.
type Send = (QueueHandle, Arc<Message>, Option<Ticket>, u64);

/// Hands dead letters to their queues one after the other, so they arrive in the order they
/// were dropped: a queue's mailbox may be full, and the leader's loop must not wait on it.
/// Ends when the worker goes.
async fn hand_over(mut sends: mpsc::UnboundedReceiver<Send>, me: ConnHandle) {
    while let Some((q, message, ticket, generation)) = sends.recv().await {
        let Some(id) = ticket.as_ref().map(|t| t.seq) else {
            let _ = q.publish_batch(vec![(message, None)]).await;
            continue;
        };
        if q.publish_batch(vec![(message, ticket)]).await.is_err() {
            // The queue went: no confirm will come from it.
            me.send(ConnMsg::Confirmed {
                channel: 0,
                channel_key: generation,
                seqs: vec![id],
                ok: false,
            });
        }
    }
}

impl DeadLetterWorker {
    /// A worker whose confirms come to connection id `conn` on this node; returns it with its
    /// mailbox, which the leader's loop reads.
    pub(crate) fn new(
        conn: ConnId,
        post: Arc<Mailboxes>,
        sink: DeadLetterSink,
    ) -> (DeadLetterWorker, mpsc::UnboundedReceiver<ConnMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = ConnHandle { id: conn, tx };
        post.register(&conn);
        let (sends, to_send) = mpsc::unbounded_channel();
        tokio::spawn(hand_over(to_send, conn.clone()));
        let worker = DeadLetterWorker {
            conn,
            post,
            sink,
            generation: 0,
            out: HashMap::new(),
            waiting: VecDeque::new(),
            known: HashSet::new(),
            again: Vec::new(),
            again_at: None,
            confirmed: Vec::new(),
            sends,
        };
        (worker, rx)
    }

    /// The member no longer leads: what it had out is the next leader's to publish.
    pub(crate) fn forget(&mut self) {
        self.generation += 1;
        self.out.clear();
        self.waiting.clear();
        self.known.clear();
        self.again.clear();
        self.again_at = None;
    }

    /// A held dead letter to publish (once: a takeover hands over everything held again).
    pub(crate) fn take(&mut self, id: u64, message: Arc<Message>) {
        if self.known.insert(id) {
            self.waiting.push_back((id, message));
            self.pump();
        }
    }

    fn pump(&mut self) {
        while self.out.len() < WINDOW {
            let Some((id, message)) = self.waiting.pop_front() else {
                return;
            };
            self.publish(id, message);
        }
    }

    fn publish(&mut self, id: u64, message: Arc<Message>) {
        let queues: Vec<_> = self
            .sink
            .route(&message)
            .into_iter()
            .filter(|q| q.is_reachable())
            .collect();
        if queues.is_empty() {
            self.refused(id, message);
            return;
        }
        let mut left = 0;
        let mut sends = Vec::new();
        for q in queues {
            let ticket = q.needs_ticket(&message).then_some(Ticket {
                conn: self.conn.id,
                channel: 0,
                channel_key: self.generation,
                seq: id,
                commit: false,
            });
            left += u32::from(ticket.is_some());
            sends.push((q, ticket));
        }
        if left == 0 {
            self.confirmed(id);
        } else {
            self.out.insert(
                id,
                Out {
                    message: message.clone(),
                    left,
                    refused: false,
                },
            );
        }
        for (q, ticket) in sends {
            let _ = self
                .sends
                .send((q, message.clone(), ticket, self.generation));
        }
    }

    fn confirmed(&mut self, id: u64) {
        self.known.remove(&id);
        self.confirmed.push(id);
    }

    fn refused(&mut self, id: u64, message: Arc<Message>) {
        self.again.push((id, message));
        self.again_at
            .get_or_insert_with(|| Instant::now() + RETRY_AFTER);
    }

    /// Mail to the worker's connection: the targets' confirms.
    pub(crate) fn mail(&mut self, msg: ConnMsg) {
        let ConnMsg::Confirmed {
            channel_key,
            seqs,
            ok,
            ..
        } = msg
        else {
            return;
        };
        if channel_key != self.generation {
            return;
        }
        for id in seqs {
            let Some(out) = self.out.get_mut(&id) else {
                continue;
            };
            out.left = out.left.saturating_sub(1);
            out.refused |= !ok;
            if out.left == 0 {
                if let Some(out) = self.out.remove(&id) {
                    if out.refused {
                        self.refused(id, out.message);
                    } else {
                        self.confirmed(id);
                    }
                }
            }
        }
        self.pump();
    }

    /// When the refused go again, if any wait.
    pub(crate) fn again_at(&self) -> Option<Instant> {
        self.again_at
    }

    /// The pause is over: the refused and unroutable go again, ahead of newer ones.
    pub(crate) fn publish_again(&mut self) {
        self.again_at = None;
        for item in std::mem::take(&mut self.again).into_iter().rev() {
            self.waiting.push_front(item);
        }
        self.pump();
    }

    /// The dead letters every target confirmed since last asked, for the replicas to let go.
    pub(crate) fn take_confirmed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.confirmed)
    }
}

impl Drop for DeadLetterWorker {
    fn drop(&mut self) {
        self.post.unregister(self.conn.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_meta::{NodeId, QueueArgs, QueueType, Uid};

    fn queue(args: QueueArgs) -> Queue {
        Queue {
            name: "q".into(),
            id: Uid {
                node: NodeId(1),
                n: 1,
            },
            durable: true,
            auto_delete: false,
            exclusive_owner: None,
            arguments: Default::default(),
            args,
            kind: QueueType::Quorum,
            home: NodeId(1),
            members: Vec::new(),
        }
    }

    #[test]
    fn an_at_least_once_that_cannot_be_had_is_logged_as_rabbitmq_logs_it() {
        let asked = QueueArgs {
            dead_letter_at_least_once: true,
            dead_letter_exchange: Some("dlx".into()),
            ..Default::default()
        };
        let drop_head = fallback_warning("/", &queue(asked.clone())).unwrap();
        assert_eq!(
            drop_head,
            "Falling back to dead-letter-strategy at-most-once for queue 'q' in vhost '/' \
             because configured dead-letter-strategy at-least-once is incompatible with \
             effective overflow strategy drop-head. To enable dead-letter-strategy \
             at-least-once, set overflow strategy to reject-publish."
        );
        let no_exchange = QueueArgs {
            dead_letter_exchange: None,
            overflow: Overflow::RejectPublish,
            ..asked.clone()
        };
        assert_eq!(
            fallback_warning("/", &queue(no_exchange)).unwrap(),
            "Disabling dead-lettering for queue 'q' in vhost '/' despite configured \
             dead-letter-strategy 'at-least-once' because dead-letter-exchange is not \
             configured."
        );
        let fine = QueueArgs {
            overflow: Overflow::RejectPublish,
            ..asked
        };
        assert_eq!(fallback_warning("/", &queue(fine)), None);
        assert_eq!(fallback_warning("/", &queue(QueueArgs::default())), None);
    }
}
