//! Three members of one queue's group in one process, joined by an in-memory hub instead of
//! the cluster's links: commands commit on a majority and every replica applies them alike;
//! the group goes on without its leader.

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

/// The members by address; a member taken out no longer answers.
#[derive(Default)]
struct Hub {
    members: Mutex<HashMap<String, (u64, ReplicaRaft)>>,
}

/// One member's way to the others through the hub.
struct Via {
    hub: Arc<Hub>,
    from: u64,
}

impl Transport for Via {
    fn call(&self, to: &str, request: Bytes, _: Duration) -> BoxFuture<Result<Bytes, CallError>> {
        let target = self
            .hub
            .members
            .lock()
            .unwrap()
            .get(to)
            .map(|(_, r)| r.clone());
        let from = self.from;
        let to = to.to_owned();
        Box::pin(async move {
            let raft = target.ok_or(CallError::Unreachable(to))?;
            let (queue, body) = split(&request).ok_or(CallError::TimedOut)?;
            assert_eq!(queue, Q, "every request names its group");
            let answer = warren_raft::serve(&raft, from, body).await;
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

/// Bodies each replica delivered so far, by member.
async fn leader_of(raft: &ReplicaRaft) -> u64 {
    let mut m = raft.metrics();
    loop {
        if let Some(l) = m.borrow().current_leader {
            return l;
        }
        m.changed().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_apply_the_same_log_and_outlive_their_leader() {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("warren-quorum-group-{}", std::process::id())));
    let hub = Arc::new(Hub::default());
    let addrs: BTreeMap<u64, String> = (1..=3).map(|i| (i, format!("m{i}"))).collect();
    let mut members: BTreeMap<u64, Member> = BTreeMap::new();
    for (&id, addr) in &addrs {
        let via: Arc<dyn Transport> = Arc::new(Via {
            hub: hub.clone(),
            from: id,
        });
        let state = queue_of(QueueType::Quorum, QueueArgs::default(), u64::MAX);
        let first = (id == 1).then(|| addrs.clone());
        let member = start(Q, id, state, scratch.0.join(addr), via, first)
            .await
            .expect("member started");
        hub.members
            .lock()
            .unwrap()
            .insert(addr.clone(), (id, member.raft.clone()));
        members.insert(id, member);
    }
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
    hub.members.lock().unwrap().remove(&addrs[&leader]);
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
