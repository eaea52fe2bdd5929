//! Three members of one queue's group in one process, each on a "node" of its own (its own
//! `Replicas`), joined by an in-memory hub instead of the cluster's links: commands commit on
//! a majority and every replica applies them alike; the group goes on without its leader, and
//! the node's watch has a new one serve long before openraft's own timers would.

use super::Replicas;
use super::group::{Member, split, start};
use super::machine::Op;
use crate::queue::state::tests::{body, message, queue_of, spec};
use crate::queue::state::{Command, Effect};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_meta::{NodeId, QueueArgs, QueueId, QueueType};
use warren_raft::network::BoxFuture;
use warren_raft::{CallError, ReplicaRaft, Transport};

const Q: QueueId = QueueId {
    node: NodeId(7),
    n: 1,
};

/// The nodes by address; a node taken out no longer answers.
#[derive(Default)]
struct Hub {
    nodes: Mutex<HashMap<String, Arc<Replicas>>>,
}

/// One node's way to the others through the hub.
struct Via {
    hub: Arc<Hub>,
    from: u64,
}

impl Transport for Via {
    fn call(&self, to: &str, request: Bytes, _: Duration) -> BoxFuture<Result<Bytes, CallError>> {
        let target = self.hub.nodes.lock().unwrap().get(to).cloned();
        let from = self.from;
        let to = to.to_owned();
        Box::pin(async move {
            let node = target.ok_or(CallError::Unreachable(to))?;
            let (queue, _) = split(&request).ok_or(CallError::TimedOut)?;
            assert_eq!(queue, Q, "every request names its group");
            let answer = node.serve(from, &request).await;
            if answer.is_empty() {
                return Err(CallError::TimedOut);
            }
            Ok(answer)
        })
    }
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn op(cmd: Command) -> Bytes {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Op::of(1_000_000, (1, seq), vec![cmd]).encode()
}

/// The leader `raft`'s member knows of, once it knows one.
async fn leader_of(raft: &ReplicaRaft) -> u64 {
    let mut m = raft.metrics();
    loop {
        if let Some(l) = m.borrow().current_leader {
            return l;
        }
        m.changed().await.unwrap();
    }
}

/// Members 1 to 3 of `Q`, each on a node of its own in `hub`, keeping time by `config`
/// (openraft's own timers when none); member 1 sets the group up, last, so that its first
/// election finds the others there.
async fn three(
    scratch: &Scratch,
    hub: &Arc<Hub>,
    config: Option<warren_raft::openraft::Config>,
) -> BTreeMap<u64, (Member, Arc<Replicas>)> {
    let addrs: BTreeMap<u64, String> = (1..=3).map(|i| (i, format!("m{i}"))).collect();
    let mut members = BTreeMap::new();
    for (&id, addr) in addrs.iter().rev() {
        let via: Arc<dyn Transport> = Arc::new(Via {
            hub: hub.clone(),
            from: id,
        });
        let node = Replicas::new(via.clone());
        let state = queue_of(QueueType::Quorum, QueueArgs::default(), u64::MAX);
        let first = (id == 1).then(|| addrs.clone());
        let dir = scratch.0.join(addr);
        let timing = config
            .clone()
            .unwrap_or_else(|| super::group::config(Q).expect("config"));
        let member = start(timing, Q, id, state, dir, via, first)
            .await
            .expect("member started");
        node.insert(Q, member.raft.clone());
        hub.nodes.lock().unwrap().insert(addr.clone(), node.clone());
        members.insert(id, (member, node));
    }
    members
}

fn scratch(what: &str) -> Scratch {
    Scratch(std::env::temp_dir().join(format!("warren-quorum-{what}-{}", std::process::id())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_apply_the_same_log_and_outlive_their_leader() {
    let scratch = scratch("group");
    let hub = Arc::new(Hub::default());
    let mut members: BTreeMap<u64, Member> = three(&scratch, &hub, None)
        .await
        .into_iter()
        .map(|(id, (member, _))| (id, member))
        .collect();
    let timeout = Duration::from_secs(10);
    let leader = tokio::time::timeout(timeout, leader_of(&members[&1].raft))
        .await
        .expect("a leader within the timeout");

    // Through a follower: the proposal goes to the leader and commits there.
    let follower = if leader == 1 { 2 } else { 1 };
    let via = &members[&follower].proposer;
    via.propose(op(Command::Consume(spec(1, "c"))), timeout)
        .await
        .expect("consume committed");
    let batch = ["a", "b", "c"].iter().map(|b| (message(b), None)).collect();
    via.propose(op(Command::Publish(batch)), timeout)
        .await
        .expect("publish committed");
    // Every replica applies it and says the same deliveries should happen.
    for (id, member) in members.iter_mut() {
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let a = tokio::time::timeout(timeout, member.applied.recv())
                .await
                .unwrap_or_else(|_| panic!("member {id} applied nothing"))
                .expect("open");
            for e in a.effects {
                if let Effect::Deliver { deliveries, .. } = e {
                    seen.extend(deliveries.iter().map(|d| body(&d.message)));
                }
            }
        }
        assert_eq!(seen, ["a", "b", "c"], "member {id}");
    }

    // The leader goes; the two others elect one of them and take commands.
    let gone = members.remove(&leader).expect("the leader");
    hub.nodes.lock().unwrap().remove(&format!("m{leader}"));
    gone.raft.shutdown().await.expect("shut down");
    let (&survivor, member) = members.iter().next().expect("a survivor");
    let more = vec![(message("d"), None)];
    member
        .proposer
        .propose(op(Command::Publish(more)), timeout)
        .await
        .expect("a majority of two commits without the old leader");
    let new_leader = leader_of(&members[&survivor].raft).await;
    assert_ne!(new_leader, leader);
    // Every replica says the same: the new leader's takeover sends again what was out (the
    // three unacknowledged messages, as redelivered repeats), then "d" goes out as usual.
    for (id, member) in members.iter_mut() {
        let (mut again, mut seen) = (Vec::new(), Vec::new());
        while seen.is_empty() {
            let a = tokio::time::timeout(timeout, member.applied.recv())
                .await
                .unwrap_or_else(|_| panic!("member {id} applied nothing"))
                .expect("open");
            for e in a.effects {
                if let Effect::Deliver { deliveries, .. } = e {
                    for d in deliveries {
                        if a.takeover {
                            assert!(d.repeat && d.redelivered, "member {id}");
                            again.push(body(&d.message));
                        } else {
                            seen.push(body(&d.message));
                        }
                    }
                }
            }
        }
        assert_eq!(again, ["a", "b", "c"], "member {id}");
        assert_eq!(seen, ["d"], "member {id}");
    }
    for (_, member) in members {
        let _ = member.raft.shutdown().await;
    }
}

/// openraft's own timers slowed down far past the test's patience (an election only after
/// 40 to 80 s without a leader, and a lease as long), heartbeats as usual: whatever elects a
/// new leader within the test's time is the node's watch.
fn slow_elections() -> warren_raft::openraft::Config {
    warren_raft::openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 40_000,
        election_timeout_max: 80_000,
        ..Default::default()
    }
    .validate()
    .expect("a valid config")
}

/// Stops the leader's member and takes its node out of the hub; the survivors.
async fn without_leader(
    hub: &Hub,
    mut members: BTreeMap<u64, (Member, Arc<Replicas>)>,
) -> (u64, BTreeMap<u64, (Member, Arc<Replicas>)>) {
    let timeout = Duration::from_secs(10);
    let leader = tokio::time::timeout(timeout, leader_of(&members[&1].0.raft))
        .await
        .expect("the member that set the group up leads at once");
    for (member, _) in members.values() {
        let known = tokio::time::timeout(timeout, leader_of(&member.raft)).await;
        assert_eq!(
            known.ok(),
            Some(leader),
            "every member follows the first leader"
        );
    }
    let (gone, _) = members.remove(&leader).expect("the leader");
    hub.nodes.lock().unwrap().remove(&format!("m{leader}"));
    gone.raft.shutdown().await.expect("shut down");
    (leader, members)
}

/// A survivor's leader once the old one is gone, within 15 s (openraft alone: 80 s or more).
async fn new_leader(members: &BTreeMap<u64, (Member, Arc<Replicas>)>, old: u64) -> u64 {
    let (_, (member, _)) = members.iter().next().expect("a survivor");
    let mut m = member.raft.metrics();
    let wait = m.wait_for(|m| m.current_leader.is_some_and(|l| l != old));
    let elected = tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("a new leader long before openraft's own election timeout")
        .expect("metrics")
        .current_leader;
    elected.expect("a leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_that_stop_hearing_their_leader_elect_another_at_once() {
    let scratch = scratch("silent");
    let hub = Arc::new(Hub::default());
    let members = three(&scratch, &hub, Some(slow_elections())).await;
    for (_, node) in members.values() {
        super::watch::spawn(node);
    }
    let (old, members) = without_leader(&hub, members).await;
    let elected = new_leader(&members, old).await;
    assert!(members.contains_key(&elected), "a survivor leads");
    // And it serves: a proposal through either survivor commits.
    for (member, _) in members.values() {
        member
            .proposer
            .propose(
                op(Command::Publish(vec![(message("x"), None)])),
                Duration::from_secs(10),
            )
            .await
            .expect("committed by the new leader");
    }
    for (_, (member, _)) in members {
        let _ = member.raft.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_elect_at_once_when_their_leader_s_node_goes_down() {
    let scratch = scratch("gone");
    let hub = Arc::new(Hub::default());
    // No watch: only the node's news that the leader's node went down.
    let members = three(&scratch, &hub, Some(slow_elections())).await;
    let (old, members) = without_leader(&hub, members).await;
    for (_, node) in members.values() {
        node.leader_gone(old);
    }
    let elected = new_leader(&members, old).await;
    assert!(members.contains_key(&elected), "a survivor leads");
    for (_, (member, _)) in members {
        let _ = member.raft.shutdown().await;
    }
}
