//! The operator's verbs for quorum queues (rabbitmq-queues'): which nodes hold a queue
//! (`add_member`, `delete_member`, `grow`, `shrink`), how its members stand
//! (`quorum_status`), whether stopping this node costs a queue its majority
//! (`check_if_node_is_quorum_critical`), and where the leaders are (`rebalance`).

use super::Admin;
use crate::metadata::MemberError;
use std::sync::Arc;

/// One queue's line in `grow` and `shrink`: vhost, name, members after, and `ok` or what
/// went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub vhost: String,
    pub name: String,
    pub size: usize,
    pub result: String,
}

impl MemberRow {
    fn of(
        vhost: String,
        q: &warren_meta::Queue,
        outcome: Result<usize, MemberError>,
        error: impl Fn(&MemberError) -> String,
    ) -> MemberRow {
        let (size, result) = match outcome {
            Ok(size) => (size, "ok".to_owned()),
            Err(e) => (q.members.len(), error(&e)),
        };
        MemberRow {
            vhost,
            name: q.name.to_string(),
            size,
            result,
        }
    }
}

/// Quorum queues in the order operators read them: by vhost, then name.
fn sorted(mut queues: Vec<(String, warren_meta::Queue)>) -> Vec<(String, warren_meta::Queue)> {
    queues.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
    queues
}

impl Admin {
    /// Quorum queue `queue` and cluster node `node` (if it is one), for a membership verb.
    fn member_of(
        &self,
        vhost: &str,
        queue: &str,
        node: &str,
    ) -> Result<
        (
            &Arc<crate::metadata::Metadata>,
            warren_meta::Queue,
            Option<warren_meta::NodeId>,
        ),
        MemberError,
    > {
        let meta = &self.broker.meta;
        Ok((
            meta,
            meta.quorum_queue(vhost, queue)?,
            meta.node_named(node),
        ))
    }

    /// `add_member`: a member of quorum queue `queue` on node `node`.
    pub async fn add_member(
        &self,
        vhost: &str,
        queue: &str,
        node: &str,
    ) -> Result<(), MemberError> {
        let (meta, q, node) = self.member_of(vhost, queue, node)?;
        let node = node.ok_or(MemberError::NodeNotRunning)?;
        meta.add_member(vhost, &q, node).await.map(drop)
    }

    /// `delete_member`: takes node `node`'s member out of quorum queue `queue`.
    pub async fn delete_member(
        &self,
        vhost: &str,
        queue: &str,
        node: &str,
    ) -> Result<(), MemberError> {
        let (meta, q, node) = self.member_of(vhost, queue, node)?;
        match node {
            Some(node) => meta.delete_member(vhost, &q, node).await.map(drop),
            // Not a cluster node: it holds no member, which is what was asked.
            None => Ok(()),
        }
    }

    /// `grow`: a member on `node` for every quorum queue that has none there (`even_only`: of
    /// those with an even number of members). One row per queue: vhost, name, size after,
    /// result. Nothing when the node does not run.
    pub async fn grow(&self, node: &str, even_only: bool) -> Vec<MemberRow> {
        let meta = &self.broker.meta;
        let Some(id) = meta.node_named(node) else {
            return Vec::new();
        };
        if !meta.running_nodes().contains(&id) {
            return Vec::new();
        }
        let mut rows = Vec::new();
        for (vhost, q) in sorted(meta.quorum_queues()) {
            if q.members.contains(&id) || (even_only && q.members.len() % 2 != 0) {
                continue;
            }
            let outcome = meta.add_member(&vhost, &q, id).await;
            rows.push(MemberRow::of(vhost, &q, outcome, |e| format!("error: {e}")));
        }
        rows
    }

    /// `shrink`: takes `node`'s member out of every quorum queue that has one there, also
    /// when the node is down.
    pub async fn shrink(&self, node: &str) -> Vec<MemberRow> {
        let meta = &self.broker.meta;
        let Some(id) = meta.node_named(node) else {
            return Vec::new();
        };
        let mut rows = Vec::new();
        for (vhost, q) in sorted(meta.quorum_queues()) {
            if !q.members.contains(&id) {
                continue;
            }
            let outcome = meta.delete_member(&vhost, &q, id).await;
            if let Err(e) = &outcome {
                tracing::warn!(
                    "queue '{}' in vhost '{vhost}': failed to remove member (replica) on node {node}, error: {e}",
                    q.name
                );
            }
            rows.push(MemberRow::of(vhost, &q, outcome, |e| match e {
                MemberError::LastNode => "error: the last node cannot be removed".to_owned(),
                e => format!("error: {e}"),
            }));
        }
        rows
    }

    /// `quorum_status`: how each member of quorum queue `queue` stands, by node name, in the
    /// queue's order (`None`: it did not answer).
    pub async fn quorum_status(
        &self,
        vhost: &str,
        queue: &str,
    ) -> Result<Vec<(String, Option<warren_raft::MemberStatus>)>, MemberError> {
        let meta = &self.broker.meta;
        let q = meta.quorum_queue(vhost, queue)?;
        let names = meta.node_names();
        Ok(meta
            .member_statuses(&q)
            .await
            .into_iter()
            .map(|(id, s)| (names.get(&id).cloned().unwrap_or_else(|| id.to_string()), s))
            .collect())
    }

    /// `check_if_node_is_quorum_critical`: the quorum queues (vhost, name) with a member on
    /// this node that would lose their majority if it stopped, counting only the members whose
    /// nodes run now.
    pub fn quorum_critical(&self) -> Vec<(String, String)> {
        let meta = &self.broker.meta;
        let me = meta.node();
        let running = meta.running_nodes();
        sorted(meta.quorum_queues())
            .into_iter()
            .filter(|(_, q)| q.members.contains(&me))
            .filter(|(_, q)| {
                let online = q.members.iter().filter(|n| running.contains(n)).count();
                online.saturating_sub(1) < q.members.len() / 2 + 1
            })
            .map(|(vhost, q)| (vhost, q.name.to_string()))
            .collect()
    }

    /// `rebalance quorum`: moves quorum queues' leaders so that each running node leads about
    /// as many; how many each running node leads afterwards, by name.
    pub async fn rebalance_quorum(&self) -> Vec<(String, usize)> {
        let led = self.broker.meta.rebalance_quorum().await;
        led.into_iter()
            .map(|(n, count)| (self.node_name(n), count))
            .collect()
    }

    /// How many quorum queues each running node leads, by name.
    pub async fn quorum_leaders(&self) -> Vec<(String, usize)> {
        let led = self.broker.meta.quorum_leaders().await;
        led.into_iter()
            .map(|(n, count)| (self.node_name(n), count))
            .collect()
    }
}
