//! A quorum queue's dead letters at least once (`x-dead-letter-strategy: at-least-once`): a
//! message rejected while its dead-letter exchange routes nowhere is held, not lost; it
//! outlives the death of the queue's leader, and reaches the queue bound later. At most
//! once, the same message is gone. Held dead letters count against the queue's length limit
//! until their targets confirm them.

mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use std::collections::BTreeSet;
use std::time::Duration;
use support::cluster::{cluster, durable, passive};
use support::{Node, lapin_channel, publish_confirmed};

fn quorum(strategy: &str, max_length: Option<i32>) -> FieldTable {
    let mut t = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(s.into());
    t.insert("x-queue-type".into(), text("quorum"));
    t.insert("x-dead-letter-exchange".into(), text("dead-letters"));
    t.insert("x-dead-letter-strategy".into(), text(strategy));
    t.insert("x-overflow".into(), text("reject-publish"));
    if let Some(n) = max_length {
        t.insert("x-max-length".into(), AMQPValue::LongInt(n));
    }
    t
}

/// Whether a persistent publish to `queue` on confirm channel `ch` is acknowledged.
async fn acked(ch: &lapin::Channel, queue: &str, body: &[u8]) -> bool {
    let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        persistent,
    )
    .await
    .unwrap()
    .await
    .unwrap()
    .is_ack()
}

/// Takes every message of `queue` through `node` with basic.get and rejects it without
/// requeue; returns how many.
async fn reject_all(node: &Node, queue: &str) -> usize {
    let (_c, ch) = lapin_channel(node.amqp).await;
    let mut n = 0;
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        ch.basic_reject(
            m.delivery.delivery_tag,
            BasicRejectOptions { requeue: false },
        )
        .await
        .unwrap();
        n += 1;
    }
    n
}

async fn count(node: &Node, queue: &str) -> u32 {
    let (_c, ch) = lapin_channel(node.amqp).await;
    ch.queue_declare(queue.into(), passive(), FieldTable::default())
        .await
        .map(|q| q.message_count())
        .unwrap_or(0)
}

#[test]
fn dead_letters_held_at_least_once_outlive_the_leader_and_reach_a_later_route() {
    let mut nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = lapin_channel(nodes[0].amqp).await;
        ch.exchange_declare(
            "dead-letters".into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        // Declared through the first node: its member leads them (client-local).
        for (name, strategy) in [("kept", "at-least-once"), ("lost", "at-most-once")] {
            ch.queue_declare(name.into(), durable(), quorum(strategy, Some(5)))
                .await
                .unwrap();
        }
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..5 {
            publish_confirmed(&ch, "kept", format!("k{i}").as_bytes()).await;
            publish_confirmed(&ch, "lost", format!("l{i}").as_bytes()).await;
        }
        // The exchange routes nowhere yet.
        assert_eq!(reject_all(&nodes[1], "kept").await, 5);
        assert_eq!(reject_all(&nodes[1], "lost").await, 5);
        assert_eq!(count(&nodes[1], "kept").await, 0);
        // Five held count against the limit of five: one more is taken (RabbitMQ checks
        // after taking), the next refused.
        assert!(acked(&ch, "kept", b"over").await);
        assert!(
            !acked(&ch, "kept", b"refused").await,
            "held dead letters count"
        );
        assert!(
            acked(&ch, "lost", b"room").await,
            "nothing held at most once"
        );
    });
    assert!(nodes[0].logged("leads quorum queue"));
    let _leader = nodes.remove(0).kill();
    rt.block_on(async {
        let mut dead = None;
        // The metadata lost its leader with the first node too: until it has another, the
        // declaration may time out (and the channel with it).
        for _ in 0..40 {
            let (_c, ch) = lapin_channel(nodes[0].amqp).await;
            let declared = ch
                .queue_declare("dead".into(), durable(), FieldTable::default())
                .await;
            if declared.is_ok() {
                let bound = ch
                    .queue_bind(
                        "dead".into(),
                        "dead-letters".into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await;
                if bound.is_ok() {
                    dead = Some(());
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(
            dead.is_some(),
            "the dead-letter queue was declared and bound"
        );
        let (_c, ch) = lapin_channel(nodes[1].amqp).await;
        let mut consumer = ch
            .basic_consume(
                "dead".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut got = BTreeSet::new();
        let mut order = Vec::new();
        let mut copies = 0;
        while got.len() < 5 {
            let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                .await
                .unwrap_or_else(|_| panic!("only {got:?} arrived"))
                .expect("a delivery")
                .expect("not an error");
            let body = String::from_utf8_lossy(&d.data).into_owned();
            if got.insert(body.clone()) {
                order.push(body);
            }
            copies += 1;
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        let expected: BTreeSet<String> = (0..5).map(|i| format!("k{i}")).collect();
        assert_eq!(
            got, expected,
            "every held dead letter, none of the lost ones"
        );
        assert_eq!(
            order,
            ["k0", "k1", "k2", "k3", "k4"],
            "in the order they were dropped"
        );
        // Nothing else comes: the at-most-once ones were dropped when they had no route.
        let more = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await;
        assert!(more.is_err(), "{more:?}");
        println!("{copies} copies of 5 dead letters");
        // Confirmed by the dead-letter queue, they are let go: publishes are taken again.
        let (_p, publisher) = lapin_channel(nodes[1].amqp).await;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut taken = false;
        for _ in 0..50 {
            if acked(&publisher, "kept", b"again").await {
                taken = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            taken,
            "publishes taken again once the dead letters were confirmed"
        );
    });
}
