//! Messages on disk: persistent messages in durable queues survive a restart in order with
//! their properties and redelivery state; transient ones do not; long queues keep their bodies
//! on disk and give them back intact.

mod common;

use common::{TestNode, lapin_channel, temp_data_dir};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::time::Duration;

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn persistent(i: u32) -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert("i".into(), AMQPValue::LongUInt(i));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(format!("m{i}").into())
        .with_headers(h)
}

/// Publishes `n` persistent messages to `q` and waits for each confirm.
async fn publish_confirmed(ch: &Channel, q: &str, n: u32) {
    for i in 0..n {
        ch.basic_publish(
            "".into(),
            q.into(),
            BasicPublishOptions::default(),
            b"body",
            persistent(i),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

async fn get_all(ch: &Channel, q: &str) -> Vec<(Vec<u8>, BasicProperties, bool)> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(q.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push((
            m.delivery.data.clone(),
            m.delivery.properties.clone(),
            m.delivery.redelivered,
        ));
    }
    out
}

#[tokio::test]
async fn persistent_messages_survive_a_restart_in_order() {
    let dir = temp_data_dir();
    {
        let node = TestNode::start_in(&dir).await;
        let (_c, ch) = lapin_channel(&node).await;
        ch.queue_declare("orders".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        ch.queue_declare(
            "scratch".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..300u32 {
            let (q, props) = match i % 3 {
                0 => ("orders", persistent(i)),
                1 => ("orders", BasicProperties::default().with_delivery_mode(1)),
                _ => ("scratch", persistent(i)),
            };
            let body = format!("message {i} ").repeat(1 + (i as usize % 40));
            ch.basic_publish(
                "".into(),
                q.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        node.shutdown().await;
    }
    let node = TestNode::start_in(&dir).await;
    let (_c, ch) = lapin_channel(&node).await;
    let back = get_all(&ch, "orders").await;
    let want: Vec<u32> = (0..300).filter(|i| i % 3 == 0).collect();
    assert_eq!(
        back.len(),
        want.len(),
        "only the persistent messages came back"
    );
    for ((body, props, redelivered), i) in back.iter().zip(want) {
        assert_eq!(
            body,
            format!("message {i} ")
                .repeat(1 + (i as usize % 40))
                .as_bytes()
        );
        assert_eq!(props, &persistent(i));
        assert!(!redelivered, "never delivered before the restart");
    }
    let err = ch
        .queue_declare(
            "scratch".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(err.is_err(), "the non-durable queue is gone");
    node.shutdown().await;
}

#[tokio::test]
async fn delivered_but_unacknowledged_messages_come_back_redelivered() {
    let dir = temp_data_dir();
    {
        let node = TestNode::start_in(&dir).await;
        let (_c, ch) = lapin_channel(&node).await;
        ch.queue_declare("work".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..6u32 {
            ch.basic_publish(
                "".into(),
                "work".into(),
                BasicPublishOptions::default(),
                &[i as u8],
                persistent(i),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        // Take two and acknowledge only the first; the node then stops with the second
        // delivered but not acknowledged.
        let first = ch
            .basic_get("work".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .unwrap();
        first
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        let _second = ch
            .basic_get("work".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .unwrap();
        ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
        // A round trip, so the ack is in before the shutdown.
        ch.queue_declare(
            "work".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        node.shutdown().await;
    }
    let node = TestNode::start_in(&dir).await;
    let (_c, ch) = lapin_channel(&node).await;
    let back = get_all(&ch, "work").await;
    let got: Vec<(u8, bool)> = back.iter().map(|(b, _, r)| (b[0], *r)).collect();
    assert_eq!(
        got,
        vec![(1, true), (2, false), (3, false), (4, false), (5, false)]
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_long_queue_keeps_bodies_on_disk_and_returns_them_intact() {
    let node = TestNode::start_with(|c| {
        c.store.queue_memory_bytes = 64 * 1024;
        c.store.segment_bytes = 256 * 1024;
    })
    .await;
    let (conn, ch) = lapin_channel(&node).await;
    ch.queue_declare(
        "backlog".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let n = 5000u32;
    for i in 0..n {
        let mut body = vec![(i % 251) as u8; 1000];
        body[..4].copy_from_slice(&i.to_be_bytes());
        ch.basic_publish(
            "".into(),
            "backlog".into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    let files = std::fs::read_dir(node.data_dir.join("transient"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(files > 0, "the queue paged messages out to disk");
    let consumer = conn.create_channel().await.unwrap();
    consumer
        .basic_qos(200, BasicQosOptions::default())
        .await
        .unwrap();
    let mut c = consumer
        .basic_consume(
            "backlog".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut want = vec![(i % 251) as u8; 1000];
        want[..4].copy_from_slice(&i.to_be_bytes());
        assert_eq!(d.data, want, "message {i}");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    node.shutdown().await;
}

#[tokio::test]
async fn a_transaction_commits_persistent_messages_to_disk() {
    let dir = temp_data_dir();
    {
        let node = TestNode::start_in(&dir).await;
        let (_c, ch) = lapin_channel(&node).await;
        ch.queue_declare("ledger".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        ch.tx_select().await.unwrap();
        for i in 0..10u32 {
            ch.basic_publish(
                "".into(),
                "ledger".into(),
                BasicPublishOptions::default(),
                &[i as u8],
                persistent(i),
            )
            .await
            .unwrap();
        }
        ch.tx_commit().await.unwrap();
        node.shutdown().await;
    }
    let node = TestNode::start_in(&dir).await;
    let (_c, ch) = lapin_channel(&node).await;
    let back: Vec<u8> = get_all(&ch, "ledger")
        .await
        .iter()
        .map(|(b, _, _)| b[0])
        .collect();
    assert_eq!(back, (0..10).collect::<Vec<u8>>());
    node.shutdown().await;
}

#[tokio::test]
async fn purged_and_acknowledged_messages_stay_gone_after_a_restart() {
    let dir = temp_data_dir();
    {
        let node = TestNode::start_in(&dir).await;
        let (_c, ch) = lapin_channel(&node).await;
        for q in ["purged", "acked"] {
            ch.queue_declare(q.into(), durable(), FieldTable::default())
                .await
                .unwrap();
        }
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..20u32 {
            for q in ["purged", "acked"] {
                ch.basic_publish(
                    "".into(),
                    q.into(),
                    BasicPublishOptions::default(),
                    &[i as u8],
                    persistent(i),
                )
                .await
                .unwrap();
            }
        }
        ch.wait_for_confirms().await.unwrap();
        assert_eq!(
            ch.queue_purge("purged".into(), QueuePurgeOptions::default())
                .await
                .unwrap(),
            20
        );
        for _ in 0..20 {
            let m = ch
                .basic_get("acked".into(), BasicGetOptions::default())
                .await
                .unwrap()
                .unwrap();
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        ch.queue_declare(
            "acked".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        node.shutdown().await;
    }
    let node = TestNode::start_in(&dir).await;
    let (_c, ch) = lapin_channel(&node).await;
    assert!(get_all(&ch, "purged").await.is_empty());
    assert!(get_all(&ch, "acked").await.is_empty());
    node.shutdown().await;
}

#[tokio::test]
async fn a_priority_queue_keeps_its_order_across_a_restart() {
    let dir = temp_data_dir();
    let mut args = FieldTable::default();
    args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(5));
    {
        let node = TestNode::start_in(&dir).await;
        let (_c, ch) = lapin_channel(&node).await;
        ch.queue_declare("ranked".into(), durable(), args.clone())
            .await
            .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for (body, prio) in [
            (b"low", 1u8),
            (b"top", 5),
            (b"mid", 3),
            (b"tip", 5),
            (b"bot", 0),
        ] {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_priority(prio);
            ch.basic_publish(
                "".into(),
                "ranked".into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        node.shutdown().await;
    }
    let node = TestNode::start_in(&dir).await;
    let (_c, ch) = lapin_channel(&node).await;
    let back: Vec<Vec<u8>> = get_all(&ch, "ranked")
        .await
        .into_iter()
        .map(|(b, _, _)| b)
        .collect();
    assert_eq!(
        back,
        vec![
            b"top".to_vec(),
            b"tip".to_vec(),
            b"mid".to_vec(),
            b"low".to_vec(),
            b"bot".to_vec()
        ]
    );
    node.shutdown().await;
}

/// Stopping a node and deleting a queue are different ends: the node's shutdown stops every
/// queue and keeps each durable queue's log on disk, while a deleted queue's log goes.
#[tokio::test]
async fn a_shutdown_keeps_every_durable_queues_log_and_a_delete_removes_it() {
    let dir = temp_data_dir();
    let logs = |dir: &std::path::Path| -> usize {
        std::fs::read_dir(dir.join("queues"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    {
        let node = TestNode::start_in(&dir).await;
        let (_c, ch) = lapin_channel(&node).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for q in ["kept-1", "kept-2", "deleted"] {
            ch.queue_declare(q.into(), durable(), FieldTable::default())
                .await
                .unwrap();
            publish_confirmed(&ch, q, 10).await;
        }
        assert_eq!(logs(&dir), 3, "one log per durable queue");
        ch.queue_delete("deleted".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        assert_eq!(logs(&dir), 2, "the deleted queue's log is gone");
        node.shutdown_and_wait().await;
    }
    assert_eq!(logs(&dir), 2, "the shutdown kept both logs");
    let node = TestNode::start_in(&dir).await;
    let (_c, ch) = lapin_channel(&node).await;
    for q in ["kept-1", "kept-2"] {
        assert_eq!(get_all(&ch, q).await.len(), 10, "{q} came back whole");
    }
    node.shutdown().await;
}

/// A data directory from before queue logs were named by id: the log sits under a hash of
/// the vhost and queue names, and is found and moved at the next start.
#[tokio::test]
async fn a_log_in_the_old_place_is_found_and_moved() {
    use sha2::{Digest, Sha256};
    let dir = temp_data_dir();
    {
        let node = TestNode::start_in(&dir).await;
        let (_c, ch) = lapin_channel(&node).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        ch.queue_declare("old".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        publish_confirmed(&ch, "old", 5).await;
        node.shutdown_and_wait().await;
    }
    let queues = dir.join("queues");
    let by_id: Vec<_> = std::fs::read_dir(&queues)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(by_id.len(), 1);
    let mut h = Sha256::new();
    h.update(b"/");
    h.update([0]);
    h.update(b"old");
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::rename(&by_id[0], queues.join(&hex)).unwrap();

    let node = TestNode::start_in(&dir).await;
    let (_c, ch) = lapin_channel(&node).await;
    assert_eq!(get_all(&ch, "old").await.len(), 5, "the messages came back");
    assert!(!queues.join(&hex).exists(), "moved out of the old place");
    node.shutdown().await;
}
