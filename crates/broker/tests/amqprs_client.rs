//! The node driven by amqprs, a second Rust AMQP client we did not write.

mod common;

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::*;
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use async_trait::async_trait;
use common::TestNode;
use std::time::Duration;
use tokio::sync::mpsc;

async fn connect(node: &TestNode) -> Connection {
    let args = OpenConnectionArguments::new(
        &node.addr.ip().to_string(),
        node.addr.port(),
        "guest",
        "guest",
    );
    Connection::open(&args).await.expect("amqprs connects")
}

async fn publish(ch: &Channel, exchange: &str, key: &str, props: BasicProperties, body: &[u8]) {
    ch.basic_publish(
        props,
        body.to_vec(),
        BasicPublishArguments::new(exchange, key),
    )
    .await
    .unwrap();
}

async fn get_body(ch: &Channel, q: &str) -> Option<Vec<u8>> {
    let mut args = BasicGetArguments::new(q);
    args.no_ack(true);
    ch.basic_get(args).await.unwrap().map(|(_, _, body)| body)
}

fn table(pairs: &[(&str, FieldValue)]) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in pairs {
        t.insert((*k).try_into().unwrap(), v.clone());
    }
    t
}

/// Reports server-initiated channel events to the test.
struct Events(mpsc::UnboundedSender<String>);

#[async_trait]
impl ChannelCallback for Events {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        let _ = self.0.send(format!(
            "close {} {}",
            close.reply_code(),
            close.reply_text()
        ));
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, cancel: Cancel) -> Result<(), amqprs::error::Error> {
        let _ = self.0.send(format!("cancel {}", cancel.consumer_tag()));
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, _: Ack) {}
    async fn publish_nack(&mut self, _: &Channel, _: Nack) {}
    async fn publish_return(&mut self, _: &Channel, ret: Return, _: BasicProperties, _: Vec<u8>) {
        let _ = self.0.send(format!("return {}", ret.reply_code()));
    }
}

#[tokio::test]
async fn get_reports_counts_and_empty() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.open_channel(None).await.unwrap();
    let (q, _, _) = ch
        .queue_declare(QueueDeclareArguments::new("counted"))
        .await
        .unwrap()
        .unwrap();
    for i in 0..3u8 {
        publish(&ch, "", &q, BasicProperties::default(), &[i]).await;
    }
    let (ok, _, body) = ch
        .basic_get(BasicGetArguments::new(&q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, vec![0]);
    assert_eq!(ok.message_count(), 2);
    assert!(!ok.redelivered());
    assert_eq!(get_body(&ch, &q).await, Some(vec![1]));
    assert_eq!(get_body(&ch, &q).await, Some(vec![2]));
    assert_eq!(get_body(&ch, &q).await, None);
    // The unacknowledged first message goes back (redelivered) when the channel recovers.
    ch.basic_recover(true).await.unwrap();
    let (ok, _, body) = ch
        .basic_get(BasicGetArguments::new(&q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, vec![0]);
    assert!(ok.redelivered());
    node.shutdown().await;
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.open_channel(None).await.unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    ch.register_callback(Events(tx)).await.unwrap();
    let (q, _, _) = ch
        .queue_declare(QueueDeclareArguments::new("doomed"))
        .await
        .unwrap()
        .unwrap();
    let (tag, _rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new(&q, "watcher"))
        .await
        .unwrap();
    assert_eq!(tag, "watcher");
    let other = conn.open_channel(None).await.unwrap();
    other
        .queue_delete(QueueDeleteArguments::new(&q))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event, "cancel watcher");
    node.shutdown().await;
}

#[tokio::test]
async fn direct_reply_to_roundtrip() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let client = conn.open_channel(None).await.unwrap();
    let server = conn.open_channel(None).await.unwrap();
    let (requests, _, _) = server
        .queue_declare(QueueDeclareArguments::new("rpc"))
        .await
        .unwrap()
        .unwrap();

    let mut args = BasicConsumeArguments::new("amq.rabbitmq.reply-to", "");
    args.manual_ack(false);
    let (_, mut replies) = client.basic_consume_rx(args).await.unwrap();
    let mut props = BasicProperties::default();
    props
        .with_reply_to("amq.rabbitmq.reply-to")
        .with_correlation_id("42");
    publish(&client, "", &requests, props.finish(), b"ping").await;

    let (_, request, body) = server
        .basic_get(BasicGetArguments::new(&requests))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, b"ping");
    let reply_to = request.reply_to().unwrap().clone();
    assert!(
        reply_to.starts_with("amq.rabbitmq.reply-to."),
        "reply_to rewritten to the caller's address, got {reply_to}"
    );
    let mut props = BasicProperties::default();
    props.with_correlation_id("42");
    publish(&server, "", &reply_to, props.finish(), b"pong").await;

    let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.content.unwrap(), b"pong");
    assert_eq!(
        reply.basic_properties.unwrap().correlation_id().unwrap(),
        "42"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn headers_exchange_matches_all_and_any() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.open_channel(None).await.unwrap();
    for q in ["all", "any"] {
        ch.queue_declare(QueueDeclareArguments::new(q))
            .await
            .unwrap();
    }
    let bind = |q: &'static str, args: FieldTable| {
        let ch = ch.clone();
        async move {
            let mut a = QueueBindArguments::new(q, "amq.headers", "");
            a.arguments(args);
            ch.queue_bind(a).await.unwrap();
        }
    };
    bind(
        "all",
        table(&[
            ("x-match", "all".into()),
            ("k1", "v1".into()),
            ("k2", "v2".into()),
        ]),
    )
    .await;
    bind(
        "any",
        table(&[
            ("x-match", "any".into()),
            ("k1", "v1".into()),
            ("k2", "v2".into()),
        ]),
    )
    .await;
    let send = |pairs: &'static [(&'static str, &'static str)], body: &'static [u8]| {
        let ch = ch.clone();
        async move {
            let mut props = BasicProperties::default();
            let t = table(
                &pairs
                    .iter()
                    .map(|(k, v)| (*k, FieldValue::from(*v)))
                    .collect::<Vec<_>>(),
            );
            props.with_headers(t);
            publish(&ch, "amq.headers", "", props.finish(), body).await;
        }
    };
    send(&[("k1", "v1"), ("k2", "v2")], b"both").await;
    send(&[("k1", "v1")], b"one").await;
    send(&[("k1", "nope")], b"none").await;
    assert_eq!(get_body(&ch, "all").await, Some(b"both".to_vec()));
    assert_eq!(get_body(&ch, "all").await, None);
    assert_eq!(get_body(&ch, "any").await, Some(b"both".to_vec()));
    assert_eq!(get_body(&ch, "any").await, Some(b"one".to_vec()));
    assert_eq!(get_body(&ch, "any").await, None);
    node.shutdown().await;
}

#[tokio::test]
async fn exchange_to_exchange_and_alternate_exchange() {
    let node = TestNode::start().await;
    let conn = connect(&node).await;
    let ch = conn.open_channel(None).await.unwrap();
    ch.exchange_declare(ExchangeDeclareArguments::new("unrouted", "fanout"))
        .await
        .unwrap();
    let mut args = ExchangeDeclareArguments::new("front", "direct");
    args.arguments(table(&[("alternate-exchange", "unrouted".into())]));
    ch.exchange_declare(args).await.unwrap();
    ch.exchange_declare(ExchangeDeclareArguments::new("back", "fanout"))
        .await
        .unwrap();
    ch.exchange_bind(ExchangeBindArguments::new("back", "front", "to-back"))
        .await
        .unwrap();
    for q in ["via-e2e", "leftovers"] {
        ch.queue_declare(QueueDeclareArguments::new(q))
            .await
            .unwrap();
    }
    ch.queue_bind(QueueBindArguments::new("via-e2e", "back", ""))
        .await
        .unwrap();
    ch.queue_bind(QueueBindArguments::new("leftovers", "unrouted", ""))
        .await
        .unwrap();

    publish(
        &ch,
        "front",
        "to-back",
        BasicProperties::default(),
        b"routed",
    )
    .await;
    publish(
        &ch,
        "front",
        "elsewhere",
        BasicProperties::default(),
        b"stray",
    )
    .await;
    assert_eq!(get_body(&ch, "via-e2e").await, Some(b"routed".to_vec()));
    assert_eq!(get_body(&ch, "via-e2e").await, None);
    assert_eq!(get_body(&ch, "leftovers").await, Some(b"stray".to_vec()));
    assert_eq!(get_body(&ch, "leftovers").await, None);

    ch.exchange_unbind(ExchangeUnbindArguments::new("back", "front", "to-back"))
        .await
        .unwrap();
    publish(
        &ch,
        "front",
        "to-back",
        BasicProperties::default(),
        b"now-stray",
    )
    .await;
    assert_eq!(get_body(&ch, "via-e2e").await, None);
    assert_eq!(
        get_body(&ch, "leftovers").await,
        Some(b"now-stray".to_vec())
    );
    node.shutdown().await;
}
