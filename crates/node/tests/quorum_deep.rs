//! A deep quorum queue: its replicas keep only the head of the queue in memory and page the
//! rest out, their snapshots take the pages along, and a member that joins after the leader
//! truncated its log gets them all from a snapshot.

mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::cluster::{cluster_with, durable, quorum_args};
use support::{Node, lapin_channel, publish_confirmed};

/// Messages published: 40 MB in all, past the 32 MiB of log after which a member takes a
/// snapshot and truncates its log.
const MESSAGES: usize = 1_000;
const SIZE: usize = 40_000;

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("m{i} ").into_bytes();
    b.resize(SIZE, b'0' + (i % 10) as u8);
    b
}

/// The group directories on a node.
fn groups(node: &Node) -> Vec<PathBuf> {
    std::fs::read_dir(node.spec.dir.join("data").join("quorum"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Files in `dir`'s subdirectories named `snap-*` that are page segments.
fn snapshot_pages(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("snap-"))
        .map(|e| {
            std::fs::read_dir(e.path()).map_or(0, |d| {
                d.flatten()
                    .filter(|f| f.file_name().to_string_lossy().ends_with(".seg"))
                    .count()
            })
        })
        .sum()
}

fn log_index(node: &Node, queue: &str, member: &str) -> Option<u64> {
    support::cluster::ok(node, &["-q", "quorum_status", queue])
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&member))
        .and_then(|cells| cells.get(2)?.parse().ok())
}

#[test]
fn a_member_added_to_a_deep_queue_takes_its_paged_messages_from_a_snapshot() {
    // Each replica keeps 64 kB of messages in memory: nearly all of the queue is paged out.
    let nodes = cluster_with(3, "[store]\nqueue_memory_bytes = 65536\n");
    let names: Vec<String> = nodes.iter().map(|n| n.spec.name.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = lapin_channel(nodes[0].amqp).await;
        let mut args = quorum_args();
        args.insert("x-quorum-initial-group-size".into(), AMQPValue::LongInt(1));
        ch.queue_declare("deep".into(), durable(), args)
            .await
            .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..MESSAGES {
            publish_confirmed(&ch, "deep", &body(i)).await;
        }
    });
    // The only member took a snapshot (so its log was truncated), with the pages in it.
    let leader_dir = groups(&nodes[0]).pop().expect("the group's directory");
    assert!(
        support::within(Duration::from_secs(20), || snapshot_pages(&leader_dir) > 0),
        "no snapshot with pages in {}",
        leader_dir.display()
    );
    let leader_log = log_index(&nodes[0], "deep", &names[0]).expect("the leader's log");

    // A member added now can only catch up from that snapshot.
    support::cluster::ok(&nodes[0], &["add_member", "deep", &names[1]]);
    assert!(support::within(Duration::from_secs(60), || {
        log_index(&nodes[0], "deep", &names[1]).is_some_and(|i| i >= leader_log)
    }));
    let joined = groups(&nodes[1]).pop().expect("the new member's directory");
    assert!(
        snapshot_pages(&joined) > 0,
        "the new member holds the snapshot's pages"
    );
    // The first member goes: the new one holds the queue alone.
    support::cluster::ok(&nodes[2], &["delete_member", "deep", &names[0]]);
    assert!(support::within(Duration::from_secs(20), || groups(
        &nodes[0]
    )
    .is_empty()));

    rt.block_on(async {
        let (_c, ch) = lapin_channel(nodes[2].amqp).await;
        ch.basic_qos(200, BasicQosOptions::default()).await.unwrap();
        let mut consumer = ch
            .basic_consume(
                "deep".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for i in 0..MESSAGES {
            let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                .await
                .unwrap_or_else(|_| panic!("only {i} of {MESSAGES} arrived"))
                .expect("a delivery")
                .expect("not an error");
            assert!(d.data == body(i), "message {i} arrived whole and in order");
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
}
