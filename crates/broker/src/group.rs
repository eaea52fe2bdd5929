//! The metadata's Raft group as this node runs it: how the node takes part in a cluster
//! ([`ClusterSetup`]), and the running group ([`Group`]) that changes are handed to. How a
//! node forms or joins the group and rebuilds its topology is `formation`.

use std::sync::Arc;
use std::time::Duration;
use warren_meta::{Command, NodeId};
use warren_raft::{
    LogStore, MemberChange, Meta, MetaRaft, Outcome, ProposeError, Proposer, Transport,
};

/// How this node takes part in a cluster (the binary fills it in; a node alone needs none).
#[derive(Clone)]
pub struct ClusterSetup {
    /// How to reach other nodes.
    pub transport: Arc<dyn Transport>,
    /// Where other nodes reach this one: `name@host:port`.
    pub address: String,
    /// The nodes to form a cluster with at the first start, by `(name, address)`.
    pub peers: Vec<(String, String)>,
    /// How queue traffic reaches other nodes.
    pub links: Arc<dyn crate::queue::remote::Links>,
    /// How quorum queues' groups reach their members on other nodes.
    pub quorum: Arc<dyn Transport>,
    /// The metadata group while the broker starts: other nodes' requests for it are served
    /// from here until the broker runs, so that a new member can take the topology it waits
    /// for before it serves clients (see `formation`).
    pub starting: Starting,
}

/// The metadata group of a broker that is starting, if it has one yet.
pub type Starting = Arc<std::sync::Mutex<Option<MetaRaft>>>;

impl ClusterSetup {
    /// A node that has no one to talk to.
    pub fn alone(name: &str) -> ClusterSetup {
        ClusterSetup {
            transport: Arc::new(Alone),
            address: name.to_owned(),
            peers: Vec::new(),
            links: Arc::new(crate::queue::remote::NoLinks),
            quorum: Arc::new(Alone),
            starting: Starting::default(),
        }
    }
}

/// The transport of a node alone: there is never anyone to call.
struct Alone;

impl Transport for Alone {
    fn call(
        &self,
        to: &str,
        _request: bytes::Bytes,
        _timeout: Duration,
    ) -> warren_raft::network::BoxFuture<Result<bytes::Bytes, warren_raft::CallError>> {
        let to = to.to_owned();
        Box::pin(async move { Err(warren_raft::CallError::Unreachable(to)) })
    }
}

/// The node's raft id: from its name, so it needs no coordination and survives restarts.
pub fn raft_id(name: &str) -> u64 {
    NodeId::from_name(name).0
}

/// The metadata group as this node runs it.
pub struct Group {
    raft: MetaRaft,
    log: LogStore<Meta>,
    proposer: Proposer<Meta>,
    timeout: Duration,
    snapshots: tokio::task::JoinHandle<()>,
}

impl Group {
    pub(crate) fn new(
        raft: MetaRaft,
        log: LogStore<Meta>,
        proposer: Proposer<Meta>,
        timeout: Duration,
        snapshots: tokio::task::JoinHandle<()>,
    ) -> Group {
        Group {
            raft,
            log,
            proposer,
            timeout,
            snapshots,
        }
    }

    pub(crate) fn proposer(&self) -> &Proposer<Meta> {
        &self.proposer
    }

    pub fn raft(&self) -> &MetaRaft {
        &self.raft
    }

    /// How long a change may take before it fails (no majority).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) async fn propose(&self, cmd: Command) -> Result<(u64, Outcome), ProposeError> {
        self.proposer.propose(cmd, self.timeout).await
    }

    /// Changes the group's membership, through its leader.
    pub async fn change_members(&self, change: MemberChange) -> Result<u64, ProposeError> {
        self.proposer.change_members(change, self.timeout).await
    }

    /// Stops the group on this node. A snapshot is taken first if the log has grown since
    /// the last one, so that the next start has little to replay.
    pub async fn shut_down(&self) {
        self.snapshots.abort();
        let mut metrics = self.raft.metrics();
        let (applied, snapshot) = {
            let m = metrics.borrow();
            (m.last_applied.map(|l| l.index), m.snapshot.map(|l| l.index))
        };
        if applied > snapshot && self.raft.trigger().snapshot().await.is_ok() {
            let taken = metrics.wait_for(|m| m.snapshot.map(|l| l.index) >= applied);
            let _ = tokio::time::timeout(Duration::from_secs(10), taken).await;
        }
        let _ = self.raft.shutdown().await;
        // The last commit point too, so that the next start applies everything at once.
        let _ = self.log.flush().await;
    }
}
