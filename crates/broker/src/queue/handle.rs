//! `QueueHandle`: the one way the rest of the broker reaches a queue.
//!
//! Today every queue is a local actor behind a bounded mailbox. The handle is the seam for
//! what comes next: a queue on another node or a Raft-replicated quorum queue will be another
//! backend behind these same methods, so channels and routing will not change.

use super::command::{ConsumerSpec, GetReply, QueueCmd, Settle};
use super::flow::Flow;
use super::storage::Ticket;
use crate::message::Message;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use warren_amqp::{AmqpError, AmqpResult, ShortStr};
use warren_meta::{ConnId, Overflow, Queue, QueueId};

#[derive(Debug)]
struct Inner {
    vhost: String,
    /// What the queue is, as the topology recorded it when it was declared.
    queue: Queue,
    tx: mpsc::Sender<QueueCmd>,
    /// Acknowledgements jump the queue of commands: they give consumers credit back, and
    /// behind a mailbox full of publishes they would hold deliveries up.
    settles: mpsc::UnboundedSender<(Vec<u64>, Settle)>,
    flow: Flow,
}

#[derive(Debug, Clone)]
pub struct QueueHandle {
    inner: Arc<Inner>,
}

impl QueueHandle {
    pub(crate) fn new(
        vhost: String,
        queue: Queue,
        tx: mpsc::Sender<QueueCmd>,
        settles: mpsc::UnboundedSender<(Vec<u64>, Settle)>,
    ) -> Self {
        QueueHandle {
            inner: Arc::new(Inner {
                vhost,
                queue,
                tx,
                settles,
                flow: Flow::default(),
            }),
        }
    }

    /// The queue's publisher flow control.
    pub fn flow(&self) -> &Flow {
        &self.inner.flow
    }

    pub fn id(&self) -> QueueId {
        self.inner.queue.id
    }

    pub fn name(&self) -> &ShortStr {
        &self.inner.queue.name
    }

    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    pub fn vhost(&self) -> &str {
        &self.inner.vhost
    }

    /// Whether the queue's actor still takes commands.
    pub fn is_running(&self) -> bool {
        !self.inner.tx.is_closed()
    }

    fn gone(&self) -> AmqpError {
        AmqpError::not_found(format!(
            "no queue '{}' in vhost '{}'",
            self.inner.queue.name, self.inner.vhost
        ))
    }

    async fn send(&self, cmd: QueueCmd) -> bool {
        self.inner.tx.send(cmd).await.is_ok()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> QueueCmd) -> AmqpResult<T> {
        let (tx, rx) = oneshot::channel();
        if !self.send(make(tx)).await {
            return Err(self.gone());
        }
        rx.await.map_err(|_| self.gone())
    }

    /// Enqueues messages; gives them back if the queue no longer exists. Each ticket is
    /// settled once its message is on disk (or refused).
    pub async fn publish_batch(
        &self,
        batch: Vec<(Arc<Message>, Option<Ticket>)>,
    ) -> Result<(), Vec<(Arc<Message>, Option<Ticket>)>> {
        match self.inner.tx.send(QueueCmd::Publish(batch)).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(QueueCmd::Publish(batch))) => Err(batch),
            Err(_) => Err(Vec::new()),
        }
    }

    /// Whether a publisher confirm for this message must wait for the queue's answer: it is
    /// kept across restarts (confirmed once on disk), or the queue may refuse it for length.
    pub fn needs_ticket(&self, message: &Message) -> bool {
        let info = &self.inner.queue;
        let refuses = info.args.overflow != Overflow::DropHead
            && (info.args.max_length.is_some() || info.args.max_length_bytes.is_some());
        (info.durable && message.properties.is_persistent()) || refuses
    }

    pub(crate) fn sender(&self) -> mpsc::Sender<QueueCmd> {
        self.inner.tx.clone()
    }

    /// Acknowledges, requeues or drops messages delivered from this queue.
    pub fn settle(&self, seqs: Vec<u64>, how: Settle) {
        if !seqs.is_empty() {
            // Bounded by what was delivered, so this cannot grow without limit; a queue that
            // is gone has nothing to settle.
            let _ = self.inner.settles.send((seqs, how));
        }
    }

    /// Asks the queue to try delivering again (credit came back). Never waits: a full
    /// mailbox means the queue will look at its consumers soon anyway.
    pub fn wake(&self) {
        let _ = self.inner.tx.try_send(QueueCmd::Wake);
    }

    pub async fn consume(&self, consumer: ConsumerSpec) -> AmqpResult<()> {
        self.ask(|reply| QueueCmd::Consume { consumer, reply })
            .await?
    }

    /// Removes a consumer; returns once no further delivery for it will be sent.
    pub async fn cancel(&self, conn_id: ConnId, channel_key: u64, tag: ShortStr) {
        let _ = self
            .ask(|reply| QueueCmd::Cancel {
                conn_id,
                channel_key,
                tag,
                reply,
            })
            .await;
    }

    /// A channel closed: its consumers go and what it had not acknowledged is requeued.
    pub async fn channel_closed(&self, conn_id: ConnId, channel_key: u64) {
        self.send(QueueCmd::ChannelClosed {
            conn_id,
            channel_key,
        })
        .await;
    }

    pub async fn get(
        &self,
        conn_id: ConnId,
        channel_key: u64,
        no_ack: bool,
    ) -> AmqpResult<Option<GetReply>> {
        self.ask(|reply| QueueCmd::Get {
            conn_id,
            channel_key,
            no_ack,
            reply,
        })
        .await
    }

    pub async fn purge(&self) -> AmqpResult<u32> {
        self.ask(|reply| QueueCmd::Purge { reply }).await
    }

    /// Message and consumer counts, as declare-ok reports them.
    pub async fn counts(&self) -> AmqpResult<(u32, u32)> {
        self.ask(|reply| QueueCmd::Counts { reply }).await
    }

    /// Deletes the queue if the conditions hold; returns the number of messages it held.
    pub async fn delete(&self, if_unused: bool, if_empty: bool) -> AmqpResult<u32> {
        self.ask(|reply| QueueCmd::Delete {
            if_unused,
            if_empty,
            reply,
        })
        .await?
    }

    /// Stops the queue with its node, keeping its log; returns once its records are written.
    pub async fn shut_down(&self) {
        let _ = self.ask(|done| QueueCmd::Shutdown { done }).await;
    }
}
