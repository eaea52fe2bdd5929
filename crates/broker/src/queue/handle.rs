//! `QueueHandle`: the one way the rest of the broker reaches a queue, whatever kind it is.
//!
//! Like RabbitMQ's `rabbit_queue_type`, it is one boundary that every kind of queue sits
//! behind, and only data crosses it: messages, consumer specs and tickets that name their
//! connection by id, settlements and credit by sequence number and consumer id. What comes
//! back (deliveries, confirms, cancellations) arrives as mail in the connection's own mailbox
//! (`crate::mail`), never through this handle. Behind it is an actor on this node (a classic
//! queue, or this node's member of a quorum queue) or one on another node, reached with the
//! same commands over the cluster's links, so channels and routing do not care which.
//!
//! Publisher flow control ([`Flow`]) is the one piece of queue state a publisher reads: a
//! local queue writes it directly, a remote one will mirror it from its node's messages.

use super::actor::QueueCmd;
use super::command::{ConsumerSpec, GetReply, Settle, Ticket};
use super::flow::Flow;
use super::remote::{Peers, tell_frame};
use super::state::{Command, ConsumerRow, Reply};
use super::wire::{Answer, Cmd, QueueRef, WireMessage};
use crate::message::Message;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};
use warren_amqp::{AmqpError, AmqpResult, ShortStr};
use warren_meta::{ConnId, NodeId, Overflow, Queue, QueueId};

/// Where a queue runs.
#[derive(Debug)]
enum Backend {
    /// An actor on this node.
    Local {
        tx: mpsc::Sender<QueueCmd>,
        /// Settlements and credit jump the queue of commands: they let the queue deliver
        /// again, and behind a mailbox full of publishes they would hold deliveries up.
        control: mpsc::UnboundedSender<Command>,
    },
    /// An actor on another node, reached over the cluster's queue channel.
    Remote {
        via: Via,
        peers: Arc<Peers>,
        target: QueueRef,
    },
}

impl Backend {
    fn remote(
        vhost: &str,
        queue: &Queue,
        (first, others): (NodeId, Vec<NodeId>),
        peers: Arc<Peers>,
    ) -> Backend {
        Backend::Remote {
            via: Via { first, others },
            peers,
            target: QueueRef {
                vhost: vhost.to_owned(),
                name: queue.name.clone(),
                id: queue.id,
            },
        }
    }
}

/// Where a queue on other nodes is reached: a classic queue's home node, or any member of a
/// quorum queue that can be reached (the first that can, in the order given).
#[derive(Debug)]
struct Via {
    first: NodeId,
    others: Vec<NodeId>,
}

impl Via {
    fn pick(&self, peers: &Peers) -> NodeId {
        if self.others.is_empty() || peers.is_reachable(self.first) {
            return self.first;
        }
        self.others
            .iter()
            .copied()
            .find(|n| peers.is_reachable(*n))
            .unwrap_or(self.first)
    }
}

#[derive(Debug)]
struct Inner {
    vhost: String,
    /// What the queue is, as the topology recorded it when it was declared.
    queue: Queue,
    backend: Backend,
    /// Where a quorum queue is reached once this node's member of it is gone (see
    /// [`QueueHandle::move_to_members`]).
    moved: OnceLock<Backend>,
    flow: Arc<Flow>,
}

/// A queue's messages and consumers as listings show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Ready to be delivered.
    pub ready: u32,
    /// Delivered and not yet acknowledged.
    pub unacked: u32,
    pub consumers: u32,
}

#[derive(Debug, Clone)]
pub struct QueueHandle {
    inner: Arc<Inner>,
}

type Batch = Vec<(Arc<Message>, Option<Ticket>)>;

impl QueueHandle {
    pub(crate) fn local(
        vhost: String,
        queue: Queue,
        tx: mpsc::Sender<QueueCmd>,
        control: mpsc::UnboundedSender<Command>,
        flow: Arc<Flow>,
    ) -> Self {
        QueueHandle {
            inner: Arc::new(Inner {
                vhost,
                queue,
                backend: Backend::Local { tx, control },
                moved: OnceLock::new(),
                flow,
            }),
        }
    }

    /// The handle of a queue whose actor runs on node `node`.
    pub(crate) fn remote(vhost: String, queue: Queue, node: NodeId, peers: Arc<Peers>) -> Self {
        Self::remote_via(vhost, queue, (node, Vec::new()), peers)
    }

    /// The handle of a quorum queue this node holds no member of: it reaches the first of
    /// `members` it can (their order is the preference), and moves on when that one goes.
    pub(crate) fn remote_any(
        vhost: String,
        queue: Queue,
        members: &[NodeId],
        peers: Arc<Peers>,
    ) -> Option<Self> {
        let (first, others) = members.split_first()?;
        Some(Self::remote_via(
            vhost,
            queue,
            (*first, others.to_vec()),
            peers,
        ))
    }

    fn remote_via(
        vhost: String,
        queue: Queue,
        (first, others): (NodeId, Vec<NodeId>),
        peers: Arc<Peers>,
    ) -> Self {
        QueueHandle {
            inner: Arc::new(Inner {
                backend: Backend::remote(&vhost, &queue, (first, others), peers),
                vhost,
                queue,
                moved: OnceLock::new(),
                flow: Arc::new(Flow::default()),
            }),
        }
    }

    /// This node's member of a quorum queue is gone, the queue is not: whoever holds this
    /// handle (a channel's consumers, with their deliveries to settle and credit to grant)
    /// goes on through the queue's `members` from now on, as RabbitMQ's consumers talk to the
    /// queue, not to the member on their node. The member itself is still stopped through
    /// the handle ([`QueueHandle::shut_down`]).
    pub(crate) fn move_to_members(&self, members: &[NodeId], peers: Arc<Peers>) {
        let Some((first, others)) = members.split_first() else {
            return;
        };
        let to = Backend::remote(
            &self.inner.vhost,
            &self.inner.queue,
            (*first, others.to_vec()),
            peers,
        );
        let _ = self.inner.moved.set(to);
    }

    /// Where commands go: the member on this node, or wherever the queue moved.
    fn backend(&self) -> &Backend {
        self.inner.moved.get().unwrap_or(&self.inner.backend)
    }

    /// Whether the queue's actor runs on this node.
    pub fn is_local(&self) -> bool {
        matches!(self.backend(), Backend::Local { .. })
    }

    /// The node a queue on another node lives on (none: this one, or a quorum queue, which
    /// lives on all its members and outlives any one of them).
    pub fn remote_node(&self) -> Option<NodeId> {
        match self.backend() {
            Backend::Remote { via, .. } if via.others.is_empty() => Some(via.first),
            _ => None,
        }
    }

    /// Whether messages routed to the queue can reach it now: a queue on a node that is down
    /// is left out of routing, as in RabbitMQ.
    pub fn is_reachable(&self) -> bool {
        match self.backend() {
            Backend::Local { .. } => true,
            Backend::Remote { via, peers, .. } => peers.is_reachable(via.pick(peers)),
        }
    }

    /// Node `node` went down: the queue forgets that node's connections.
    pub(crate) fn node_gone(&self, node: NodeId) {
        if let Backend::Local { control, .. } = self.backend() {
            let _ = control.send(Command::NodeGone { node });
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

    /// Whether the queue still takes commands.
    pub fn is_running(&self) -> bool {
        match self.backend() {
            Backend::Local { tx, .. } => !tx.is_closed(),
            Backend::Remote { .. } => true,
        }
    }

    fn gone(&self) -> AmqpError {
        let (name, vhost) = (&self.inner.queue.name, &self.inner.vhost);
        match self.backend() {
            Backend::Local { .. } => {
                AmqpError::not_found(format!("no queue '{name}' in vhost '{vhost}'"))
            }
            // RabbitMQ's words for a queue whose node cannot be reached.
            Backend::Remote { via, peers, .. } => AmqpError::not_found(format!(
                "home node '{}' of durable queue '{name}' in vhost '{vhost}' is down or inaccessible",
                peers.name_of(via.pick(peers))
            )),
        }
    }

    async fn tell(&self, cmd: Command) -> bool {
        match self.backend() {
            Backend::Local { tx, .. } => tx.send(QueueCmd::Tell(cmd)).await.is_ok(),
            Backend::Remote { via, peers, target } => match Cmd::of(cmd) {
                Some(cmd) => peers.tell(via.pick(peers), target, cmd).await,
                None => false,
            },
        }
    }

    /// Sends a command that must not wait behind publishes.
    fn control(&self, cmd: Command) {
        match self.backend() {
            // Bounded by what was delivered and granted, so this cannot grow without limit;
            // a queue that is gone has nothing to settle.
            Backend::Local { control, .. } => {
                let _ = control.send(cmd);
            }
            Backend::Remote { via, peers, target } => {
                if let Some(cmd) = Cmd::of(cmd) {
                    peers.send_in_order(via.pick(peers), tell_frame(target, cmd));
                }
            }
        }
    }

    async fn ask(&self, cmd: Command) -> AmqpResult<Reply> {
        let (reply, answer) = oneshot::channel();
        let sent = match self.backend() {
            Backend::Local { tx, .. } => tx.send(QueueCmd::Ask(cmd, reply)).await.is_ok(),
            Backend::Remote { via, peers, target } => {
                let cmd = Cmd::of(cmd).ok_or_else(|| self.gone())?;
                let answer = peers.ask(via.pick(peers), target, cmd).await;
                return answer
                    .and_then(Answer::into_reply)
                    .ok_or_else(|| self.gone());
            }
        };
        if !sent {
            return Err(self.gone());
        }
        answer.await.map_err(|_| self.gone())
    }

    fn unexpected(&self, r: Reply) -> AmqpError {
        AmqpError::internal_error(format!(
            "queue '{}' answered out of turn: {r:?}",
            self.inner.queue.name
        ))
    }

    /// Enqueues messages; gives them back if the queue no longer exists. Each ticket is
    /// answered once its message is on disk (or refused).
    pub async fn publish_batch(&self, batch: Batch) -> Result<(), Batch> {
        match self.backend() {
            Backend::Local { tx, .. } => {
                match tx.send(QueueCmd::Tell(Command::Publish(batch))).await {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::SendError(QueueCmd::Tell(Command::Publish(batch)))) => {
                        Err(batch)
                    }
                    Err(_) => Err(Vec::new()),
                }
            }
            Backend::Remote { via, peers, target } => {
                let wire = batch
                    .iter()
                    .map(|(m, t)| (WireMessage::of(m), t.clone()))
                    .collect();
                match peers.publish(via.pick(peers), target, wire).await {
                    true => Ok(()),
                    false => Err(batch),
                }
            }
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

    /// Runs a command another node sent for this (local) queue; the reply, if it asked for
    /// one (none: the queue is gone).
    pub(crate) async fn run_for_peer(&self, cmd: Command, ask: bool) -> Option<Reply> {
        match cmd {
            Command::Settle(..) | Command::Credit { .. } | Command::Prefetch { .. } => {
                self.control(cmd);
                Some(Reply::Done)
            }
            cmd if ask => self.ask(cmd).await.ok(),
            cmd => self.tell(cmd).await.then_some(Reply::Done),
        }
    }

    /// Acknowledges, requeues or drops messages delivered from this queue.
    pub fn settle(&self, seqs: Vec<u64>, how: Settle) {
        if !seqs.is_empty() {
            self.control(Command::Settle(seqs, how));
        }
    }

    /// Grants a consumer more credit: its connection took `n` worth of deliveries in.
    pub fn credit(&self, consumer: u64, n: u32) {
        if n > 0 {
            self.control(Command::Credit { consumer, n });
        }
    }

    /// Changes how many unacknowledged deliveries a consumer may have (0: unlimited).
    pub fn set_prefetch(&self, consumer: u64, prefetch: u32) {
        self.control(Command::Prefetch { consumer, prefetch });
    }

    /// Adds a consumer; returns its id in this queue.
    pub async fn consume(&self, consumer: ConsumerSpec) -> AmqpResult<u64> {
        match self.ask(Command::Consume(consumer)).await? {
            Reply::Consumed(r) => r,
            other => Err(self.unexpected(other)),
        }
    }

    /// Removes a consumer; returns once no further delivery for it will be sent.
    pub async fn cancel(&self, conn: ConnId, channel_key: u64, tag: ShortStr) {
        let _ = self
            .ask(Command::Cancel {
                conn,
                channel_key,
                tag,
            })
            .await;
    }

    /// A channel closed: its consumers go and what it had not acknowledged is requeued.
    pub async fn channel_closed(&self, conn: ConnId, channel_key: u64) {
        self.tell(Command::ChannelClosed { conn, channel_key })
            .await;
    }

    pub async fn get(
        &self,
        conn: ConnId,
        channel_key: u64,
        no_ack: bool,
    ) -> AmqpResult<Option<GetReply>> {
        match self
            .ask(Command::Get {
                conn,
                channel_key,
                no_ack,
            })
            .await?
        {
            Reply::Got(got) => Ok(got),
            other => Err(self.unexpected(other)),
        }
    }

    pub async fn purge(&self) -> AmqpResult<u32> {
        match self.ask(Command::Purge).await? {
            Reply::Purged(n) => Ok(n),
            other => Err(self.unexpected(other)),
        }
    }

    /// Message and consumer counts, as declare-ok reports them.
    pub async fn counts(&self) -> AmqpResult<(u32, u32)> {
        self.stats().await.map(|s| (s.ready, s.consumers))
    }

    /// What listings show of the queue's messages and consumers.
    pub async fn stats(&self) -> AmqpResult<QueueStats> {
        match self.ask(Command::Counts).await? {
            Reply::Counts {
                messages,
                unacked,
                consumers,
            } => Ok(QueueStats {
                ready: messages,
                unacked,
                consumers,
            }),
            other => Err(self.unexpected(other)),
        }
    }

    /// The queue's consumers, for listings.
    pub async fn consumers(&self) -> AmqpResult<Vec<ConsumerRow>> {
        match self.ask(Command::Consumers).await? {
            Reply::Consumers(rows) => Ok(rows),
            other => Err(self.unexpected(other)),
        }
    }

    /// Deletes the queue if the conditions hold; returns the number of messages it held.
    pub async fn delete(&self, if_unused: bool, if_empty: bool) -> AmqpResult<u32> {
        match self
            .ask(Command::Delete {
                if_unused,
                if_empty,
            })
            .await?
        {
            Reply::Deleted(r) => r,
            other => Err(self.unexpected(other)),
        }
    }

    /// Stops the queue with its node, keeping its log; returns once its records are written.
    pub async fn shut_down(&self) {
        // The actor this handle started with, even if the queue moved (see `move_to_members`).
        match &self.inner.backend {
            // Its own node stops it.
            Backend::Remote { .. } => {}
            Backend::Local { tx, .. } => {
                let (done, written) = oneshot::channel();
                if tx.send(QueueCmd::Shutdown(done)).await.is_ok() {
                    let _ = written.await;
                }
            }
        }
    }
}
