//! The node driven by lapin, a Rust AMQP client we did not write.

mod common;

use common::TestNode;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ErrorKind};
use std::time::Duration;

async fn connect(node: &TestNode) -> Connection {
    Connection::connect(&node.url(), ConnectionProperties::default())
        .await
        .expect("lapin connects")
}

fn reply_of(e: lapin::Error) -> (u16, String) {
    match e.kind() {
        ErrorKind::ProtocolError(p) => (p.get_id(), p.get_message().to_string()),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

async fn declare(ch: &Channel, name: &str) -> String {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare")
    .name()
    .to_string()
}

async fn next(consumer: &mut lapin::Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a delivery within 5 s")
        .expect("consumer still open")
        .expect("delivery ok")
}

#[tokio::test]
async fn roundtrip_keeps_body_and_properties() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.create_channel().await.unwrap();
    let q = declare(&ch, "").await;
    assert!(q.starts_with("amq.gen-"), "server-named queue, got {q}");

    let mut headers = FieldTable::default();
    headers.insert("n".into(), AMQPValue::LongLongInt(-7));
    headers.insert("s".into(), AMQPValue::LongString("v".into()));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id("c-1".into())
        .with_message_id("m-1".into())
        .with_delivery_mode(2)
        .with_priority(3)
        .with_timestamp(1_700_000_000)
        .with_app_id("tests".into())
        .with_headers(headers);
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        &body,
        props.clone(),
    )
    .await
    .unwrap();

    let mut consumer = ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert!(consumer.tag().as_str().starts_with("amq.ctag-"));
    let d = next(&mut consumer).await;
    assert_eq!(
        d.data, body,
        "body spanning several frames arrives byte-exact"
    );
    assert_eq!(d.properties, props);
    assert_eq!(d.routing_key.as_str(), q);
    assert!(!d.redelivered);
    d.ack(BasicAckOptions::default()).await.unwrap();
    node.shutdown().await;
}

#[tokio::test]
async fn every_publish_is_confirmed() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.create_channel().await.unwrap();
    let q = declare(&ch, "confirmed").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut confirms = Vec::new();
    for i in 0..500u32 {
        let c = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        confirms.push(c);
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }
    let count = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    assert_eq!(count, 500);
    node.shutdown().await;
}

#[tokio::test]
async fn unroutable_mandatory_message_is_returned() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "amq.direct".into(),
            "nobody-listens".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost?",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let returned = confirm.take_message().expect("basic.return before the ack");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.data, b"lost?");
    node.shutdown().await;
}

#[tokio::test]
async fn prefetch_holds_back_deliveries_until_acked() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.create_channel().await.unwrap();
    let q = declare(&ch, "prefetch").await;
    for i in 0..5u8 {
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            &[i],
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            q.as_str().into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let a = next(&mut consumer).await;
    let b = next(&mut consumer).await;
    assert_eq!((a.data[0], b.data[0]), (0, 1));
    let third = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(third.is_err(), "a third delivery arrived beyond prefetch 2");
    a.ack(BasicAckOptions::default()).await.unwrap();
    assert_eq!(next(&mut consumer).await.data[0], 2);
    node.shutdown().await;
}

#[tokio::test]
async fn nack_with_requeue_redelivers() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.create_channel().await.unwrap();
    let q = declare(&ch, "requeue").await;
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"again",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.as_str().into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let first = next(&mut consumer).await;
    assert!(!first.redelivered);
    first
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let second = next(&mut consumer).await;
    assert!(second.redelivered);
    assert_eq!(second.data, b"again");
    node.shutdown().await;
}

#[tokio::test]
async fn channel_errors_close_only_the_channel() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .queue_declare(
            "missing".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (404, "NOT_FOUND - no queue 'missing' in vhost '/'".into())
    );

    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            "amq.custom".into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (
            403,
            "ACCESS_REFUSED - exchange name 'amq.custom' contains reserved prefix 'amq.*'".into()
        )
    );

    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "durable-q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .queue_declare(
            "durable-q".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (
            406,
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'durable-q' in vhost '/': received 'true' but current is 'false'"
                .into()
        )
    );

    // The connection survived all three.
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "still-works").await;
    node.shutdown().await;
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection_and_goes_with_it() {
    let node = TestNode::start().await;
    let owner = connect(&node).await;
    let ch = owner.create_channel().await.unwrap();
    ch.queue_declare(
        "mine".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();

    let other = connect(&node).await;
    let ch2 = other.create_channel().await.unwrap();
    let err = ch2
        .basic_consume(
            "mine".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    let (code, text) = reply_of(err);
    assert_eq!(code, 405);
    assert!(text.starts_with(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'mine' in vhost '/'"
    ));

    owner.close(200, "bye".into()).await.unwrap();
    let ch3 = other.create_channel().await.unwrap();
    let err = ch3
        .queue_declare(
            "mine".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err).0,
        404,
        "exclusive queue removed with its connection"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn rolled_back_publishes_are_never_delivered() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.create_channel().await.unwrap();
    let q = declare(&ch, "tx").await;
    ch.tx_select().await.unwrap();
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"no",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    ch.tx_rollback().await.unwrap();
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"yes",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let before = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    assert!(before.is_none(), "uncommitted publish visible");
    ch.tx_commit().await.unwrap();
    let got = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("committed message");
    assert_eq!(got.delivery.data, b"yes");
    assert_eq!(got.message_count, 0);
    node.shutdown().await;
}

#[tokio::test]
async fn topic_routing_follows_rabbitmq_rules() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.create_channel().await.unwrap();
    let q: ShortString = declare(&ch, "").await.as_str().into();
    for key in ["a.*.c", "x.#"] {
        ch.queue_bind(
            q.clone(),
            "amq.topic".into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    for key in ["a.b.c", "a.c", "x", "x.y.z", "a.b.c.d"] {
        ch.basic_publish(
            "amq.topic".into(),
            key.into(),
            BasicPublishOptions::default(),
            key.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(q.clone(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        got.push(String::from_utf8(m.delivery.data.clone()).unwrap());
        if m.message_count == 0 {
            break;
        }
    }
    assert_eq!(got, vec!["a.b.c", "x", "x.y.z"]);
    node.shutdown().await;
}
