//! Raft's messages between nodes. openraft asks for a client per peer; each call is one
//! request and one answer through the [`Transport`] (the cluster's authenticated links), both
//! postcard-encoded (`messages`); `leader::serve` answers what other nodes send to this one.

use crate::messages::{Request, decode, encode};
use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftTypeConfig};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The request could not be sent (no link to that node): it certainly had no effect.
    Unreachable(String),
    /// Sent, and no answer in time: it may or may not have had its effect.
    TimedOut,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(why) => write!(f, "unreachable: {why}"),
            CallError::TimedOut => f.write_str("no answer in time"),
        }
    }
}

impl std::error::Error for CallError {}

/// How a node reaches another: sends a request to the node at `to` (as the membership names
/// it) and waits for its answer.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        to: &str,
        request: Bytes,
        timeout: Duration,
    ) -> BoxFuture<Result<Bytes, CallError>>;

    /// The request `head` then `body`. A transport that can send the two as they are
    /// overrides this, so that a large body (a raft append) is not copied to prepend a few
    /// bytes.
    fn call_parts(
        &self,
        to: &str,
        head: &[u8],
        body: Bytes,
        timeout: Duration,
    ) -> BoxFuture<Result<Bytes, CallError>> {
        let mut whole = Vec::with_capacity(head.len() + body.len());
        whole.extend_from_slice(head);
        whole.extend_from_slice(&body);
        self.call(to, Bytes::from(whole), timeout)
    }
}

/// openraft's network: a client per peer, none of which dials when made (the transport keeps
/// the links).
pub struct Network {
    transport: Arc<dyn Transport>,
}

impl Network {
    pub fn new(transport: Arc<dyn Transport>) -> Network {
        Network { transport }
    }
}

impl<C> RaftNetworkFactory<C> for Network
where
    C: RaftTypeConfig<Node = BasicNode>,
{
    type Network = Peer<C>;

    async fn new_client(&mut self, target: C::NodeId, node: &BasicNode) -> Peer<C> {
        Peer {
            transport: self.transport.clone(),
            addr: node.addr.clone(),
            target,
        }
    }
}

/// One peer, as openraft's client.
pub struct Peer<C: RaftTypeConfig> {
    transport: Arc<dyn Transport>,
    addr: String,
    target: C::NodeId,
}

/// The error openraft is told when a call fails.
fn failed<C, E>(target: C::NodeId, e: CallError, ttl: Duration) -> RPCError<C::NodeId, BasicNode, E>
where
    C: RaftTypeConfig<Node = BasicNode>,
    E: std::error::Error,
{
    match e {
        CallError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        CallError::TimedOut => {
            let _ = (target, ttl);
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

impl<C> Peer<C>
where
    C: RaftTypeConfig<Node = BasicNode>,
{
    async fn call<Resp, E>(
        &self,
        request: Request<C>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<C::NodeId, BasicNode, RaftError<C::NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let ttl = option.hard_ttl();
        let target = self.target.clone();
        let raw = self
            .transport
            .call(&self.addr, encode(&request), ttl)
            .await
            .map_err(|e| failed::<C, _>(target.clone(), e, ttl))?;
        // An answer that does not decode is most often an empty one: the node runs no member
        // of this group (yet, or any more). Unreachable makes openraft back off before it
        // asks again, instead of asking in a tight loop.
        let answer: Result<Resp, RaftError<C::NodeId, E>> = decode(&raw)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&CallError::Unreachable(e))))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}

impl<C> RaftNetwork<C> for Peer<C>
where
    C: RaftTypeConfig<Node = BasicNode>,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<C::NodeId>,
        RPCError<C::NodeId, BasicNode, RaftError<C::NodeId>>,
    > {
        self.call(Request::Append(rpc), &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<C::NodeId>,
        RPCError<C::NodeId, BasicNode, RaftError<C::NodeId, InstallSnapshotError>>,
    > {
        self.call(Request::Snapshot(rpc), &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C::NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<C::NodeId>, RPCError<C::NodeId, BasicNode, RaftError<C::NodeId>>> {
        self.call(Request::Vote(rpc), &option).await
    }
}
