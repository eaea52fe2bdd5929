//! Where a new classic queue lives: on the declaring connection's node (`client-local`, the
//! default), or on the running node with the fewest queues (`balanced`), as RabbitMQ 4 places
//! them. Like RabbitMQ, `balanced` stops counting once there are many queues and picks a
//! running node at random instead, so that a declaration never walks the whole topology.

use warren_meta::{Locator, NodeId, Topology};

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
}
