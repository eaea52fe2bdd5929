//! A deep quorum queue's replica: it pages messages out, its snapshot links the pages instead
//! of copying them, a snapshot with pages reaches another member whole, and drained pages and
//! old snapshots go.

use super::machine::{Applied, QuorumMachine};
use super::tests::{Scratch, consumed, data_len, delivered, entry, publish};
use crate::queue::state::Command;
use crate::queue::state::tests::{queue_at, spec};
use tokio::sync::mpsc;
use warren_meta::{QueueArgs, QueueType};
use warren_raft::openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

/// A replica that keeps at most `memory` body bytes of ready messages in memory, paging the
/// rest out to small segments in its group directory.
fn paging_replica(dir: &Scratch, memory: u64) -> (QuorumMachine, mpsc::UnboundedReceiver<Applied>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let store = crate::queue::QueueDisk {
        dir: dir.0.join(super::snapshot::PAGES),
        segment_bytes: 8 << 10,
        memory_bytes: memory,
    };
    let state = queue_at(QueueType::Quorum, QueueArgs::default(), store);
    let machine = QuorumMachine::open(state, dir.0.clone(), tx).expect("opened");
    (machine, rx)
}

/// Publishes `n` messages `m0`.. (500 bytes each, numbered at the front), one entry each
/// from `first` on.
async fn publish_deep(m: &mut QuorumMachine, first: u64, n: u64) {
    for i in 0..n {
        let body = format!("m{i:<499}");
        m.apply([publish(first + i, &[body.as_str()])])
            .await
            .unwrap();
    }
}

/// Consumes everything ready (a consumer with credit enough) and returns the bodies' names.
async fn drain(
    m: &mut QuorumMachine,
    rx: &mut mpsc::UnboundedReceiver<Applied>,
    index: u64,
) -> Vec<String> {
    let mut c = spec(1, "c");
    c.credit = 100_000;
    let answers = m.apply([entry(index, Command::Consume(c))]).await.unwrap();
    consumed(&answers[0]);
    delivered(rx)
        .into_iter()
        .map(|d| d.1.trim_end().to_owned())
        .collect()
}

fn names(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

fn entries_named(dir: &std::path::Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_deep_queue_s_replica_pages_out_and_its_snapshot_links_the_pages() {
    let dir = Scratch::new();
    {
        let (mut a, _rx) = paging_replica(&dir, 4_000);
        publish_deep(&mut a, 1, 200).await;
        assert_eq!(a.state().ready_len(), 200);
        assert!(
            a.state().mem_bytes() <= 4_000,
            "memory holds {} bytes",
            a.state().mem_bytes()
        );
        let built = a
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let mut built = built;
        let image = data_len(&mut built.snapshot).await;
        assert!(
            image < 10_000,
            "the image holds the runs, not the 100,000 bytes paged out: {image}"
        );
        let snap = std::fs::read_dir(&dir.0)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("snap-"))
            .expect("a snapshot directory")
            .path();
        assert!(
            entries_named(&snap, "0") >= 10,
            "the page segments are linked"
        );
    }
    // A restart takes the snapshot back, pages included, in order.
    let (mut again, mut rx) = paging_replica(&dir, 4_000);
    assert_eq!(again.state().ready_len(), 200);
    assert_eq!(drain(&mut again, &mut rx, 201).await, names(200));
}

#[tokio::test]
async fn a_snapshot_with_pages_goes_to_another_member_whole() {
    let (a_dir, b_dir) = (Scratch::new(), Scratch::new());
    let (mut a, _a_rx) = paging_replica(&a_dir, 4_000);
    publish_deep(&mut a, 1, 150).await;
    a.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    // Published after the snapshot: not in it (the log carries them).
    publish_deep(&mut a, 151, 5).await;
    let files = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = walk(dir).into_iter().collect();
        names.sort();
        names
    };
    let before = files(&a_dir.0);
    let sent = a.get_current_snapshot().await.unwrap().expect("a snapshot");
    assert_eq!(sent.meta.last_log_id.map(|l| l.index), Some(150));
    // Sending copies nothing first: the snapshot's files are read where they lie.
    assert_eq!(files(&a_dir.0), before);

    let (mut b, mut b_rx) = paging_replica(&b_dir, 4_000);
    let mut receiving = b.begin_receiving_snapshot().await.unwrap();
    let mut data = sent.snapshot;
    tokio::io::copy(&mut data, &mut *receiving).await.unwrap();
    b.install_snapshot(&sent.meta, receiving).await.unwrap();
    let (applied, _) = b.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(150));
    assert_eq!(b.state().ready_len(), 150);
    assert!(!b_dir.0.join(super::snapshot::RECEIVING).exists());
    // The member goes on with the log after it: new pages go to new segments.
    publish_deep(&mut b, 151, 60).await;
    let mut want = names(150);
    want.extend(names(60));
    assert_eq!(drain(&mut b, &mut b_rx, 211).await, want);
}

#[tokio::test]
async fn a_drained_queue_s_pages_and_old_snapshots_go() {
    let dir = Scratch::new();
    let (mut a, mut rx) = paging_replica(&dir, 4_000);
    publish_deep(&mut a, 1, 200).await;
    a.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let pages = dir.0.join(super::snapshot::PAGES);
    assert!(entries_named(&pages, "0") >= 10);
    let mut c = spec(1, "c");
    c.credit = 100_000;
    c.no_ack = true;
    let answers = a.apply([entry(201, Command::Consume(c))]).await.unwrap();
    consumed(&answers[0]);
    assert_eq!(delivered(&mut rx).len(), 200);
    assert!(
        entries_named(&pages, "0") <= 1,
        "consumed segments are deleted (all but the one being written)"
    );
    a.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(entries_named(&dir.0, "snap-"), 1, "the older snapshot went");
}

/// Every file under `dir`, by its path below it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            let below = walk(&path);
            let name = e.file_name().to_string_lossy().into_owned();
            out.extend(below.into_iter().map(|b| format!("{name}/{b}")));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}
