//! What survives a restart: durable exchanges, queues and bindings (and users, hashed) come
//! back from the definitions file; non-durable ones do not.

mod common;

use common::{TestNode, lapin_channel, passive_declare, temp_data_dir};
use lapin::ExchangeKind;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};

#[tokio::test]
async fn durable_topology_survives_a_restart_and_transient_does_not() {
    let dir = temp_data_dir();
    {
        let node = TestNode::start_in(&dir).await;
        let (_conn, ch) = lapin_channel(&node).await;
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(100));
        ch.exchange_declare(
            "keep-x".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.exchange_declare(
            "lose-x".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_declare(
            "keep-q".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
        ch.queue_declare(
            "lose-q".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            "keep-q".into(),
            "keep-x".into(),
            "a.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            "lose-q".into(),
            "keep-x".into(),
            "b.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        node.shutdown().await;
    }
    // A clean stop leaves a snapshot of the whole topology (transient queues included: they
    // leave it through the log once the node is back).
    let text = std::fs::read_to_string(dir.join("raft/snapshot.json")).unwrap();
    assert!(text.contains("keep-q"), "{text}");
    assert!(
        !text.contains("\"guest\"") || text.contains("password_hash"),
        "users are stored hashed"
    );
    assert!(!text.contains("\"password\""), "no plain passwords");

    let node = TestNode::start_in(&dir).await;
    let (conn, ch) = lapin_channel(&node).await;
    assert!(passive_declare(&ch, "keep-q").await.is_ok());
    // The argument came back, so an inequivalent redeclaration is still refused.
    let mut other = FieldTable::default();
    other.insert("x-max-length".into(), AMQPValue::LongInt(5));
    assert!(
        ch.queue_declare(
            "keep-q".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            other
        )
        .await
        .is_err()
    );
    let ch = conn.create_channel().await.unwrap();
    assert!(passive_declare(&ch, "lose-q").await.is_err());
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "keep-x".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert!(
        ch.exchange_declare(
            "lose-x".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default()
        )
        .await
        .is_err()
    );
    // The durable binding routes again.
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        "keep-x".into(),
        "a.b".into(),
        BasicPublishOptions::default(),
        b"routed",
        lapin::BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = ch
        .basic_get("keep-q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    assert_eq!(got.map(|m| m.delivery.data), Some(b"routed".to_vec()));
    node.shutdown().await;
}

#[tokio::test]
async fn deleting_durable_things_is_remembered() {
    let dir = temp_data_dir();
    {
        let node = TestNode::start_in(&dir).await;
        let (_conn, ch) = lapin_channel(&node).await;
        ch.queue_declare(
            "gone-q".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_delete("gone-q".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        node.shutdown().await;
    }
    let node = TestNode::start_in(&dir).await;
    let (_conn, ch) = lapin_channel(&node).await;
    assert!(passive_declare(&ch, "gone-q").await.is_err());
    node.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_definitions_file_stops_the_node_with_a_clear_error() {
    let dir = temp_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("definitions.json"), b"{ not json").unwrap();
    let mut config = warren_broker::Config::default();
    config.node.data_dir = dir.to_path_buf();
    let err = warren_broker::Broker::open(config)
        .await
        .err()
        .expect("refused");
    assert!(err.contains("definitions.json"), "{err}");
}

/// Definitions that do not record queue ids (RabbitMQ's, say) get ids at start, and those are
/// written down at once: a queue's log is found by its id, so it must not change at the next
/// start, even one after a crash.
#[tokio::test]
async fn queues_from_foreign_definitions_keep_the_ids_they_are_given() {
    let dir = temp_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("definitions.json"),
        r#"{"vhosts":[{"name":"/"}],
            "queues":[{"name":"foreign","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}]}"#,
    )
    .unwrap();
    let node = TestNode::start_in(&dir).await;
    let text = std::fs::read_to_string(dir.join("raft/snapshot.json")).unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(&text).unwrap();
    let placed = &snapshot["definitions"]["queues"][0]["warren"];
    assert!(placed["id"].is_object(), "the id is recorded: {text}");
    assert!(
        !dir.join("definitions.json").exists() && dir.join("definitions.json.imported").exists(),
        "the imported file is kept aside, never read again"
    );
    node.shutdown().await;
}
