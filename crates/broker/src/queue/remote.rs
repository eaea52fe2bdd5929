//! The client side of a queue on another node: `QueueHandle`'s `Backend::Remote` sends the
//! queue seam's commands as frames over the cluster's queue channel ([`Links`]) and waits for
//! answers by number. The receiving node runs them against its local handle
//! (`crate::remote`), and what the queue sends back to connections here arrives as mail.

use super::wire::{Answer, Cmd, Frame, QueueRef, encode};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use warren_meta::NodeId;

pub type Sending = Pin<Box<dyn Future<Output = bool> + Send>>;

/// How this node sends to another over the queue channel (the binary wires the cluster's
/// links in). Frames to one node arrive in the order they were sent.
pub trait Links: Send + Sync + 'static {
    /// Sends a frame to node `to`; false if there is no link to it (the frame is dropped).
    fn send(&self, to: NodeId, frame: Bytes) -> Sending;
}

/// The links of a node alone: there is no other node.
pub struct NoLinks;

impl Links for NoLinks {
    fn send(&self, _to: NodeId, _frame: Bytes) -> Sending {
        Box::pin(async { false })
    }
}

/// How long a command waits for a queue on another node to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// The queue channel's sending side, and the answers it waits for.
pub struct Peers {
    links: Arc<dyn Links>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next: AtomicU64,
    /// The cluster's nodes by name, for errors that name a queue's home node.
    names: std::sync::RwLock<HashMap<NodeId, String>>,
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
            names: std::sync::RwLock::new(HashMap::new()),
        })
    }

    /// The cluster's members changed.
    pub fn set_names(&self, names: HashMap<NodeId, String>) {
        if let Ok(mut n) = self.names.write() {
            *n = names;
        }
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

    /// Sends a command that needs no answer; false if the node cannot be reached.
    pub(crate) async fn tell(&self, node: NodeId, queue: &QueueRef, cmd: Cmd) -> bool {
        let frame = Frame::Queue {
            queue: queue.clone(),
            ask: None,
            cmd,
        };
        self.links.send(node, encode(&frame)).await
    }

    /// Sends a command and waits for its answer; none if the node cannot be reached or does
    /// not answer in time.
    pub(crate) async fn ask(&self, node: NodeId, queue: &QueueRef, cmd: Cmd) -> Option<Answer> {
        let ask = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(ask, tx);
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
        if let Some(tx) = waiting {
            let _ = tx.send(answer);
        }
    }
}
