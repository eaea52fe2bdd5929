//! Queue, exchange and consumer semantics, driven by lapin: priorities, shared prefetch,
//! auto-delete, conditional deletes, and the refusals RabbitMQ gives.

mod common;

use common::TestNode;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ErrorKind, ExchangeKind};
use std::time::Duration;

async fn channel(node: &TestNode) -> (Connection, Channel) {
    let conn = Connection::connect(&node.url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

fn reply_of(e: lapin::Error) -> (u16, String) {
    match e.kind() {
        ErrorKind::ProtocolError(p) => (p.get_id(), p.get_message().to_string()),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .unwrap();
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn exists(ch: &Channel, q: &str) -> bool {
    match ch
        .queue_declare(q.into(), passive(), FieldTable::default())
        .await
    {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(reply_of(e).0, 404);
            false
        }
    }
}

async fn next_body(c: &mut lapin::Consumer) -> Vec<u8> {
    let d = tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .expect("delivery within 5 s")
        .unwrap()
        .unwrap();
    d.ack(BasicAckOptions::default()).await.unwrap();
    d.data
}

#[tokio::test]
async fn higher_priority_consumer_gets_messages_first() {
    let node = TestNode::start().await;
    let (conn, ch) = channel(&node).await;
    ch.queue_declare(
        "prio".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let low_ch = conn.create_channel().await.unwrap();
    let high_ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-priority".into(), AMQPValue::LongInt(10));
    let mut low = low_ch
        .basic_consume(
            "prio".into(),
            "low".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut high = high_ch
        .basic_consume(
            "prio".into(),
            "high".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .unwrap();
    for i in 0..10u8 {
        publish(&ch, "", "prio", &[i]).await;
    }
    for i in 0..10u8 {
        assert_eq!(next_body(&mut high).await, vec![i]);
    }
    let idle = tokio::time::timeout(Duration::from_millis(200), low.next()).await;
    assert!(
        idle.is_err(),
        "the low-priority consumer got a message while the high one had credit"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn global_prefetch_is_shared_by_the_channel_consumers() {
    let node = TestNode::start().await;
    let (_conn, ch) = channel(&node).await;
    for q in ["g1", "g2"] {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        for i in 0..3u8 {
            publish(&ch, "", q, &[i]).await;
        }
    }
    ch.basic_qos(2, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut c1 = ch
        .basic_consume(
            "g1".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut c2 = ch
        .basic_consume(
            "g2".into(),
            "c2".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        tokio::select! {
            Some(Ok(d)) = c1.next() => held.push(d),
            Some(Ok(d)) = c2.next() => held.push(d),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    assert_eq!(
        held.len(),
        2,
        "channel-wide prefetch of 2 across two queues"
    );
    for d in held {
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let more = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            Some(Ok(d)) = c1.next() => d,
            Some(Ok(d)) = c2.next() => d,
        }
    })
    .await;
    assert!(more.is_ok(), "acks released credit for more deliveries");
    node.shutdown().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_with_its_last_consumer() {
    let node = TestNode::start().await;
    let (conn, ch) = channel(&node).await;
    ch.queue_declare(
        "fleeting".into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert!(exists(&ch, "fleeting").await, "no consumer yet: it stays");
    // lapin cancels a consumer when its handle is dropped, so both are kept.
    let _a = ch
        .basic_consume(
            "fleeting".into(),
            "a".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _b = ch
        .basic_consume(
            "fleeting".into(),
            "b".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_cancel("a".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    assert!(exists(&ch, "fleeting").await, "one consumer left");
    ch.basic_cancel("b".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    assert!(
        !exists(&ch2, "fleeting").await,
        "deleted with its last consumer"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_with_its_last_binding() {
    let node = TestNode::start().await;
    let (conn, ch) = channel(&node).await;
    ch.exchange_declare(
        "passing".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "bound".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "bound".into(),
        "passing".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_unbind(
        "bound".into(),
        "passing".into(),
        "".into(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(
            "passing".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (404, "NOT_FOUND - no exchange 'passing' in vhost '/'".into())
    );
    drop(conn);
    node.shutdown().await;
}

#[tokio::test]
async fn conditional_deletes_refuse_busy_or_full_queues() {
    let node = TestNode::start().await;
    let (conn, ch) = channel(&node).await;
    ch.queue_declare(
        "busy".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "", "busy", b"1").await;
    publish(&ch, "", "busy", b"2").await;
    let err = ch
        .queue_delete(
            "busy".into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (
            406,
            "PRECONDITION_FAILED - queue 'busy' in vhost '/' not empty".into()
        )
    );

    let ch = conn.create_channel().await.unwrap();
    let _consumer = ch
        .basic_consume(
            "busy".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let other = conn.create_channel().await.unwrap();
    let err = other
        .queue_delete(
            "busy".into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (
            406,
            "PRECONDITION_FAILED - queue 'busy' in vhost '/' in use".into()
        )
    );

    let other = conn.create_channel().await.unwrap();
    other
        .queue_declare(
            "full".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        publish(&other, "", "full", b"x").await;
    }
    let purged = other
        .queue_purge("full".into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    assert_eq!(purged, 3);
    publish(&other, "", "full", b"y").await;
    let deleted = other
        .queue_delete("full".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    // Deleting what does not exist is not an error.
    assert_eq!(
        other
            .queue_delete("full".into(), QueueDeleteOptions::default())
            .await
            .unwrap(),
        0
    );

    other
        .exchange_declare(
            "used".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    other
        .queue_declare(
            "q".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    other
        .queue_bind(
            "q".into(),
            "used".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let err = other
        .exchange_delete(
            "used".into(),
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (
            406,
            "PRECONDITION_FAILED - exchange 'used' in vhost '/' in use".into()
        )
    );
    node.shutdown().await;
}

#[tokio::test]
async fn exchange_refusals_match_rabbitmq() {
    let node = TestNode::start().await;
    let (conn, ch) = channel(&node).await;
    ch.exchange_declare(
        "typed".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(
            "typed".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'typed' in vhost '/': received 'fanout' but current is 'direct'".into())
    );

    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .queue_bind(
            "q".into(),
            "".into(),
            "q".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange".into()
        )
    );

    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        reply_of(err),
        (
            403,
            "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"
                .into()
        )
    );

    // Publishing to a missing or internal exchange is checked by the pika suite and the
    // wire probe: lapin reports a channel closed by a publish only as "closing".
    node.shutdown().await;
}

#[tokio::test]
async fn closing_a_channel_requeues_its_unacked_messages_in_order() {
    let node = TestNode::start().await;
    let (conn, ch) = channel(&node).await;
    ch.queue_declare(
        "held".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..5u8 {
        publish(&ch, "", "held", &[i]).await;
    }
    let consumer_ch = conn.create_channel().await.unwrap();
    let mut c = consumer_ch
        .basic_consume(
            "held".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .unwrap();
    }
    consumer_ch.close(200, "done".into()).await.unwrap();
    let mut bodies = Vec::new();
    while let Some(m) = ch
        .basic_get("held".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        assert!(m.delivery.redelivered);
        bodies.push(m.delivery.data[0]);
    }
    assert_eq!(bodies, vec![0, 1, 2, 3, 4]);
    node.shutdown().await;
}
