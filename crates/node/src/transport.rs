//! The metadata group's messages between nodes: openraft's calls go over the cluster links'
//! metadata channel as requests with answers ([`Rpc`]), and requests from other nodes are
//! answered by the running broker's group. A node is addressed as the group's membership
//! names it, `name@host:port`; the first call to a node starts keeping a link to it.

use crate::app::App;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use warren_broker::{Links, Sending};
use warren_cluster::rpc::{CallError as LinkError, Handler};
use warren_cluster::{Channel, Mesh, NodeAddr, PeerKind, Rpc};
use warren_meta::NodeId;
use warren_raft::network::BoxFuture;
use warren_raft::{CallError, Transport};

pub struct MeshTransport {
    mesh: Mesh,
    rpc: Arc<Rpc>,
    app: Arc<OnceLock<Arc<App>>>,
    /// Node names by id, from the metadata's membership (refreshed when an id is missing).
    names: Names,
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
        let handler: Handler = Arc::new(move |_from: String, body: Bytes| {
            let app = running.get().cloned();
            Box::pin(async move {
                let Some(app) = app else {
                    return Bytes::new();
                };
                match app.broker().await {
                    // An empty request asks whether the group runs here.
                    Some(_) if body.is_empty() => Bytes::from_static(RUNNING),
                    Some(b) => match b.meta.group() {
                        Some(g) => warren_raft::serve(g.raft(), &body).await,
                        None => Bytes::new(),
                    },
                    // Stopped (stop_app): the empty answer reads as a network error.
                    None => Bytes::new(),
                }
            })
        });
        let transport = Arc::new(MeshTransport {
            mesh: mesh.clone(),
            rpc: Rpc::start(mesh, Channel::Meta, handler),
            app,
            names: Names::default(),
        });
        tokio::spawn(transport.clone().serve_queues());
        transport
    }

    /// Hands what other nodes send on the queue channel to the running broker, in the order
    /// it arrives.
    async fn serve_queues(self: Arc<Self>) {
        let mut inbound = self.mesh.receive(Channel::Queue);
        while let Some(msg) = inbound.recv().await {
            if msg.kind != PeerKind::Node {
                continue;
            }
            let Some(app) = self.app.get() else { continue };
            if let Some(broker) = app.broker().await {
                broker
                    .remote
                    .receive(NodeId::from_name(&msg.from), &msg.payload)
                    .await;
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
}

/// The answer to an empty request from a node whose group runs.
const RUNNING: &[u8] = b"running";

impl MeshTransport {
    /// Whether node `name`'s broker (and so its part of the group) runs now.
    pub async fn is_running(&self, name: &str) -> bool {
        if !self.mesh.is_connected(name) {
            return false;
        }
        matches!(self.rpc.call(name, &[], Duration::from_secs(2)).await, Ok(a) if a == RUNNING)
    }
}

impl Transport for MeshTransport {
    fn call(
        &self,
        to: &str,
        request: Bytes,
        timeout: Duration,
    ) -> BoxFuture<Result<Bytes, CallError>> {
        let (mesh, rpc, to) = (self.mesh.clone(), self.rpc.clone(), to.to_owned());
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
            rpc.call(&addr.name, &request, timeout)
                .await
                .map_err(|e| match e {
                    LinkError::NotConnected => CallError::Unreachable(addr.name.clone()),
                    LinkError::TimedOut => CallError::TimedOut,
                })
        })
    }
}
