//! Carrying out `rebalance quorum` (the plan is `crate::rebalance`): each queue to move is
//! asked of the member that should lead it, which stands for election (`warren_raft::stand`);
//! the next waits until that member leads, or a short while.

use super::Metadata;
use crate::quorum::group;
use crate::rebalance::{Led, plan};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use warren_meta::{NodeId, Queue};

/// How long a member has to take up a request to stand.
const STAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one move may take before the next is made anyway.
const MOVE_WAIT: Duration = Duration::from_secs(3);

impl Metadata {
    /// Moves quorum queues' leaders so that each running node leads about as many; how many
    /// each running node leads afterwards.
    pub(crate) async fn rebalance_quorum(&self) -> BTreeMap<NodeId, usize> {
        let running = self.running_nodes();
        let mut queues = Vec::new();
        for (_, q) in self.quorum_queues() {
            if let Some(leader) = self.quorum_leader(&q).await {
                let online = q.members.iter().filter(|n| running.contains(n)).copied();
                queues.push(Led {
                    online: online.collect(),
                    queue: q,
                    leader,
                });
            }
        }
        for (q, to) in plan(&queues, &running) {
            if !self.move_leader(&q, to).await {
                tracing::info!(queue = %q.name, to = %self.peers.name_of(to), "a quorum queue's leader did not move");
            }
        }
        self.quorum_leaders().await
    }

    /// How many quorum queues each running node leads.
    pub(crate) async fn quorum_leaders(&self) -> BTreeMap<NodeId, usize> {
        let running = self.running_nodes();
        let mut led: BTreeMap<NodeId, usize> = running.iter().map(|n| (*n, 0)).collect();
        for (_, q) in self.quorum_queues() {
            if let Some(n) = self.quorum_leader(&q).await.and_then(|l| led.get_mut(&l)) {
                *n += 1;
            }
        }
        led
    }

    /// Has `to`'s member of `q` stand for election; whether it leads within [`MOVE_WAIT`].
    async fn move_leader(&self, q: &Queue, to: NodeId) -> bool {
        let stood = if to == self.node() {
            match self.replicas().get(q.id) {
                Some(raft) => raft.trigger().elect().await.is_ok(),
                None => false,
            }
        } else {
            let transport = group::transport(q.id, self.replicas().links.clone());
            match self.address(to) {
                Some(addr) => warren_raft::stand_at(&*transport, &addr, STAND_TIMEOUT)
                    .await
                    .unwrap_or(false),
                None => false,
            }
        };
        let deadline = Instant::now() + MOVE_WAIT;
        while stood && Instant::now() < deadline {
            if self.quorum_leader(q).await == Some(to) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}
