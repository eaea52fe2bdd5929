//! Requests and answers between nodes over one channel of the [`Mesh`]: each request carries
//! a number, its answer the same number, so that many calls can be outstanding on one link.
//! A handler answers what other nodes ask, each request in a task of its own. Only nodes
//! (never tools) may ask: warrenctl has its own channel.

use crate::mesh::Mesh;
use crate::wire::{Channel, PeerKind};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

const REQUEST: u8 = 1;
const ANSWER: u8 = 2;
/// Kind and number.
const HEADER: usize = 9;

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// There is no link to that node: the request was not sent.
    NotConnected,
    /// Sent, and no answer in time (or the link ended before one came): it may or may not
    /// have had its effect.
    TimedOut,
}

pub type Answering = Pin<Box<dyn Future<Output = Bytes> + Send>>;

/// Answers a request from the node named first.
pub type Handler = Arc<dyn Fn(String, Bytes) -> Answering + Send + Sync>;

pub struct Rpc {
    mesh: Mesh,
    channel: Channel,
    /// Calls waiting for an answer, with the node asked.
    pending: Mutex<HashMap<u64, (String, oneshot::Sender<Bytes>)>>,
    next: AtomicU64,
}

/// An RPC's own head: its kind and number.
fn head(kind: u8, id: u64) -> [u8; HEADER] {
    let mut out = [0u8; HEADER];
    out[0] = kind;
    out[1..].copy_from_slice(&id.to_be_bytes());
    out
}

impl Rpc {
    /// Takes over what arrives on `channel` and answers requests with `handler`.
    pub fn start(mesh: &Mesh, channel: Channel, handler: Handler) -> Arc<Rpc> {
        let mut inbound = mesh.receive(channel);
        let rpc = Arc::new(Rpc {
            mesh: mesh.clone(),
            channel,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let weak = Arc::downgrade(&rpc);
        tokio::spawn(async move {
            while let Some(msg) = inbound.recv().await {
                let Some(rpc) = weak.upgrade() else { return };
                if msg.ended {
                    // No answer can come over a link that ended: its callers hear so now,
                    // not when their time is up.
                    if let Ok(mut p) = rpc.pending.lock() {
                        p.retain(|_, (peer, _)| *peer != msg.from);
                    }
                    continue;
                }
                if msg.kind != PeerKind::Node || msg.payload.len() < HEADER {
                    continue;
                }
                let kind = msg.payload[0];
                let mut id = [0u8; 8];
                id.copy_from_slice(&msg.payload[1..HEADER]);
                let id = u64::from_be_bytes(id);
                let body = msg.payload.slice(HEADER..);
                match kind {
                    REQUEST => {
                        let answering = handler(msg.from.clone(), body);
                        tokio::spawn(async move {
                            let answer = answering.await;
                            let _ = rpc
                                .mesh
                                .send_parts(&msg.from, rpc.channel, &head(ANSWER, id), answer)
                                .await;
                        });
                    }
                    ANSWER => {
                        let waiting = rpc.pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some((_, tx)) = waiting {
                            let _ = tx.send(body);
                        }
                    }
                    _ => {}
                }
            }
        });
        rpc
    }

    /// Asks node `peer` (by name) and waits at most `timeout` for its answer.
    pub async fn call(
        &self,
        peer: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        self.call_parts(peer, &[], Bytes::copy_from_slice(body), timeout)
            .await
    }

    /// [`Rpc::call`] with a request of `head` then `body`, sent without being put together
    /// first (see `codec`).
    pub async fn call_parts(
        &self,
        peer: &str,
        head: &[u8],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, (peer.to_owned(), tx));
        }
        // A caller that stops waiting (it had its answer another way) leaves nothing behind.
        let _forget = Forget { rpc: self, id };
        if self
            .mesh
            .send_parts(
                peer,
                self.channel,
                &[&self::head(REQUEST, id)[..], head].concat(),
                body,
            )
            .await
            .is_err()
        {
            return Err(CallError::NotConnected);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err(CallError::TimedOut),
        }
    }

    /// How many calls wait for an answer.
    pub fn waiting(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// Takes a call out of those waiting for an answer, however it ends.
struct Forget<'a> {
    rpc: &'a Rpc,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.rpc.pending.lock() {
            p.remove(&self.id);
        }
    }
}
