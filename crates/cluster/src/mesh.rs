//! The node's links to its peers: one connection per pair of nodes, accepted on the cluster
//! port or dialled (and redialled with backoff for as long as the peer is wanted), each proven
//! by the cookie before anything else. Other parts of the node send to a peer by name on a
//! channel, receive what arrives on their channel, and watch peers come and go.

use crate::codec::Codec;
use crate::codec::Outgoing;
use crate::cookie::Cookie;
use crate::handshake::{self, Refused};
use crate::link::{self, Inbound, LinkHandle, Receivers, SEND_QUEUE, Timing};
use crate::name::NodeAddr;
use crate::wire::{Channel, Frame, PeerKind};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

/// Frames waiting for a channel's receiver before the links feeding it wait.
const RECEIVE_QUEUE: usize = 1024;
/// Redialling backs off from this ...
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// ... to this.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A peer came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Up(String, PeerKind),
    Down(String, PeerKind),
}

/// Sending failed: there is no link to that peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotConnected(pub String);

impl std::fmt::Display for NotConnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} is not connected", self.0)
    }
}

struct Inner {
    me: NodeAddr,
    cookie: Cookie,
    timing: Timing,
    links: Mutex<HashMap<String, LinkHandle>>,
    receivers: Receivers,
    events: broadcast::Sender<PeerEvent>,
    dialers: Mutex<HashMap<String, JoinHandle<()>>>,
    next_link: AtomicU64,
    listen: SocketAddr,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

/// The node's side of the cluster transport.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

impl Mesh {
    /// Listens on `listen` as node `me`.
    pub async fn start(
        me: NodeAddr,
        listen: SocketAddr,
        cookie: Cookie,
        timing: Timing,
    ) -> std::io::Result<Mesh> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let (events, _) = broadcast::channel(256);
        let mesh = Mesh {
            inner: Arc::new(Inner {
                me,
                cookie,
                timing,
                links: Mutex::new(HashMap::new()),
                receivers: Receivers::default(),
                events,
                dialers: Mutex::new(HashMap::new()),
                next_link: AtomicU64::new(1),
                listen,
                acceptor: Mutex::new(None),
            }),
        };
        let accepting = tokio::spawn(mesh.clone().accept_loop(listener));
        if let Ok(mut a) = mesh.inner.acceptor.lock() {
            *a = Some(accepting);
        }
        Ok(mesh)
    }

    /// This node's name and address.
    pub fn me(&self) -> &NodeAddr {
        &self.inner.me
    }

    /// The address the cluster port is bound to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// What arrives on `channel` from now on, on every link (one receiver per channel: a
    /// second call replaces the first).
    pub fn receive(&self, channel: Channel) -> mpsc::Receiver<Inbound> {
        let (tx, rx) = mpsc::channel(RECEIVE_QUEUE);
        if let Ok(mut r) = self.inner.receivers.write() {
            r[channel.index()] = Some(tx);
        }
        rx
    }

    pub fn events(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }

    /// The nodes (not tools) with a link up now, by name.
    pub fn connected(&self) -> Vec<String> {
        let links = match self.inner.links.lock() {
            Ok(l) => l,
            Err(_) => return Vec::new(),
        };
        let mut names: Vec<String> = links
            .iter()
            .filter(|(_, l)| l.kind == PeerKind::Node)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    pub fn is_connected(&self, peer: &str) -> bool {
        self.inner
            .links
            .lock()
            .map(|l| l.contains_key(peer))
            .unwrap_or(false)
    }

    /// Sends `payload` on `channel` to `peer`, waiting while its send queue is full.
    pub async fn send(
        &self,
        peer: &str,
        channel: Channel,
        payload: Bytes,
    ) -> Result<(), NotConnected> {
        self.send_parts(peer, channel, &[], payload).await
    }

    /// Sends `head` then `body` to `peer` on `channel`, as one payload (see `codec`: the
    /// body is copied once, into the link's buffer).
    pub async fn send_parts(
        &self,
        peer: &str,
        channel: Channel,
        head: &[u8],
        body: Bytes,
    ) -> Result<(), NotConnected> {
        let tx = self
            .inner
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(peer).map(|h| h.tx.clone()))
            .ok_or_else(|| NotConnected(peer.to_owned()))?;
        tx.send(Outgoing::data(channel, head, body))
            .await
            .map_err(|_| NotConnected(peer.to_owned()))
    }

    /// Keeps a link to `peer` up: dials now, and again with backoff whenever it is down, until
    /// [`Mesh::forget`].
    pub fn keep_connected(&self, peer: NodeAddr) {
        if peer.name == self.inner.me.name {
            return;
        }
        let Ok(mut dialers) = self.inner.dialers.lock() else {
            return;
        };
        if dialers.contains_key(&peer.name) {
            return;
        }
        let name = peer.name.clone();
        dialers.insert(name, tokio::spawn(self.clone().dial_loop(peer)));
    }

    /// Stops keeping a link to `peer` and closes the one there is.
    pub fn forget(&self, peer: &str) {
        self.stop_redialling(peer);
        if let Some(l) = self
            .inner
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(peer).cloned())
        {
            let _ = l.close.send(true);
        }
    }

    /// Stops redialling `peer`; a link there is stays until it fails (an answer may still be
    /// on its way over it).
    pub fn stop_redialling(&self, peer: &str) {
        if let Some(d) = self
            .inner
            .dialers
            .lock()
            .ok()
            .and_then(|mut d| d.remove(peer))
        {
            d.abort();
        }
    }

    /// Stops listening and closes every link.
    pub fn shut_down(&self) {
        if let Some(a) = self.inner.acceptor.lock().ok().and_then(|mut a| a.take()) {
            a.abort();
        }
        let dialers: Vec<JoinHandle<()>> = self
            .inner
            .dialers
            .lock()
            .map(|mut d| d.drain().map(|(_, h)| h).collect())
            .unwrap_or_default();
        for d in dialers {
            d.abort();
        }
        let links: Vec<LinkHandle> = self
            .inner
            .links
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        for l in links {
            let _ = l.close.send(true);
        }
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let (stream, addr) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster port: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let mesh = self.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut framed = Framed::new(stream, Codec::new());
                let inner = &mesh.inner;
                let answered = tokio::time::timeout(
                    inner.timing.handshake,
                    handshake::answer(&mut framed, &inner.cookie, &inner.me.name),
                )
                .await
                .unwrap_or_else(|_| Err(Refused::Broken("handshake timed out".to_owned())));
                match answered {
                    Ok((peer, kind)) => {
                        let dialler = peer.clone();
                        mesh.run_link(framed, peer, kind, dialler).await;
                    }
                    Err(Refused::Cookie) => tracing::warn!(
                        %addr,
                        "connection attempt refused: the peer does not hold this cluster's cookie"
                    ),
                    Err(why) => tracing::warn!(%addr, %why, "connection attempt refused"),
                }
            });
        }
    }

    async fn dial_loop(self, peer: NodeAddr) {
        let mut backoff = BACKOFF_MIN;
        let mut events = self.events();
        loop {
            if !self.is_connected(&peer.name) {
                match self.dial(&peer).await {
                    Ok(()) => backoff = BACKOFF_MIN,
                    Err(why) => {
                        if matches!(why, Refused::Cookie) {
                            tracing::warn!(peer = %peer, "cannot join: the cookies differ");
                        } else {
                            tracing::debug!(peer = %peer, %why, "cannot reach node");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            // Wait until that link goes down (or a while, in case the event was missed).
            let _ = tokio::time::timeout(BACKOFF_MAX, async {
                loop {
                    match events.recv().await {
                        Ok(PeerEvent::Down(n, _)) if n == peer.name => return,
                        Err(broadcast::error::RecvError::Closed) => return,
                        _ => {}
                    }
                }
            })
            .await;
        }
    }

    /// Dials `peer` once; on success its link runs in the background.
    async fn dial(&self, peer: &NodeAddr) -> Result<(), Refused> {
        let inner = &self.inner;
        let attempt = async {
            let stream = TcpStream::connect(peer.endpoint())
                .await
                .map_err(|e| Refused::Broken(format!("cannot connect: {e}")))?;
            let _ = stream.set_nodelay(true);
            let mut framed = Framed::new(stream, Codec::new());
            let name = handshake::dial(
                &mut framed,
                &inner.cookie,
                &inner.me.name,
                PeerKind::Node,
                Some(&peer.name),
            )
            .await?;
            Ok::<_, Refused>((framed, name))
        };
        let (framed, name) = tokio::time::timeout(inner.timing.handshake, attempt)
            .await
            .unwrap_or_else(|_| Err(Refused::Broken("handshake timed out".to_owned())))?;
        let mesh = self.clone();
        let dialler = inner.me.name.clone();
        tokio::spawn(async move { mesh.run_link(framed, name, PeerKind::Node, dialler).await });
        Ok(())
    }

    /// Registers a link and runs it; of two links to the same peer, the one dialled by the
    /// node whose name sorts first survives, on both sides alike.
    async fn run_link(
        &self,
        framed: handshake::Link<TcpStream>,
        peer: String,
        kind: PeerKind,
        dialler: String,
    ) {
        let inner = &self.inner;
        let (tx, outgoing) = mpsc::channel(SEND_QUEUE);
        let (close, closed) = watch::channel(false);
        let (done, finished) = watch::channel(false);
        let id = inner.next_link.fetch_add(1, Ordering::Relaxed);
        let handle = LinkHandle {
            id,
            kind,
            dialler: dialler.clone(),
            tx,
            close,
            finished,
        };
        let replaced = {
            let Ok(mut links) = inner.links.lock() else {
                return;
            };
            match links.get(&peer) {
                Some(old) if old.dialler < dialler => return,
                // The same side dialled again: its old link is stale (it would not redial
                // otherwise), so the new one takes over.
                Some(_) => links.remove(&peer),
                None => None,
            }
        };
        if let Some(old) = replaced {
            // The old link ended as surely as a lost one: its receivers hear so after all it
            // delivered and before anything the new one delivers.
            let _ = old.close.send(true);
            let mut finished = old.finished.clone();
            let _ = tokio::time::timeout(inner.timing.dead_after, finished.wait_for(|f| *f)).await;
            self.mark_end(&peer, old.kind).await;
        }
        if let Ok(mut links) = inner.links.lock() {
            links.insert(peer.clone(), handle);
        }
        let receivers = inner.receivers.clone();
        tracing::info!(%peer, ?kind, "link up");
        let _ = inner.events.send(PeerEvent::Up(peer.clone(), kind));
        let why = link::run(
            framed,
            peer.clone(),
            kind,
            inner.timing,
            receivers,
            outgoing,
            closed,
        )
        .await;
        let _ = done.send(true);
        let removed = inner
            .links
            .lock()
            .map(|mut l| {
                if l.get(&peer).is_some_and(|h| h.id == id) {
                    l.remove(&peer);
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if removed {
            tracing::info!(%peer, %why, "link down");
            self.mark_end(&peer, kind).await;
        }
    }

    /// Tells every channel's receiver, and the watchers of peers, that the link to `peer`
    /// ended.
    async fn mark_end(&self, peer: &str, kind: PeerKind) {
        for channel in Channel::ALL {
            let end = Inbound {
                from: peer.to_owned(),
                kind,
                payload: Bytes::new(),
                ended: true,
            };
            link::deliver(&self.inner.receivers, channel, end).await;
        }
        let _ = self
            .inner
            .events
            .send(PeerEvent::Down(peer.to_owned(), kind));
    }
}

/// How often a tool waiting for an answer tells the node it is still there (well inside the
/// node's silence limit).
const TOOL_HEARTBEAT: Duration = Duration::from_secs(1);

/// A tool's connection to one node (what warrenctl uses): proven by the cookie, then frames
/// both ways.
pub struct ToolLink {
    framed: handshake::Link<TcpStream>,
    pub node: String,
}

impl ToolLink {
    pub async fn connect(
        node: &NodeAddr,
        cookie: &Cookie,
        me: &str,
        timeout: Duration,
    ) -> Result<ToolLink, Refused> {
        let attempt = async {
            let stream = TcpStream::connect(node.endpoint()).await.map_err(|e| {
                Refused::Broken(format!("cannot connect to {}: {e}", node.endpoint()))
            })?;
            let mut framed = Framed::new(stream, Codec::new());
            let name =
                handshake::dial(&mut framed, cookie, me, PeerKind::Tool, Some(&node.name)).await?;
            Ok(ToolLink { framed, node: name })
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(Refused::Broken("timed out".to_owned())))
    }

    pub async fn send(&mut self, channel: Channel, payload: Bytes) -> std::io::Result<()> {
        use futures_util::SinkExt;
        self.framed
            .send(Outgoing::data(channel, &[], payload))
            .await
    }

    /// The next data frame (heartbeats are skipped); none once the node hangs up. While it
    /// waits, it sends heartbeats, so that the node keeps a link that is waiting for a long
    /// answer (a membership change, `await_startup`).
    pub async fn recv(&mut self) -> Option<(Channel, Bytes)> {
        use futures_util::{SinkExt, StreamExt};
        let mut beat = tokio::time::interval(TOOL_HEARTBEAT);
        beat.tick().await;
        loop {
            tokio::select! {
                raw = self.framed.next() => {
                    let raw = raw?.ok()?;
                    match Frame::decode(raw.freeze()).ok()? {
                        Frame::Data(c, p) => return Some((c, p)),
                        Frame::Heartbeat => {}
                        _ => return None,
                    }
                }
                _ = beat.tick() => {
                    self.framed.send(Frame::Heartbeat.encode()).await.ok()?;
                }
            }
        }
    }
}
