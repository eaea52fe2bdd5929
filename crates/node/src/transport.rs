//! The metadata group's messages between nodes: openraft's calls go over the cluster links'
//! metadata channel as requests with answers ([`Rpc`]), and requests from other nodes are
//! answered by the running broker's group. A node is addressed as the group's membership
//! names it, `name@host:port`; the first call to a node starts keeping a link to it.

use crate::app::App;
use crate::listing;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use warren_broker::group::raft_id;
use warren_broker::{Broker, Links, Sending, answer_while_stopped, broker_frame};
use warren_cluster::rpc::{CallError as LinkError, Handler};
use warren_cluster::{Channel, Mesh, NodeAddr, PeerEvent, PeerKind, Rpc};
use warren_meta::NodeId;
use warren_raft::network::BoxFuture;
use warren_raft::{CallError, Transport};

pub struct MeshTransport {
    mesh: Mesh,
    /// The metadata group's requests, and listings between nodes.
    calls: Arc<RpcTransport>,
    app: Arc<OnceLock<Arc<App>>>,
    /// Node names by id, from the metadata's membership (refreshed when an id is missing).
    names: Names,
    /// The members this node keeps links to (see [`Links::keep_linked`]).
    kept: std::sync::Mutex<Vec<String>>,
}

type Names = Arc<RwLock<HashMap<NodeId, String>>>;

/// The mesh name of node `id`.
async fn name_of(app: &OnceLock<Arc<App>>, names: &Names, id: NodeId) -> Option<String> {
    if let Some(n) = names.read().ok().and_then(|m| m.get(&id).cloned()) {
        return Some(n);
    }
    let broker = app.get()?.broker().await?;
    let all = broker.meta.node_names();
    let found = all.get(&id).cloned();
    if let Ok(mut m) = names.write() {
        *m = all.into_iter().collect();
    }
    found
}

impl MeshTransport {
    /// Starts answering other nodes' metadata requests with whatever group `app` runs.
    pub fn start(mesh: &Mesh, app: Arc<OnceLock<Arc<App>>>) -> Arc<MeshTransport> {
        let running = app.clone();
        let me = mesh.me().name.clone();
        let cluster = mesh.listen_addr();
        let handler: Handler = Arc::new(move |from: String, body: Bytes| {
            let app = running.get().cloned();
            let me = me.clone();
            Box::pin(async move {
                let Some(app) = app else {
                    return Bytes::new();
                };
                if body.first() == Some(&LIST) {
                    return rows_here(&app, &me, cluster, &body[1..]).await;
                }
                // While the broker starts, its group is served from the setup (waiting for
                // the broker would hold back the topology the start waits for).
                let starting = app.setup().starting.lock().ok().and_then(|s| s.clone());
                if let Some(raft) = starting {
                    if body.is_empty() {
                        return Bytes::new();
                    }
                    return warren_raft::serve(&raft, raft_id(&from), &body).await;
                }
                match app.broker().await {
                    // An empty request asks whether the group runs here.
                    Some(_) if body.is_empty() => Bytes::from_static(RUNNING),
                    Some(b) => match b.meta.group() {
                        Some(g) => warren_raft::serve(g.raft(), raft_id(&from), &body).await,
                        None => Bytes::new(),
                    },
                    // Stopped (stop_app): the empty answer reads as a network error.
                    None => Bytes::new(),
                }
            })
        });
        let transport = Arc::new(MeshTransport {
            mesh: mesh.clone(),
            calls: Arc::new(RpcTransport {
                mesh: mesh.clone(),
                rpc: Rpc::start(mesh, Channel::Meta, handler),
            }),
            app,
            names: Names::default(),
            kept: std::sync::Mutex::new(Vec::new()),
        });
        tokio::spawn(transport.clone().serve_queues());
        tokio::spawn(transport.clone().announce());
        transport
    }

    /// Hands what other nodes send on the queue channel to the running broker, in the order
    /// it arrives; while the broker is stopped, answers it as a node without queues does.
    async fn serve_queues(self: Arc<Self>) {
        let mut inbound = self.mesh.receive(Channel::Queue);
        // Which broker each peer has been told runs, since its link came up (weak, so that
        // a later broker cannot take its address and pass for it).
        let mut told: HashMap<String, Weak<Broker>> = HashMap::new();
        while let Some(msg) = inbound.recv().await {
            if msg.kind != PeerKind::Node {
                continue;
            }
            let Some(app) = self.app.get() else { continue };
            if msg.ended {
                told.remove(&msg.from);
            }
            match app.broker_now() {
                Some(broker) if msg.ended => {
                    broker.remote.link_ended(NodeId::from_name(&msg.from));
                }
                Some(broker) => {
                    // `announce` says so too, but from another task and maybe later: a peer
                    // answered by this broker before hearing it runs would still leave its
                    // queues out of routing. Told first, it hears so before any answer.
                    if !told
                        .get(&msg.from)
                        .is_some_and(|t| std::ptr::eq(t.as_ptr(), Arc::as_ptr(&broker)))
                    {
                        let _ = self
                            .mesh
                            .send(&msg.from, Channel::Queue, broker_frame(true))
                            .await;
                        told.insert(msg.from.clone(), Arc::downgrade(&broker));
                    }
                    broker
                        .remote
                        .receive(NodeId::from_name(&msg.from), &msg.payload)
                        .await;
                }
                None if msg.ended => {}
                None => {
                    let replies = answer_while_stopped(&msg.payload);
                    let answered = !replies.is_empty();
                    for reply in replies {
                        let _ = self.mesh.send(&msg.from, Channel::Queue, reply).await;
                    }
                    // The broker may have started meanwhile, and `announce` (another task)
                    // may have said so before the "stopped" just sent: the peer would then
                    // count this node as stopped for good. Saying it again puts it last.
                    if answered && app.broker_now().is_some() {
                        let _ = self
                            .mesh
                            .send(&msg.from, Channel::Queue, broker_frame(true))
                            .await;
                    }
                }
            }
        }
    }

    /// Tells the other nodes whether this node's broker runs: all of them when it starts or
    /// stops, and each one whose link comes up.
    async fn announce(self: Arc<Self>) {
        let app = loop {
            match self.app.get() {
                Some(app) => break app.clone(),
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let mut running = app.watch_running();
        let mut events = self.mesh.events();
        // The broker may have started before this task subscribed: peers already linked
        // have heard nothing yet, and no change would come to tell them.
        running.mark_changed();
        loop {
            let to = tokio::select! {
                changed = running.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.mesh.connected()
                }
                event = events.recv() => match event {
                    Ok(PeerEvent::Up(peer, PeerKind::Node)) => vec![peer],
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                },
            };
            let frame = broker_frame(running.borrow().is_some());
            for peer in to {
                let _ = self.mesh.send(&peer, Channel::Queue, frame.clone()).await;
            }
        }
    }
}

impl Links for MeshTransport {
    fn send(&self, to: NodeId, frame: Bytes) -> Sending {
        let (mesh, app, names) = (self.mesh.clone(), self.app.clone(), self.names.clone());
        Box::pin(async move {
            let Some(name) = name_of(&app, &names, to).await else {
                return false;
            };
            mesh.send(&name, Channel::Queue, frame).await.is_ok()
        })
    }

    fn is_linked(&self, name: &str) -> bool {
        self.mesh.is_connected(name)
    }

    fn keep_linked(&self, members: Vec<String>) {
        let wanted: HashMap<String, NodeAddr> = members
            .iter()
            .filter_map(|m| NodeAddr::parse(m).ok())
            .map(|a| (a.name.clone(), a))
            .collect();
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        for gone in kept.iter().filter(|n| !wanted.contains_key(*n)) {
            self.mesh.stop_redialling(gone);
        }
        for addr in wanted.values() {
            self.mesh.keep_connected(addr.clone());
        }
        *kept = wanted.into_keys().collect();
    }
}

/// The answer to an empty request from a node whose group runs.
const RUNNING: &[u8] = b"running";

/// Starts a request for this node's rows of a listing (see `listing`); the verb follows. No
/// request of the metadata group starts with it (theirs start with a small variant number).
const LIST: u8 = 0xF0;

/// This node's rows for the listing `verb` names, as JSON (none while its broker is stopped).
async fn rows_here(app: &App, me: &str, cluster: std::net::SocketAddr, verb: &[u8]) -> Bytes {
    let verb = String::from_utf8_lossy(verb);
    let rows = match app.admin().await {
        Some((admin, amqp)) if listing::answers(&verb) => {
            let here = listing::Here { me, amqp, cluster };
            listing::local_rows(&verb, &admin, &here).await
        }
        _ => Vec::new(),
    };
    Bytes::from(serde_json::to_vec(&rows).unwrap_or_default())
}

impl MeshTransport {
    /// Node `peer`'s rows for the listing `verb` (none if it does not answer in time).
    pub async fn rows_of(&self, peer: &str, verb: &str) -> Vec<Vec<serde_json::Value>> {
        let mut body = vec![LIST];
        body.extend_from_slice(verb.as_bytes());
        match self
            .calls
            .rpc
            .call(peer, &body, Duration::from_secs(5))
            .await
        {
            Ok(answer) => serde_json::from_slice(&answer).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}

impl MeshTransport {
    /// Whether node `name`'s broker (and so its part of the group) runs now.
    pub async fn is_running(&self, name: &str) -> bool {
        if !self.mesh.is_connected(name) {
            return false;
        }
        matches!(self.calls.rpc.call(name, &[], Duration::from_secs(2)).await, Ok(a) if a == RUNNING)
    }
}

impl MeshTransport {
    /// The metadata group's way to other nodes.
    pub fn calls(&self) -> Arc<RpcTransport> {
        self.calls.clone()
    }
}

/// Requests to other nodes over one channel of the cluster links, answered by RPC.
pub struct RpcTransport {
    mesh: Mesh,
    rpc: Arc<Rpc>,
}

impl Transport for RpcTransport {
    fn call(
        &self,
        to: &str,
        request: Bytes,
        timeout: Duration,
    ) -> BoxFuture<Result<Bytes, CallError>> {
        self.call_parts(to, &[], request, timeout)
    }

    fn call_parts(
        &self,
        to: &str,
        head: &[u8],
        body: Bytes,
        timeout: Duration,
    ) -> BoxFuture<Result<Bytes, CallError>> {
        call_over(&self.mesh, &self.rpc, to, (head, body), timeout)
    }
}

/// One request to the node at `to` (`name@host:port`) over `rpc`'s channel.
fn call_over(
    mesh: &Mesh,
    rpc: &Arc<Rpc>,
    to: &str,
    (head, body): (&[u8], Bytes),
    timeout: Duration,
) -> BoxFuture<Result<Bytes, CallError>> {
    let (mesh, rpc, to, head) = (mesh.clone(), rpc.clone(), to.to_owned(), head.to_vec());
    Box::pin(async move {
        let addr = NodeAddr::parse(&to).map_err(CallError::Unreachable)?;
        if !mesh.is_connected(&addr.name) {
            // Dialled in the background; openraft calls again soon.
            mesh.keep_connected(addr.clone());
            return Err(CallError::Unreachable(format!(
                "no link to {} yet",
                addr.name
            )));
        }
        rpc.call_parts(&addr.name, &head, body, timeout)
            .await
            .map_err(|e| match e {
                LinkError::NotConnected => CallError::Unreachable(addr.name.clone()),
                LinkError::TimedOut => CallError::TimedOut,
            })
    })
}

/// Quorum queues' groups between nodes: their requests go over the cluster links' quorum
/// channel, each naming its queue, and requests from other nodes are answered by the group
/// this node runs for that queue (none while the broker is stopped: the sender tries again).
pub fn quorum_transport(mesh: &Mesh, app: Arc<OnceLock<Arc<App>>>) -> Arc<RpcTransport> {
    let handler: Handler = Arc::new(move |from: String, body: Bytes| {
        let app = app.get().cloned();
        Box::pin(async move {
            match app.and_then(|a| a.broker_now()) {
                Some(broker) => broker.serve_quorum(raft_id(&from), &body).await,
                None => Bytes::new(),
            }
        })
    });
    Arc::new(RpcTransport {
        mesh: mesh.clone(),
        rpc: Rpc::start(mesh, Channel::Quorum, handler),
    })
}
