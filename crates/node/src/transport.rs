//! The metadata group's messages between nodes: openraft's calls go over the cluster links'
//! metadata channel as requests with answers ([`Rpc`]), and requests from other nodes are
//! answered by the running broker's group. A node is addressed as the group's membership
//! names it, `name@host:port`; the first call to a node starts keeping a link to it.

use crate::app::App;
use bytes::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use warren_cluster::rpc::{CallError as LinkError, Handler};
use warren_cluster::{Channel, Mesh, NodeAddr, Rpc};
use warren_raft::network::BoxFuture;
use warren_raft::{CallError, Transport};

pub struct MeshTransport {
    mesh: Mesh,
    rpc: Arc<Rpc>,
}

impl MeshTransport {
    /// Starts answering other nodes' metadata requests with whatever group `app` runs.
    pub fn start(mesh: &Mesh, app: Arc<OnceLock<Arc<App>>>) -> Arc<MeshTransport> {
        let handler: Handler = Arc::new(move |_from: String, body: Bytes| {
            let app = app.get().cloned();
            Box::pin(async move {
                let Some(app) = app else {
                    return Bytes::new();
                };
                match app.broker().await {
                    // An empty request asks whether the group runs here.
                    Some(_) if body.is_empty() => Bytes::from_static(RUNNING),
                    Some(b) => match b.meta.group() {
                        Some(g) => warren_raft::network::serve(g.raft(), &body).await,
                        None => Bytes::new(),
                    },
                    // Stopped (stop_app): the empty answer reads as a network error.
                    None => Bytes::new(),
                }
            })
        });
        Arc::new(MeshTransport {
            mesh: mesh.clone(),
            rpc: Rpc::start(mesh, Channel::Meta, handler),
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
