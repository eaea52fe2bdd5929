//! `rebalance quorum`: which quorum queues' leaders to move so that each running node leads
//! about as many as the others, as RabbitMQ's `rabbit_amqqueue:rebalance` aims for. The plan
//! is pure (each queue's leader and running members in, the moves out) and tested without a
//! cluster; the metadata carries it out (`metadata/rebalance.rs`).

use std::collections::BTreeMap;
use warren_meta::NodeId;

/// A quorum queue as the plan sees it: who leads it, and which of its members run.
pub(crate) struct Led<K> {
    pub queue: K,
    pub leader: NodeId,
    pub online: Vec<NodeId>,
}

/// The moves (queue, new leader) that even out how many queues each of `nodes` leads. Each
/// step moves one queue from a node to another of its running members that leads at least two
/// fewer, the pair furthest apart first; every step lowers the spread, so it ends. A queue is
/// moved at most once, to where the steps left it.
pub(crate) fn plan<K: Clone>(queues: &[Led<K>], nodes: &[NodeId]) -> Vec<(K, NodeId)> {
    let mut count: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for q in queues {
        if let Some(c) = count.get_mut(&q.leader) {
            *c += 1;
        }
    }
    let mut leader: Vec<NodeId> = queues.iter().map(|q| q.leader).collect();
    loop {
        let mut best: Option<(usize, NodeId, usize)> = None;
        for (i, q) in queues.iter().enumerate() {
            let Some(&have) = count.get(&leader[i]) else {
                continue;
            };
            for to in &q.online {
                let Some(&other) = count.get(to) else {
                    continue;
                };
                let gap = have.saturating_sub(other);
                if gap >= 2 && best.is_none_or(|(_, _, g)| gap > g) {
                    best = Some((i, *to, gap));
                }
            }
        }
        let Some((i, to, _)) = best else {
            break;
        };
        if let Some(c) = count.get_mut(&leader[i]) {
            *c -= 1;
        }
        if let Some(c) = count.get_mut(&to) {
            *c += 1;
        }
        leader[i] = to;
    }
    queues
        .iter()
        .zip(leader)
        .filter(|(q, to)| q.leader != *to)
        .map(|(q, to)| (q.queue.clone(), to))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: NodeId = NodeId(1);
    const N2: NodeId = NodeId(2);
    const N3: NodeId = NodeId(3);

    fn led(queue: u32, leader: NodeId, online: &[NodeId]) -> Led<u32> {
        Led {
            queue,
            leader,
            online: online.to_vec(),
        }
    }

    /// How many each node leads once the moves are made.
    fn after(queues: &[Led<u32>], moves: &[(u32, NodeId)]) -> Vec<usize> {
        [N1, N2, N3]
            .iter()
            .map(|n| {
                queues
                    .iter()
                    .filter(|q| {
                        let to = moves.iter().find(|(m, _)| *m == q.queue).map(|m| m.1);
                        to.unwrap_or(q.leader) == *n
                    })
                    .count()
            })
            .collect()
    }

    #[test]
    fn nine_queues_led_by_one_node_end_three_each() {
        let queues: Vec<Led<u32>> = (0..9).map(|i| led(i, N1, &[N1, N2, N3])).collect();
        let moves = plan(&queues, &[N1, N2, N3]);
        assert_eq!(moves.len(), 6);
        assert_eq!(after(&queues, &moves), [3, 3, 3]);
    }

    #[test]
    fn an_even_spread_moves_nothing() {
        let queues = [
            led(0, N1, &[N1, N2, N3]),
            led(1, N2, &[N1, N2, N3]),
            led(2, N3, &[N1, N2, N3]),
            led(3, N1, &[N1, N2, N3]),
        ];
        assert!(plan(&queues, &[N1, N2, N3]).is_empty());
    }

    #[test]
    fn a_leader_moves_only_to_a_running_member_of_its_queue() {
        // Members on n1 and n2 only: n3 gets nothing, n2 takes half.
        let queues: Vec<Led<u32>> = (0..4).map(|i| led(i, N1, &[N1, N2])).collect();
        let moves = plan(&queues, &[N1, N2, N3]);
        assert!(moves.iter().all(|(_, to)| *to == N2));
        assert_eq!(after(&queues, &moves), [2, 2, 0]);
        // A node that is not running leads nothing new.
        let moves = plan(&queues, &[N1]);
        assert!(moves.is_empty());
    }

    #[test]
    fn each_queue_moves_at_most_once() {
        let queues: Vec<Led<u32>> = (0..7).map(|i| led(i, N1, &[N1, N2, N3])).collect();
        let moves = plan(&queues, &[N1, N2, N3]);
        let mut moved: Vec<u32> = moves.iter().map(|m| m.0).collect();
        moved.dedup();
        assert_eq!(moved.len(), moves.len());
        assert_eq!(after(&queues, &moves), [3, 2, 2]);
    }
}
