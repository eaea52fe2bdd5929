//! The client side of a queue on another node: `QueueHandle`'s `Backend::Remote` sends the
//! queue seam's commands as frames over the cluster's queue channel ([`Links`]) and waits for
//! answers by number. The receiving node runs them against its local handle
//! (`crate::remote`), and what the queue sends back to connections here arrives as mail.

use super::command::Ticket;
use super::wire::{Answer, Cmd, Frame, QueueRef, WireMessage, encode};
use crate::mail::ConnMsg;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use warren_meta::{ConnId, NodeId, QueueId};

pub type Sending = Pin<Box<dyn Future<Output = bool> + Send>>;

/// How this node sends to another over the queue channel (the binary wires the cluster's
/// links in). Frames to one node arrive in the order they were sent.
pub trait Links: Send + Sync + 'static {
    /// Sends a frame to node `to`; false if there is no link to it (the frame is dropped).
    fn send(&self, to: NodeId, frame: Bytes) -> Sending;
    /// Whether a link to the node called `name` is up now.
    fn is_linked(&self, name: &str) -> bool;
    /// Keeps links up to these members (`name@host:port`), and stops redialling any other
    /// node it was asked to keep before: RabbitMQ's nodes are fully meshed, so every node can
    /// reach every queue whichever nodes the metadata group happens to talk to.
    fn keep_linked(&self, members: Vec<String>);
}

/// The links of a node alone: there is no other node.
pub struct NoLinks;

impl Links for NoLinks {
    fn send(&self, _to: NodeId, _frame: Bytes) -> Sending {
        Box::pin(async { false })
    }

    fn is_linked(&self, _name: &str) -> bool {
        false
    }

    fn keep_linked(&self, _members: Vec<String>) {}
}

/// How long a command waits for a queue on another node to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// How many publish frames this node may have on their way to one queue on another node, or
/// waiting there for the queue to take them. The queue's node gives each back once the queue
/// has it, so a queue that cannot keep up slows the publishers of other nodes as a full
/// mailbox slows its own, and nothing piles up between nodes.
const PUBLISH_WINDOW: u32 = 64;

/// The queue channel's sending side, the answers it waits for, and what it knows of the
/// other nodes' brokers.
pub struct Peers {
    links: Arc<dyn Links>,
    pending: Mutex<HashMap<u64, (NodeId, oneshot::Sender<Answer>)>>,
    next: AtomicU64,
    /// The cluster's nodes by name, for errors that name a queue's home node.
    names: RwLock<HashMap<NodeId, String>>,
    /// Nodes whose broker does not run, as they said or as their link ending showed, until
    /// they say it runs again.
    down: RwLock<HashSet<NodeId>>,
    unanswered: Unanswered,
    /// Publish windows, by node and queue.
    windows: Mutex<HashMap<(NodeId, QueueId), Arc<Semaphore>>>,
    /// Frames sent without waiting, in order, by node (see [`Peers::send_in_order`]).
    outboxes: Mutex<HashMap<NodeId, mpsc::UnboundedSender<Bytes>>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Peers")
    }
}

impl Peers {
    pub fn new(links: Arc<dyn Links>) -> Arc<Peers> {
        Arc::new(Peers {
            links,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            names: RwLock::new(HashMap::new()),
            down: RwLock::new(HashSet::new()),
            unanswered: Unanswered::default(),
            windows: Mutex::new(HashMap::new()),
            outboxes: Mutex::new(HashMap::new()),
        })
    }

    /// The cluster's members changed: `members` are their ids and addresses
    /// (`name@host:port`), `me` this node's id and name.
    pub fn set_members(&self, me: (NodeId, &str), members: Vec<(NodeId, String)>) {
        let mut names: HashMap<NodeId, String> = members
            .iter()
            .map(|(id, addr)| (*id, crate::metadata::node_name(addr).to_owned()))
            .collect();
        names.insert(me.0, me.1.to_owned());
        if let Ok(mut n) = self.names.write() {
            *n = names;
        }
        self.links.keep_linked(
            members
                .into_iter()
                .filter(|(id, _)| *id != me.0)
                .map(|(_, addr)| addr)
                .collect(),
        );
    }

    /// Node `node`'s name, as far as this node knows it.
    pub fn name_of(&self, node: NodeId) -> String {
        self.names
            .read()
            .ok()
            .and_then(|n| n.get(&node).cloned())
            .unwrap_or_else(|| node.to_string())
    }

    pub fn links(&self) -> &Arc<dyn Links> {
        &self.links
    }

    /// Whether node `node`'s broker can be reached: its link is up and it has not said it
    /// stopped. Routing leaves out the queues of nodes that cannot (RabbitMQ does not route
    /// to a queue whose node is down).
    pub fn is_reachable(&self, node: NodeId) -> bool {
        if self.down.read().is_ok_and(|d| d.contains(&node)) {
            return false;
        }
        let name = self.names.read().ok().and_then(|n| n.get(&node).cloned());
        name.is_some_and(|n| self.links.is_linked(&n))
    }

    /// Node `node`'s broker runs again (it said so); whether it was counted as down.
    pub(crate) fn node_up(&self, node: NodeId) -> bool {
        self.down.write().is_ok_and(|mut d| d.remove(&node))
    }

    /// Node `node`'s broker stopped or its link ended, and everything it sent before has been
    /// handled: no answer is coming from it. Whoever waits for one is answered now (asks get
    /// none); returns the tickets it will never answer.
    pub(crate) fn node_down(&self, node: NodeId) -> Vec<Ticket> {
        if let Ok(mut d) = self.down.write() {
            d.insert(node);
        }
        if let Ok(mut p) = self.pending.lock() {
            p.retain(|_, (to, _)| *to != node);
        }
        if let Ok(mut o) = self.outboxes.lock() {
            o.remove(&node);
        }
        // Publishers waiting on a window to it give up (their publishes are refused); the
        // next ones start with full windows, as the node starts with empty lanes.
        if let Ok(mut w) = self.windows.lock() {
            w.retain(|(to, _), window| {
                if *to == node {
                    window.close();
                }
                *to != node
            });
        }
        self.unanswered.take(node)
    }

    fn window(&self, node: NodeId, queue: QueueId) -> Option<Arc<Semaphore>> {
        let mut w = self.windows.lock().ok()?;
        Some(
            w.entry((node, queue))
                .or_insert_with(|| Arc::new(Semaphore::new(PUBLISH_WINDOW as usize)))
                .clone(),
        )
    }

    /// Node `from` handed `n` of this node's publish frames to queue `queue`.
    pub(crate) fn credit(&self, from: NodeId, queue: QueueId, n: u32) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        let Some(window) = windows.get(&(from, queue)) else {
            return;
        };
        // Never more than the window: a credit for a window closed and opened anew (the node
        // went down and came back) must not widen the new one.
        let room = (PUBLISH_WINDOW as usize).saturating_sub(window.available_permits());
        window.add_permits((n as usize).min(room));
        // A window wide open that no publisher holds is forgotten (one is made again when
        // needed): queues come and go, and the map must not keep them all.
        if window.available_permits() == PUBLISH_WINDOW as usize && Arc::strong_count(window) == 1 {
            windows.remove(&(from, queue));
        }
    }

    /// Sends a frame to node `node` without waiting, after those sent before this way:
    /// settlements, credit and replies, which a caller must not wait on and which must not
    /// overtake each other. Bounded by what they answer (deliveries, requests).
    pub(crate) fn send_in_order(&self, node: NodeId, frame: Bytes) {
        let Ok(mut outboxes) = self.outboxes.lock() else {
            return;
        };
        let frame = match outboxes.get(&node) {
            Some(tx) => match tx.send(frame) {
                Ok(()) => return,
                Err(mpsc::error::SendError(frame)) => frame,
            },
            None => frame,
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let _ = tx.send(frame);
        outboxes.insert(node, tx);
        let links = self.links.clone();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                // A node that cannot be reached gets nothing; what it missed it learns again
                // when it is back (its queues start over, and so do their consumers).
                links.send(node, frame).await;
            }
        });
    }

    /// Sends a command that needs no answer; false if the node cannot be reached.
    pub(crate) async fn tell(&self, node: NodeId, queue: &QueueRef, cmd: Cmd) -> bool {
        self.links.send(node, tell_frame(queue, cmd)).await
    }

    /// Sends messages for a queue on node `node`; false if the node cannot be reached. Until
    /// the node answers their tickets, they are noted as owed by it.
    pub(crate) async fn publish(
        &self,
        node: NodeId,
        queue: &QueueRef,
        batch: Vec<(WireMessage, Option<Ticket>)>,
    ) -> bool {
        let Some(window) = self.window(node, queue.id) else {
            return false;
        };
        match window.acquire().await {
            Ok(permit) => permit.forget(),
            // The node went down meanwhile.
            Err(_) => return false,
        }
        let tickets: Vec<Ticket> = batch.iter().filter_map(|(_, t)| t.clone()).collect();
        self.unanswered.owe(node, &tickets);
        let sent = self.tell(node, queue, Cmd::Publish(batch)).await;
        if !sent {
            self.unanswered.answered(node, &tickets);
            window.add_permits(1);
        }
        sent
    }

    /// Node `from` answered tickets (the mail it sent a connection here says which).
    pub(crate) fn tickets_answered(&self, from: NodeId, conn: ConnId, msg: &ConnMsg) {
        let (channel_key, seqs, commit) = match msg {
            ConnMsg::Confirmed {
                channel_key, seqs, ..
            } => (*channel_key, seqs, false),
            ConnMsg::Committed {
                channel_key, seqs, ..
            } => (*channel_key, seqs, true),
            _ => return,
        };
        self.unanswered
            .answered_seqs(from, conn, channel_key, seqs, commit);
    }

    /// Sends a command and waits for its answer; none if the node cannot be reached, goes
    /// down meanwhile, or does not answer in time.
    pub(crate) async fn ask(&self, node: NodeId, queue: &QueueRef, cmd: Cmd) -> Option<Answer> {
        let ask = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(ask, (node, tx));
        }
        let frame = Frame::Queue {
            queue: queue.clone(),
            ask: Some(ask),
            cmd,
        };
        let answer = if self.links.send(node, encode(&frame)).await {
            tokio::time::timeout(ASK_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        if answer.is_none() {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&ask);
            }
        }
        answer
    }

    /// An answer arrived.
    pub(crate) fn answered(&self, ask: u64, answer: Answer) {
        let waiting = self.pending.lock().ok().and_then(|mut p| p.remove(&ask));
        if let Some((_, tx)) = waiting {
            let _ = tx.send(answer);
        }
    }
}

/// A command for `queue` that wants no answer, as it crosses.
pub(crate) fn tell_frame(queue: &QueueRef, cmd: Cmd) -> Bytes {
    encode(&Frame::Queue {
        queue: queue.clone(),
        ask: None,
        cmd,
    })
}

/// A ticket as its answer names it: connection, channel opening, number, and whether it is
/// a commit's.
type TicketKey = (ConnId, u64, u64, bool);

fn key(t: &Ticket) -> TicketKey {
    (t.conn, t.channel_key, t.seq, t.commit)
}

/// Tickets sent to other nodes and not answered yet, so that a node that goes down leaves no
/// publisher waiting: what it owed is refused (nacked), as RabbitMQ nacks what a queue that
/// died had not confirmed. A ticket sent to two queues on one node is owed twice.
#[derive(Default)]
struct Unanswered(Mutex<HashMap<NodeId, Owed>>);

/// What one node owes: each ticket, and how many of its queues have yet to answer it.
type Owed = HashMap<TicketKey, (Ticket, u32)>;

impl Unanswered {
    fn owe(&self, node: NodeId, tickets: &[Ticket]) {
        if tickets.is_empty() {
            return;
        }
        if let Ok(mut all) = self.0.lock() {
            let owed = all.entry(node).or_default();
            for t in tickets {
                owed.entry(key(t)).or_insert_with(|| (t.clone(), 0)).1 += 1;
            }
        }
    }

    fn answered(&self, node: NodeId, tickets: &[Ticket]) {
        if let Ok(mut all) = self.0.lock() {
            if let Some(owed) = all.get_mut(&node) {
                for t in tickets {
                    settle_one(owed, key(t));
                }
            }
        }
    }

    fn answered_seqs(
        &self,
        node: NodeId,
        conn: ConnId,
        channel_key: u64,
        seqs: &[u64],
        commit: bool,
    ) {
        if let Ok(mut all) = self.0.lock() {
            if let Some(owed) = all.get_mut(&node) {
                for seq in seqs {
                    settle_one(owed, (conn, channel_key, *seq, commit));
                }
            }
        }
    }

    /// Everything node `node` still owes, once per queue it went to.
    fn take(&self, node: NodeId) -> Vec<Ticket> {
        let owed = self.0.lock().ok().and_then(|mut all| all.remove(&node));
        owed.into_iter()
            .flatten()
            .flat_map(|(_, (t, n))| std::iter::repeat_n(t, n as usize))
            .collect()
    }
}

fn settle_one(owed: &mut Owed, k: TicketKey) {
    if let Some((_, n)) = owed.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            owed.remove(&k);
        }
    }
}

/// Links that take every frame and keep nothing, for tests.
#[cfg(test)]
pub(crate) struct Sink;

#[cfg(test)]
impl Links for Sink {
    fn send(&self, _to: NodeId, _frame: Bytes) -> Sending {
        Box::pin(async { true })
    }
    fn is_linked(&self, _name: &str) -> bool {
        true
    }
    fn keep_linked(&self, _members: Vec<String>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_meta::Uid;

    fn ticket(seq: u64) -> Ticket {
        Ticket {
            conn: Uid {
                node: NodeId(1),
                n: 5,
            },
            channel: 1,
            channel_key: 9,
            seq,
            commit: false,
        }
    }

    fn queue(n: u64) -> QueueRef {
        QueueRef {
            vhost: "/".into(),
            name: format!("q{n}").into(),
            id: Uid { node: NodeId(2), n },
        }
    }

    /// What a node that goes down had not answered is refused, once per queue it went to,
    /// and nothing it answered or another node owes.
    #[tokio::test]
    async fn a_node_going_down_gives_back_the_tickets_it_owed() {
        let peers = Peers::new(Arc::new(Sink));
        let (two, three) = (NodeId(2), NodeId(3));
        let batch = |seqs: &[u64]| {
            seqs.iter()
                .map(|s| (WireMessage::sample(), Some(ticket(*s))))
                .collect::<Vec<_>>()
        };
        // Seq 2 goes to two queues on node 2; seq 4 to node 3.
        assert!(peers.publish(two, &queue(1), batch(&[1, 2, 3])).await);
        assert!(peers.publish(two, &queue(2), batch(&[2])).await);
        assert!(peers.publish(three, &queue(3), batch(&[4])).await);
        let confirmed = ConnMsg::Confirmed {
            channel: 1,
            channel_key: 9,
            seqs: vec![1, 2],
            ok: true,
        };
        peers.tickets_answered(two, ticket(0).conn, &confirmed);
        let mut owed: Vec<u64> = peers.node_down(two).iter().map(|t| t.seq).collect();
        owed.sort();
        assert_eq!(owed, [2, 3], "seq 2's second queue and seq 3");
        assert!(!peers.is_reachable(two), "down until it says it runs");
        assert!(peers.node_down(two).is_empty(), "given back once");
        assert_eq!(peers.node_down(three).len(), 1);
    }

    /// A queue on another node takes at most a window of publish frames before it says it
    /// has them; a publisher beyond waits, goes on when credit comes, and gives up when the
    /// node goes down.
    #[tokio::test]
    async fn publishes_to_another_node_wait_for_their_window() {
        let peers = Peers::new(Arc::new(Sink));
        let node = NodeId(2);
        let one = || vec![(WireMessage::sample(), None)];
        for _ in 0..PUBLISH_WINDOW {
            assert!(peers.publish(node, &queue(1), one()).await);
        }
        let waiting = {
            let peers = peers.clone();
            tokio::spawn(async move { peers.publish(node, &queue(1), one()).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "the window is full");
        assert!(
            peers.publish(node, &queue(2), one()).await,
            "another queue has its own window"
        );
        peers.credit(node, queue(1).id, 1);
        assert!(waiting.await.unwrap(), "credit reopens it");
        let waiting = {
            let peers = peers.clone();
            tokio::spawn(async move { peers.publish(node, &queue(1), one()).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        peers.node_down(node);
        assert!(!waiting.await.unwrap(), "the node went down: refused");
        peers.credit(node, queue(1).id, 1_000);
        for _ in 0..PUBLISH_WINDOW {
            assert!(
                peers.publish(node, &queue(1), one()).await,
                "a fresh window"
            );
        }
    }
}
