//! Resource alarms with a real client (lapin, which asks for connection.blocked notices):
//! publishers are blocked and not read, consumers keep draining, and everything resumes with
//! connection.unblocked. A full disk (a small tmpfs made for the test) refuses publishes
//! without harming what was confirmed before.

mod common;

use common::{TestNode, lapin_channel, passive_declare, temp_data_dir};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use std::process::Command;
use std::time::Duration;

/// Waits until the broker's blocked/unblocked notice has reached the client.
async fn blocked_becomes(conn: &Connection, want: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while conn.status().blocked() != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never became blocked={want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn publish(ch: &Channel, q: &str, body: &[u8]) {
    ch.basic_publish(
        "".into(),
        q.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .unwrap();
}

async fn blocked_publishers_resume_when_the_alarm_clears(
    raise: impl Fn(&TestNode),
    clear: impl Fn(&TestNode),
) {
    let node = TestNode::start().await;
    let (pconn, publisher) = lapin_channel(&node).await;
    let (_oconn, observer) = lapin_channel(&node).await;
    for q in ["held", "backlog"] {
        observer
            .queue_declare(
                q.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    publish(&publisher, "held", b"before").await;
    publish(&publisher, "backlog", b"1").await;
    publish(&publisher, "backlog", b"2").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while passive_declare(&observer, "backlog")
        .await
        .unwrap()
        .message_count()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    raise(&node);
    blocked_becomes(&pconn, true).await;
    // lapin itself holds publishes back while blocked; the publish is started anyway.
    let pending = {
        let publisher = publisher.clone();
        tokio::spawn(async move { publish(&publisher, "held", b"during").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        passive_declare(&observer, "held")
            .await
            .unwrap()
            .message_count(),
        1,
        "a blocked publisher is not read"
    );
    // Consumers keep draining while publishers wait.
    for _ in 0..2 {
        let m = observer
            .basic_get("backlog".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        assert!(m.is_some());
    }

    clear(&node);
    blocked_becomes(&pconn, false).await;
    pending.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while passive_declare(&observer, "held")
        .await
        .unwrap()
        .message_count()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the held publish never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await;
}

#[tokio::test]
async fn memory_alarm_blocks_publishers() {
    blocked_publishers_resume_when_the_alarm_clears(
        |n| n.broker.alarms.set_memory_limit(1),
        |n| n.broker.alarms.set_memory_limit(u64::MAX),
    )
    .await;
}

#[tokio::test]
async fn disk_alarm_blocks_publishers() {
    blocked_publishers_resume_when_the_alarm_clears(
        |n| n.broker.alarms.set_disk_limit(u64::MAX),
        |n| n.broker.alarms.set_disk_limit(0),
    )
    .await;
}

#[tokio::test]
async fn the_reason_names_the_resource() {
    use warren_broker::alarms::AlarmState;
    assert_eq!(
        AlarmState {
            memory: true,
            disk: false
        }
        .reason(),
        "low on memory"
    );
    assert_eq!(
        AlarmState {
            memory: false,
            disk: true
        }
        .reason(),
        "low on disk"
    );
    assert_eq!(
        AlarmState {
            memory: true,
            disk: true
        }
        .reason(),
        "low on memory & disk"
    );
}

/// A small tmpfs of our own, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = temp_data_dir().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs (the test needs root)");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: the node may still hold files open as the test ends.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_full_disk_refuses_publishes_and_keeps_what_was_confirmed() {
    let disk = SmallDisk::mount("3m");
    let dir = disk.0.join("node");
    let mut confirmed = Vec::new();
    {
        // No disk alarm: let the disk really fill up.
        let node = TestNode::start_with(|c| {
            c.node.data_dir = dir.clone();
            c.alarms.disk_free_limit_bytes = 0;
        })
        .await;
        let (_conn, ch) = lapin_channel(&node).await;
        ch.queue_declare(
            "filling".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut nacked = 0;
        for i in 0..2000u32 {
            let mut body = vec![(i % 256) as u8; 4000];
            body[..4].copy_from_slice(&i.to_be_bytes());
            let c = ch
                .basic_publish(
                    "".into(),
                    "filling".into(),
                    BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            if c.is_ack() {
                confirmed.push(i);
            } else {
                nacked += 1;
                if nacked > 20 {
                    break;
                }
            }
        }
        assert!(nacked > 0, "the disk never filled up");
        assert!(!confirmed.is_empty());
        node.shutdown().await;
    }
    // Make room, as an operator would, and restart: everything confirmed is there, intact.
    let node = TestNode::start_with(|c| {
        c.node.data_dir = dir.clone();
        c.alarms.disk_free_limit_bytes = 0;
    })
    .await;
    let conn = lapin::Connection::connect(&node.url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(
            "filling".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let i = u32::from_be_bytes(m.delivery.data[..4].try_into().unwrap());
        let mut want = vec![(i % 256) as u8; 4000];
        want[..4].copy_from_slice(&i.to_be_bytes());
        assert_eq!(m.delivery.data, want, "message {i} intact");
        got.push(i);
    }
    for i in &confirmed {
        assert!(got.contains(i), "confirmed message {i} lost");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn the_disk_alarm_blocks_before_the_disk_is_full() {
    let disk = SmallDisk::mount("4m");
    let node = TestNode::start_with(|c| {
        c.node.data_dir = disk.0.join("node");
        c.alarms.disk_free_limit_bytes = 50_000_000;
        c.alarms.check_interval_ms = 50;
    })
    .await;
    let (conn, ch) = lapin_channel(&node).await;
    ch.queue_declare(
        "q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "q", b"x").await;
    blocked_becomes(&conn, true).await;
    node.shutdown().await;
}
