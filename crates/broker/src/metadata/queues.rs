//! Starting the queues the topology names, on this node: a classic queue's actor where it
//! lives (with its messages back from its log), a quorum queue's member where it has one, and
//! elsewhere a handle that reaches the queue on another node.

use super::Metadata;
use crate::queue::{self, QueueHandle};
use crate::vhost::VHost;
use std::sync::Arc;
use warren_meta::{NodeId, Queue, QueueType};

/// How long a deleted quorum queue's member waits for its group to agree before it stops.
const RETIRE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Metadata {
    /// The handle of a queue: its actor, started here if this is its home, else a handle that
    /// reaches it on its home node.
    pub(super) fn handle_for(&self, v: &Arc<VHost>, q: &Queue) -> Option<QueueHandle> {
        if q.kind == QueueType::Quorum {
            return self.quorum_handle(v, q, true);
        }
        if q.home == self.node() {
            return self.start_queue(v, q);
        }
        Some(QueueHandle::remote(
            v.name.clone(),
            q.clone(),
            q.home,
            self.peers.clone(),
        ))
    }

    /// A quorum queue's members changed: a member joining here starts empty (the group's
    /// leader sends it the log, or a snapshot), one leaving here stops and its directory goes,
    /// and a node that holds none reaches the queue through a member it still has.
    pub(super) fn members_changed(&self, v: &Arc<VHost>, q: &Queue, before: &[NodeId]) {
        let me = self.node();
        let (was, is) = (before.contains(&me), q.members.contains(&me));
        if was && is {
            return;
        }
        if let Some(old) = v.queue_stopped(&q.name, q.id) {
            if was {
                // Channels holding the old handle go on through the remaining members.
                old.move_to_members(&q.members, self.peers.clone());
                self.retire_member(old, q.id, false);
            }
        }
        if is {
            // Whatever an earlier membership left here is not the group's state any more.
            let _ = std::fs::remove_dir_all(self.settings.quorum_dir(q.id));
        }
        if let Some(h) = self.quorum_handle(v, q, false) {
            v.queue_started(h);
        }
    }

    /// Stops this node's member of quorum queue `id` and removes its directory: the queue was
    /// deleted (`deleted`: it is told so first, so that its consumers hear it), or this node
    /// no longer holds it.
    pub(super) fn retire_member(&self, h: QueueHandle, id: warren_meta::QueueId, deleted: bool) {
        let dir = self.settings.quorum_dir(id);
        tokio::spawn(async move {
            if deleted && h.is_running() {
                // The other members may have gone already: no majority, no waiting for one.
                let _ = tokio::time::timeout(RETIRE_WAIT, h.delete(false, false)).await;
            }
            h.shut_down().await;
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a quorum queue member's directory");
                }
            }
        });
    }

    /// The handle of a quorum queue: this node's member of its group, started here, or (on a
    /// node that holds none) a handle that reaches it through a member. Only a member that
    /// was there when the queue was declared (`founding`) may set the group up.
    fn quorum_handle(&self, v: &Arc<VHost>, q: &Queue, founding: bool) -> Option<QueueHandle> {
        let me = self.node();
        if !q.members.contains(&me) {
            return QueueHandle::remote_any(
                v.name.clone(),
                q.clone(),
                &q.members,
                self.peers.clone(),
            );
        }
        if q.arguments
            .get("x-overflow")
            .and_then(|v| v.as_bytes())
            .map(|b| b.as_ref())
            == Some(b"reject-publish-dlx")
        {
            tracing::warn!(queue = %q.name, vhost = %v.name, "Invalid overflow strategy reject-publish-dlx for a quorum queue: drop-head applies");
        }
        let addresses = self.addresses.read().map(|a| a.clone()).unwrap_or_default();
        let addr = |n: NodeId| {
            addresses
                .get(&n.0)
                .cloned()
                .unwrap_or_else(|| n.to_string())
        };
        // The member placed first sets the group up, the first time it runs.
        let initial = (founding && q.members.first() == Some(&me))
            .then(|| q.members.iter().map(|n| (n.0, addr(*n))).collect());
        let placement = crate::quorum::shell::Placement {
            me: me.0,
            pages: self.settings.config(self.settings.quorum_dir(q.id), q),
            dir: self.settings.quorum_dir(q.id),
            initial,
            peers: crate::quorum::rebuild::Peers {
                me: addr(me),
                others: q
                    .members
                    .iter()
                    .filter(|n| **n != me)
                    .map(|n| addr(*n))
                    .collect(),
            },
        };
        let around = queue::Surroundings {
            on_remove: v.on_remove(),
            dead_letters: v.dead_letters(),
            post: self.post.clone(),
            confirms_to: self.ids.next(),
        };
        Some(crate::quorum::shell::spawn(
            &v.name,
            q.clone(),
            placement,
            self.replicas.clone(),
            around,
        ))
    }

    /// Starts the actor of a queue that lives on this node. A durable queue whose log exists
    /// takes its messages back: logs are named by queue id, so an existing one is this very
    /// queue's (applied again after a restart, or recovered).
    fn start_queue(&self, v: &Arc<VHost>, q: &Queue) -> Option<QueueHandle> {
        let s = &self.settings;
        let start = if q.durable {
            let dir = s.durable_dir(q.id);
            if !dir.exists() {
                let legacy = s.legacy_durable_dir(&v.name, &q.name);
                if legacy.exists() {
                    if let Err(e) = std::fs::rename(&legacy, &dir) {
                        tracing::error!(queue = %q.name, vhost = %v.name, error = %e, "cannot move the queue's log to its new place");
                    }
                }
            }
            if dir.exists() {
                let levels = q.args.max_priority.map_or(1, |p| p as u16 + 1);
                match queue::recover(s.config(dir, q), levels) {
                    Ok((start, repairs)) => {
                        for r in repairs {
                            tracing::warn!(queue = %q.name, vhost = %v.name, "{r}");
                        }
                        start
                    }
                    Err(e) => {
                        tracing::error!(queue = %q.name, vhost = %v.name, error = %e, "cannot open the queue's log");
                        return None;
                    }
                }
            } else {
                queue::empty(s.config(dir, q))
            }
        } else {
            queue::empty(s.config(s.transient_dir(q.id), q))
        };
        let around = queue::Surroundings {
            on_remove: v.on_remove(),
            dead_letters: v.dead_letters(),
            post: self.post.clone(),
            confirms_to: self.ids.next(),
        };
        Some(queue::spawn(&v.name, q.clone(), start, around))
    }
}
