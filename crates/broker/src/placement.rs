//! Where a new classic queue lives: on the declaring connection's node (`client-local`, the
//! default), or on the running node with the fewest queues (`balanced`), as RabbitMQ 4 places
//! them. Like RabbitMQ, `balanced` stops counting once there are many queues and picks a
//! running node at random instead, so that a declaration never walks the whole topology.

use warren_meta::{Locator, NodeId, QueueType, Topology};

/// Above this many queues, `balanced` picks at random (RabbitMQ's threshold).
const COUNT_UP_TO: usize = 1_000;

/// The home for a new queue declared on node `me`, given the nodes whose brokers run now
/// (`me` among them or not) and a random number.
pub(crate) fn home(
    topology: &Topology,
    me: NodeId,
    running: &[NodeId],
    locator: Locator,
    random: u64,
) -> NodeId {
    if locator == Locator::ClientLocal {
        return me;
    }
    let mut candidates = vec![me];
    candidates.extend(running.iter().filter(|n| **n != me));
    let total: usize = topology.vhosts().map(|v| v.queues().count()).sum();
    if total >= COUNT_UP_TO {
        return candidates[(random % candidates.len() as u64) as usize];
    }
    let mut counts = vec![0usize; candidates.len()];
    for q in topology.vhosts().flat_map(|v| v.queues()) {
        if let Some(i) = candidates.iter().position(|n| *n == q.home) {
            counts[i] += 1;
        }
    }
    // Fewest queues; this node first among equals, then the others in their order.
    let best = (0..candidates.len())
        .min_by_key(|i| counts[*i])
        .unwrap_or(0);
    candidates[best]
}

/// The members of a new quorum queue declared on node `me`: `size` of the nodes whose brokers
/// run (at least `me`), the first to lead. The leader is where the locator says (`balanced`:
/// the node leading the fewest quorum queues); the others are the nodes holding the fewest
/// quorum queues' members, so that replicas spread as leaders do.
pub(crate) fn members(
    topology: &Topology,
    me: NodeId,
    running: &[NodeId],
    locator: Locator,
    size: usize,
) -> Vec<NodeId> {
    let mut nodes = vec![me];
    nodes.extend(running.iter().filter(|n| **n != me));
    let (mut leads, mut holds) = (vec![0usize; nodes.len()], vec![0usize; nodes.len()]);
    let quorum = topology
        .vhosts()
        .flat_map(|v| v.queues())
        .filter(|q| q.kind == QueueType::Quorum);
    for q in quorum {
        for m in &q.members {
            if let Some(i) = nodes.iter().position(|n| n == m) {
                holds[i] += 1;
            }
        }
        if let Some(i) = nodes.iter().position(|n| *n == q.home) {
            leads[i] += 1;
        }
    }
    let leader = match locator {
        Locator::ClientLocal => 0,
        Locator::Balanced => (0..nodes.len()).min_by_key(|i| leads[*i]).unwrap_or(0),
    };
    let mut others: Vec<usize> = (0..nodes.len()).filter(|i| *i != leader).collect();
    // Fewest members first; among equals, this node, then the others in their order.
    others.sort_by_key(|i| holds[*i]);
    std::iter::once(leader)
        .chain(others)
        .take(size.max(1))
        .map(|i| nodes[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_meta::{Command, QueueDeclaration, Uid};

    fn declare(t: &mut Topology, name: &str, n: u64, home: NodeId) {
        t.apply(&Command::DeclareQueue {
            vhost: "/".into(),
            queue: QueueDeclaration {
                name: name.into(),
                id: Uid { node: home, n },
                durable: true,
                auto_delete: false,
                exclusive_owner: None,
                arguments: Default::default(),
                home,
            },
        })
        .unwrap();
    }

    fn topology() -> Topology {
        let mut t = Topology::new();
        t.apply(&Command::AddVhost { name: "/".into() }).unwrap();
        t
    }

    #[test]
    fn balanced_picks_the_running_node_with_fewest_queues() {
        let (a, b, c) = (NodeId(1), NodeId(2), NodeId(3));
        let mut t = topology();
        declare(&mut t, "a1", 1, a);
        declare(&mut t, "a2", 2, a);
        declare(&mut t, "b1", 3, b);
        assert_eq!(home(&t, a, &[a, b, c], Locator::ClientLocal, 0), a);
        assert_eq!(home(&t, a, &[a, b, c], Locator::Balanced, 0), c);
        // c is down: b has fewer than a.
        assert_eq!(home(&t, a, &[a, b], Locator::Balanced, 0), b);
        // Alone, or tied, the declaring node keeps it.
        assert_eq!(home(&t, a, &[], Locator::Balanced, 0), a);
        assert_eq!(home(&t, c, &[a, b, c], Locator::Balanced, 0), c);
    }

    #[test]
    fn balanced_picks_at_random_among_many_queues() {
        let (a, b) = (NodeId(1), NodeId(2));
        let mut t = topology();
        for n in 0..COUNT_UP_TO as u64 {
            declare(&mut t, &format!("q{n}"), n, a);
        }
        let picks: Vec<NodeId> = (0..4)
            .map(|r| home(&t, a, &[a, b], Locator::Balanced, r))
            .collect();
        assert_eq!(
            picks,
            [a, b, a, b],
            "the random number decides, not the counts"
        );
    }

    fn declare_quorum(t: &mut Topology, name: &str, n: u64, members: Vec<NodeId>) {
        t.apply(&Command::DeclareQuorumQueue {
            vhost: "/".into(),
            queue: QueueDeclaration {
                name: name.into(),
                id: Uid {
                    node: members[0],
                    n,
                },
                durable: true,
                auto_delete: false,
                exclusive_owner: None,
                arguments: warren_amqp::FieldTable::new().with("x-queue-type", "quorum"),
                home: members[0],
            },
            members,
        })
        .unwrap();
    }

    #[test]
    fn quorum_members_spread_over_the_running_nodes() {
        let (a, b, c, d) = (NodeId(1), NodeId(2), NodeId(3), NodeId(4));
        let mut t = topology();
        // Three nodes, groups of three: everyone holds one; client-local leads here.
        assert_eq!(
            members(&t, b, &[a, b, c], Locator::ClientLocal, 3),
            [b, a, c]
        );
        // Fewer running nodes than asked for: all of them.
        assert_eq!(members(&t, a, &[a, b], Locator::ClientLocal, 3), [a, b]);
        // Four nodes: replicas go where there are fewest.
        declare_quorum(&mut t, "q1", 1, vec![a, b, c]);
        assert_eq!(
            members(&t, a, &[a, b, c, d], Locator::ClientLocal, 3),
            [a, d, b]
        );
        // balanced: the node leading fewest leads.
        declare_quorum(&mut t, "q2", 2, vec![b, c, d]);
        let m = members(&t, a, &[a, b, c, d], Locator::Balanced, 3);
        assert_eq!(
            m[0], c,
            "a and b lead one each, c and d none: c comes first in order"
        );
        assert_eq!(m.len(), 3);
        // A group of one is the leader alone.
        assert_eq!(members(&t, a, &[a, b, c, d], Locator::ClientLocal, 1), [a]);
    }
}
