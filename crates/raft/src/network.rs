//! Raft's messages between nodes. openraft asks for a client per peer; each call is one
//! request and one answer through the [`Transport`] (the cluster's authenticated links), both
//! postcard-encoded. [`serve`] answers what other nodes send to this one.

use crate::proposer::MemberChange;
use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::impls::OneshotResponder;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
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
}

/// What one node asks another.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum Request<C: RaftTypeConfig> {
    Append(AppendEntriesRequest<C>),
    Vote(VoteRequest<C::NodeId>),
    Snapshot(InstallSnapshotRequest<C>),
    /// A change for the leader to commit, from a node that is not the leader.
    Propose {
        change: C::D,
        timeout_ms: u64,
    },
    /// A membership change for the leader.
    Members(MemberRequest),
}

#[derive(Serialize, Deserialize)]
pub(crate) struct MemberRequest {
    pub change: MemberChange,
    pub timeout_ms: u64,
}

/// The type config of a request that is only ever `Members` (sent by a node whose group is
/// not running): it encodes as the same bytes as the running group's `Request::Members`.
pub(crate) type MemberOnly = crate::Meta;

pub(crate) fn encode<T: Serialize>(value: &T) -> Bytes {
    // Encoding into a Vec fails only for types postcard cannot represent, which these are not.
    postcard::to_stdvec(value)
        .map(Bytes::from)
        .unwrap_or_default()
}

pub(crate) fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, String> {
    postcard::from_bytes(raw).map_err(|e| format!("an unreadable raft message: {e}"))
}

/// Answers a request from another node.
pub async fn serve<C>(raft: &Raft<C>, request: &[u8]) -> Bytes
where
    C: RaftTypeConfig<Node = BasicNode, NodeId = u64, Responder = OneshotResponder<C>>,
{
    let request: Request<C> = match decode(request) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "dropping a raft request");
            return Bytes::new();
        }
    };
    match request {
        Request::Append(r) => encode(&raft.append_entries(r).await),
        Request::Vote(r) => encode(&raft.vote(r).await),
        Request::Snapshot(r) => encode(&raft.install_snapshot(r).await),
        Request::Propose { change, timeout_ms } => {
            let timeout = Duration::from_millis(timeout_ms);
            encode(&crate::proposer::commit_here(raft, change, timeout).await)
        }
        Request::Members(r) => {
            let timeout = Duration::from_millis(r.timeout_ms);
            encode(&crate::proposer::change_members_here(raft, r.change, timeout).await)
        }
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
        let answer: Result<Resp, RaftError<C::NodeId, E>> = decode(&raw)
            .map_err(|e| RPCError::Network(NetworkError::new(&CallError::Unreachable(e))))?;
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
