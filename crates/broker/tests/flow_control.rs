//! Publisher flow control paces publishers while consumers catch up, but never stops them:
//! not when the queue's consumer has stalled, and not when one connection both publishes to
//! and consumes from the same queue (where waiting on the queue would wait on itself).

mod common;

use common::{TestNode, passive_declare};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::Duration;

/// More than a queue holds ready before it counts as congested (`queue::flow::HIGH`).
const MESSAGES: u32 = 25_000;
/// A liveness guard only: the work takes a second or two.
const GUARD: Duration = Duration::from_secs(120);

async fn connect(node: &TestNode) -> Connection {
    Connection::connect(&node.url(), ConnectionProperties::default())
        .await
        .expect("lapin connects")
}

#[tokio::test]
async fn publishers_go_on_while_the_only_consumer_has_stalled() {
    let node = TestNode::start().await;
    let consumer_conn = connect(&node).await;
    let cch = consumer_conn.create_channel().await.unwrap();
    cch.queue_declare(
        "stalled".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    cch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    let mut consumer = cch
        .basic_consume(
            "stalled".into(),
            "never-acks".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let publisher = connect(&node).await;
    let pch = publisher.create_channel().await.unwrap();
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let publish_all = async {
        let mut confirms = Vec::with_capacity(MESSAGES as usize);
        for i in 0..MESSAGES {
            confirms.push(
                pch.basic_publish(
                    "".into(),
                    "stalled".into(),
                    BasicPublishOptions::default(),
                    &i.to_be_bytes(),
                    BasicProperties::default(),
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack(), "every publish is confirmed");
        }
    };
    tokio::time::timeout(GUARD, publish_all)
        .await
        .expect("publishing is not held up by a stalled consumer");

    // The consumer holds its prefetch worth, unacknowledged; everything else waits in the
    // queue.
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("prefetch worth delivered")
            .expect("consumer open")
            .expect("delivery");
    }
    assert_eq!(
        passive_declare(&pch, "stalled")
            .await
            .unwrap()
            .message_count(),
        MESSAGES - 10
    );
    node.shutdown().await;
}

#[tokio::test]
async fn one_connection_publishing_to_and_consuming_from_a_queue_does_not_stall() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let cch = conn.create_channel().await.unwrap();
    cch.queue_declare(
        "loop".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    cch.basic_qos(50, BasicQosOptions::default()).await.unwrap();
    let mut consumer = cch
        .basic_consume(
            "loop".into(),
            "acks-each".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let consume_all = tokio::spawn(async move {
        let mut seen = vec![false; MESSAGES as usize];
        for _ in 0..MESSAGES {
            let d = consumer
                .next()
                .await
                .expect("consumer open")
                .expect("delivery");
            let i = u32::from_be_bytes(d.data[..4].try_into().expect("4-byte body"));
            assert!(
                !std::mem::replace(&mut seen[i as usize], true),
                "no duplicates"
            );
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
        seen.iter().all(|s| *s)
    });

    let pch = conn.create_channel().await.unwrap();
    for i in 0..MESSAGES {
        pch.basic_publish(
            "".into(),
            "loop".into(),
            BasicPublishOptions::default(),
            &i.to_be_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let all = tokio::time::timeout(GUARD, consume_all)
        .await
        .expect("every message arrives on the publishing connection")
        .expect("consumer task");
    assert!(all, "every message arrived once");
    assert_eq!(
        passive_declare(&pch, "loop").await.unwrap().message_count(),
        0
    );
    node.shutdown().await;
}
