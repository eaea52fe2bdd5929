//! A replica as openraft drives it: the storage conformance suite, entries applied once and in
//! any order, and snapshots that carry a queue from one member to another (or across a
//! restart) without changing what it does next. Deep queues' paging: `deep_tests`.

use super::machine::{Applied, Op, Outcome, QuorumMachine};
use super::shell::WINDOW;
use crate::queue::Settle;
use crate::queue::state::Command;
use crate::queue::state::Effect;
use crate::queue::state::Reply;
use crate::queue::state::tests::{body, message, queue_of, spec};
use crate::queue::wire::Answer;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use warren_meta::{QueueArgs, QueueType};
use warren_raft::openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use warren_raft::openraft::testing::{StoreBuilder, Suite};
use warren_raft::openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, StorageError};
use warren_raft::{LogStore, Replica};

const T0: u64 = 1_000_000;

/// A directory of its own, removed when dropped.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new() -> Scratch {
        Scratch::named("warren-quorum")
    }

    fn named(prefix: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn replica(dir: &Scratch) -> (QuorumMachine, mpsc::UnboundedReceiver<Applied>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = queue_of(QueueType::Quorum, QueueArgs::default(), u64::MAX);
    let machine = QuorumMachine::open(state, dir.0.clone(), tx).expect("opened");
    (machine, rx)
}

struct Builder;

impl StoreBuilder<Replica, LogStore<Replica>, QuorumMachine, Scratch> for Builder {
    async fn build(
        &self,
    ) -> Result<(Scratch, LogStore<Replica>, QuorumMachine), StorageError<u64>> {
        let dir = Scratch::named(SUITE);
        let (log, _) = LogStore::open(&dir.0.join("log")).expect("log opened");
        let (machine, _effects) = replica(&dir);
        Ok((dir, log, machine))
    }
}

/// openraft's own conformance suite: appends, truncation, purges, votes, membership read back
/// from log and state machine, snapshots built, sent and installed.
/// The prefix of the suite's stores' directories.
const SUITE: &str = "warren-quorum-suite";

#[test]
fn a_replica_passes_openraft_s_storage_suite() {
    let passed = Suite::test_all(Builder);
    crate::persist::remove_left_behind(SUITE);
    passed.unwrap();
}

pub(super) fn entry(index: u64, cmd: Command) -> Entry<Replica> {
    let op = Op::of(T0, (1, index), vec![cmd]);
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(op.encode()),
    }
}

pub(super) fn publish(index: u64, bodies: &[&str]) -> Entry<Replica> {
    entry(
        index,
        Command::Publish(bodies.iter().map(|b| (message(b), None)).collect()),
    )
}

/// What a replica delivered since last asked: (consumer tag, body, seq, redelivered).
pub(super) fn delivered(
    rx: &mut mpsc::UnboundedReceiver<Applied>,
) -> Vec<(String, String, u64, bool)> {
    let mut out = Vec::new();
    while let Ok(applied) = rx.try_recv() {
        for e in applied.effects {
            if let Effect::Deliver { deliveries, .. } = e {
                out.extend(deliveries.into_iter().map(|d| {
                    (
                        d.consumer_tag.to_string(),
                        body(&d.message),
                        d.seq,
                        d.redelivered,
                    )
                }));
            }
        }
    }
    out
}

pub(super) fn consumed(answer: &Bytes) -> u64 {
    let outcome: Option<Outcome> = postcard::from_bytes(answer).ok();
    match outcome.as_ref().map(|o| o.answers.as_slice()) {
        Some([Answer::Other(Reply::Consumed(Ok(id)))]) => *id,
        _ => panic!("not a consume-ok"),
    }
}

#[tokio::test]
async fn a_member_that_installs_a_snapshot_goes_on_as_the_leader_does() {
    let (a_dir, b_dir) = (Scratch::new(), Scratch::new());
    let (mut a, mut a_rx) = replica(&a_dir);
    let answers = a
        .apply([
            entry(1, Command::Consume(spec(1, "c"))),
            publish(2, &["m1", "m2", "m3"]),
        ])
        .await
        .unwrap();
    consumed(&answers[0]);
    let out = delivered(&mut a_rx);
    assert_eq!(out.len(), 3);
    // m2 comes back once; m1 is acknowledged; m3 stays out.
    a.apply([
        entry(3, Command::Settle(vec![out[1].2], Settle::Requeue)),
        entry(4, Command::Settle(vec![out[0].2], Settle::Ack)),
    ])
    .await
    .unwrap();
    let redelivered = delivered(&mut a_rx);
    assert_eq!(
        redelivered.len(),
        1,
        "m2 went straight back to the consumer"
    );

    let snapshot = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(4));
    let sent = a.get_current_snapshot().await.unwrap().expect("a snapshot");
    let (mut b, mut b_rx) = replica(&b_dir);
    b.install_snapshot(&sent.meta, sent.snapshot).await.unwrap();
    let (applied, _) = b.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(4));

    // From here, both see the same entries and must do the same: the consumer's channel
    // closes (m2 and m3 come back, counted), and a new consumer takes everything.
    let next = || {
        [
            entry(
                5,
                Command::ChannelClosed {
                    conn: spec(1, "c").conn,
                    channel_key: 1,
                },
            ),
            publish(6, &["m4"]),
            entry(7, Command::Consume(spec(2, "d"))),
        ]
    };
    let (ra, rb) = (
        a.apply(next()).await.unwrap(),
        b.apply(next()).await.unwrap(),
    );
    assert_eq!(consumed(&ra[2]), consumed(&rb[2]), "the same consumer id");
    let (da, db) = (delivered(&mut a_rx), delivered(&mut b_rx));
    assert_eq!(da, db);
    let bodies: Vec<&str> = da.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(
        bodies,
        ["m2", "m3", "m4"],
        "what came back, then what was published after"
    );
    assert!(da[0].3 && da[1].3 && !da[2].3);
}

/// Applies entry `index` (a publish of one `size`-byte message) and returns the bytes it
/// logged and whether the replica asked for a snapshot.
async fn publish_sized(
    m: &mut QuorumMachine,
    rx: &mut mpsc::UnboundedReceiver<Applied>,
    index: u64,
    size: usize,
) -> (u64, bool) {
    let e = publish(index, &["x".repeat(size).as_str()]);
    let logged = match &e.payload {
        EntryPayload::Normal(raw) => raw.len() as u64,
        _ => 0,
    };
    m.apply([e]).await.unwrap();
    let mut asked = false;
    while let Ok(a) = rx.try_recv() {
        asked |= a.snapshot;
    }
    (logged, asked)
}

#[tokio::test]
async fn a_member_asks_for_a_snapshot_once_its_log_outgrows_the_last_one() {
    let dir = Scratch::new();
    let (m, mut rx) = replica(&dir);
    let mut m = m.snapshot_after(1_000);
    // The queue deepens (no consumer): each snapshot is larger than the one before.
    let (mut index, mut logged) = (0, 0);
    let asked_at = loop {
        index += 1;
        let (bytes, asked) = publish_sized(&mut m, &mut rx, index, 300).await;
        logged += bytes;
        if asked {
            break logged;
        }
        assert!(index < 10, "never asked");
    };
    assert!(asked_at > 1_000 && asked_at < 1_000 + 400, "{asked_at}");
    // Asked once: not again until the snapshot is begun.
    for _ in 0..5 {
        index += 1;
        assert!(!publish_sized(&mut m, &mut rx, index, 300).await.1);
    }
    let snapshot = m
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut snapshot = snapshot;
    let size = data_len(&mut snapshot.snapshot).await;
    assert!(size > 2_700, "the nine messages the queue holds: {size}");
    // Now the log must outgrow the snapshot, not the floor.
    let mut logged = 0;
    loop {
        index += 1;
        let (bytes, asked) = publish_sized(&mut m, &mut rx, index, 300).await;
        logged += bytes;
        if asked {
            break;
        }
    }
    assert!(
        logged > size && logged < size + 400,
        "{logged} after {size}"
    );
}

#[tokio::test]
async fn a_member_restarted_takes_its_snapshot_back() {
    let dir = Scratch::new();
    {
        let (mut a, _rx) = replica(&dir);
        a.apply([publish(1, &["kept1", "kept2"])]).await.unwrap();
        a.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
    }
    let (mut again, mut rx) = replica(&dir);
    let (applied, _) = again.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(1));
    assert_eq!(again.state().ready_len(), 2);
    let answers = again
        .apply([entry(2, Command::Consume(spec(1, "c")))])
        .await
        .unwrap();
    consumed(&answers[0]);
    let bodies: Vec<String> = delivered(&mut rx).into_iter().map(|d| d.1).collect();
    assert_eq!(bodies, ["kept1", "kept2"]);
}

#[tokio::test]
async fn an_unreadable_entry_is_skipped_alike_by_every_replica() {
    let dir = Scratch::new();
    let (mut a, _rx) = replica(&dir);
    let junk = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(Bytes::from_static(b"\xff\xff\xff")),
    };
    let answers = a.apply([junk, publish(2, &["after"])]).await.unwrap();
    assert!(answers[0].is_empty());
    assert_eq!(a.state().ready_len(), 1, "the next entry still applies");
}

#[tokio::test]
async fn one_entry_carries_many_commands_answered_in_order() {
    let dir = Scratch::new();
    let (mut a, mut rx) = replica(&dir);
    let cmds = vec![
        Command::Consume(spec(1, "c")),
        Command::Publish(vec![(message("x"), None), (message("y"), None)]),
        Command::Counts,
    ];
    let e = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(Op::of(T0, (1, 1), cmds).encode()),
    };
    let answers = a.apply([e]).await.unwrap();
    let outcome: Outcome = postcard::from_bytes(&answers[0]).unwrap();
    let answers = outcome.answers;
    assert!(matches!(
        answers.as_slice(),
        [
            Answer::Other(Reply::Consumed(Ok(_))),
            Answer::Other(Reply::Done),
            // Counted before the entry's messages went out: the queue delivers once the
            // whole entry is applied.
            Answer::Other(Reply::Counts {
                messages: 2,
                unacked: 0,
                consumers: 1
            }),
        ]
    ));
    let bodies: Vec<String> = delivered(&mut rx).into_iter().map(|d| d.1).collect();
    assert_eq!(bodies, ["x", "y"]);
}

#[tokio::test]
async fn an_entry_proposed_again_is_applied_once_and_answered_alike() {
    let dir = Scratch::new();
    let (mut a, mut rx) = replica(&dir);
    let ticket = crate::queue::Ticket {
        conn: spec(1, "p").conn,
        channel: 1,
        channel_key: 1,
        seq: 42,
        commit: false,
    };
    let op = |index| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(
            Op::of(
                T0,
                (9, 1),
                vec![
                    Command::Publish(vec![(message("once"), Some(ticket.clone()))]),
                    Command::Counts,
                ],
            )
            .encode(),
        ),
    };
    // The proposer heard nothing the first time (its leader died) and proposed it again.
    let answers = a.apply([op(1), op(2)]).await.unwrap();
    assert_eq!(answers[0], answers[1], "answered as the first time");
    assert_eq!(a.state().ready_len(), 1, "enqueued once");
    // The publisher's confirm is in the outcome, for the proposer to send, both times; the
    // leader's effects hold none.
    let outcome: Outcome = postcard::from_bytes(&answers[1]).unwrap();
    assert_eq!(outcome.settled, [(vec![ticket.clone()], true)]);
    while let Ok(applied) = rx.try_recv() {
        assert!(
            !applied
                .effects
                .iter()
                .any(|e| matches!(e, crate::queue::state::Effect::Settled { .. }))
        );
    }
    // Its next entry is applied.
    let next = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 3),
        payload: EntryPayload::Normal(
            Op::of(
                T0,
                (9, 2),
                vec![Command::Publish(vec![(message("twice"), None)])],
            )
            .encode(),
        ),
    };
    a.apply([next]).await.unwrap();
    assert_eq!(a.state().ready_len(), 2);
}

/// A member has several entries in flight at once, and they may be committed in another
/// order than it numbered them (forwarded to the leader side by side): each is applied once
/// in whatever order, and one proposed again is answered from memory.
#[tokio::test]
async fn entries_of_one_member_applied_out_of_order_are_each_applied_once() {
    let dir = Scratch::new();
    let (mut a, _rx) = replica(&dir);
    let numbered = |index: u64, seq: u64, body: &str| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(
            Op::of(
                T0,
                (9, seq),
                vec![Command::Publish(vec![(message(body), None)])],
            )
            .encode(),
        ),
    };
    a.apply([
        numbered(1, 2, "second"),
        numbered(2, 1, "first"),
        numbered(3, 3, "third"),
    ])
    .await
    .unwrap();
    assert_eq!(a.state().ready_len(), 3, "all three, though 1 came after 2");
    a.apply([numbered(4, 1, "first"), numbered(5, 2, "second")])
        .await
        .unwrap();
    assert_eq!(
        a.state().ready_len(),
        3,
        "proposed again: not applied again"
    );
    // Far more entries later, an old number is still not applied again.
    for seq in 4..40 {
        a.apply([numbered(2 + seq, seq, "later")]).await.unwrap();
    }
    let before = a.state().ready_len();
    a.apply([numbered(100, 2, "second")]).await.unwrap();
    assert_eq!(a.state().ready_len(), before);
}

/// The most a member lets its entries be overtaken (`shell::WINDOW`): an entry it proposes
/// again after `WINDOW - 1` newer ones were applied, and many older ones before them, is
/// applied, not taken for one applied long ago.
#[tokio::test]
async fn an_entry_overtaken_by_as_many_as_a_member_allows_is_still_applied() {
    let dir = Scratch::new();
    let (mut a, _rx) = replica(&dir);
    let numbered = |index: u64, seq: u64| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(
            Op::of(
                T0,
                (9, seq),
                vec![Command::Publish(vec![(message("m"), None)])],
            )
            .encode(),
        ),
    };
    let retried = 100;
    let older = (retried - 40)..retried;
    let newer = (retried + 1)..(retried + WINDOW);
    let mut index = 0;
    for seq in older.chain(newer) {
        index += 1;
        a.apply([numbered(index, seq)]).await.unwrap();
    }
    let before = a.state().ready_len();
    a.apply([numbered(index + 1, retried)]).await.unwrap();
    assert_eq!(
        a.state().ready_len(),
        before + 1,
        "the overtaken entry was dropped"
    );
    a.apply([numbered(index + 2, retried)]).await.unwrap();
    assert_eq!(a.state().ready_len(), before + 1, "and it is applied once");
}

/// Every command a log can carry reads back as itself, whatever its place in the enum (a
/// skipped variant in the middle once made a gone connection read back as a gone node).
#[test]
fn every_logged_command_reads_back_as_itself() {
    use warren_meta::{NodeId, Uid};
    let conn = Uid {
        node: NodeId(3),
        n: 9,
    };
    let cmds = vec![
        Command::Settle(vec![1, 2], Settle::Ack),
        Command::Credit { consumer: 4, n: 10 },
        Command::ChannelClosed {
            conn,
            channel_key: 5,
        },
        Command::Purge,
        Command::ConnectionGone { conn },
        Command::NodeGone { node: NodeId(3) },
        Command::Delete {
            if_unused: false,
            if_empty: true,
        },
    ];
    let wanted: Vec<String> = cmds.iter().map(|c| format!("{c:?}")).collect();
    let raw = Op::of(T0, (1, 1), cmds).encode();
    let op: Op = postcard::from_bytes(&raw).expect("an entry reads back");
    let got: Vec<String> = op
        .cmds
        .into_iter()
        .map(|c| format!("{:?}", c.into_command()))
        .collect();
    assert_eq!(got, wanted);
}

/// A replica tells its shell when it must next look at itself (a message's TTL), and a tick
/// entry then expires what is due, the same on every replica.
#[tokio::test]
async fn a_replica_names_its_next_deadline_and_a_tick_expires_the_head() {
    let dir = Scratch::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let args = QueueArgs {
        message_ttl: Some(500),
        ..Default::default()
    };
    let state = queue_of(QueueType::Quorum, args, u64::MAX);
    let mut a = QuorumMachine::open(state, dir.0.clone(), tx).expect("opened");
    a.apply([publish(1, &["soon gone"])]).await.unwrap();
    let told = rx.try_recv().expect("told");
    assert_eq!(told.deadline, Some(T0 + 500));
    assert!(!told.remove);
    // Before the deadline, a tick changes nothing; at it, the message goes.
    let tick = |index: u64, now: u64| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Op::of(now, (1, index), vec![Command::Tick]).encode()),
    };
    a.apply([tick(2, T0 + 100)]).await.unwrap();
    assert_eq!(a.state().ready_len(), 1);
    a.apply([tick(3, T0 + 500)]).await.unwrap();
    assert_eq!(a.state().ready_len(), 0);
    let last = std::iter::from_fn(|| rx.try_recv().ok())
        .last()
        .expect("told again");
    assert_eq!(last.deadline, None, "nothing left to wait for");
}

/// The length of a snapshot's data, as openraft finds it before sending.
pub(super) async fn data_len(data: &mut warren_raft::snapshot_data::SnapshotData) -> u64 {
    use tokio::io::AsyncSeekExt;
    data.seek(std::io::SeekFrom::End(0)).await.unwrap()
}
