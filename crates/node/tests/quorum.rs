//! Quorum queues on a 3-node cluster, through clients of different nodes: declared on one,
//! published to with confirms on another, consumed on the third; and they keep every
//! confirmed message when the node their group first chose to lead is killed.

mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;
use support::cluster::{cluster, durable, passive};
use support::{Node, lapin_channel, publish_confirmed};

fn quorum_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    t
}

/// Messages in a queue, asked through `node` (none: not answered from there).
async fn count(node: &Node, queue: &str) -> Option<u32> {
    let (_c, ch) = lapin_channel(node.amqp).await;
    let declared = ch.queue_declare(queue.into(), passive(), FieldTable::default());
    match tokio::time::timeout(Duration::from_secs(15), declared).await {
        Ok(Ok(q)) => Some(q.message_count()),
        _ => None,
    }
}

async fn until_count(node: &Node, queue: &str, want: u32) {
    for _ in 0..150 {
        if count(node, queue).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{queue} never counted {want} through {}", node.name());
}

/// Takes `n` messages from `queue` through `node`, acknowledging each; returns their bodies.
async fn take(node: &Node, queue: &str, n: usize) -> Vec<String> {
    let (_c, ch) = lapin_channel(node.amqp).await;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut bodies = Vec::new();
    while bodies.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} arrived", bodies.len()))
            .expect("a delivery")
            .expect("not an error");
        bodies.push(String::from_utf8_lossy(&d.data).into_owned());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    bodies
}

#[test]
fn a_quorum_queue_serves_every_node_and_outlives_its_first_leader() {
    let mut nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, on1) = lapin_channel(nodes[0].amqp).await;
        let ok = on1
            .queue_declare("qq".into(), durable(), quorum_args())
            .await
            .unwrap();
        assert_eq!((ok.message_count(), ok.consumer_count()), (0, 0));
        // Declared again, the same: equivalent. As a classic queue: refused.
        on1.queue_declare("qq".into(), durable(), quorum_args())
            .await
            .unwrap();
        let (_c, on2) = lapin_channel(nodes[1].amqp).await;
        on2.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..20 {
            publish_confirmed(&on2, "qq", format!("m{i}").as_bytes()).await;
        }
        for node in &nodes {
            until_count(node, "qq", 20).await;
        }
        let got = take(&nodes[2], "qq", 5).await;
        let first: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
        assert_eq!(got, first, "in order, through the third node");
        until_count(&nodes[1], "qq", 15).await;
    });

    // The leader's node is killed while a publisher on another node waits for confirms: the
    // two others elect a leader, the publisher's entry in flight is committed once, and every
    // message confirmed, before or after, is there, in order.
    let leaders: Vec<usize> = (0..3)
        .filter(|i| nodes[*i].logged_within("leads quorum queue", Duration::from_millis(200)))
        .collect();
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    let leader = nodes.remove(leaders[0]);
    let publisher_at = nodes[0].amqp;
    let publishing = rt.spawn(async move {
        let (_c, ch) = lapin_channel(publisher_at).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 20..40 {
            publish_confirmed(&ch, "qq", format!("m{i}").as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    std::thread::sleep(Duration::from_millis(150));
    let _down = leader.kill();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), publishing)
            .await
            .expect("the publisher was confirmed to the end")
            .unwrap();
        let got = take(&nodes[1], "qq", 35).await;
        let rest: Vec<String> = (5..40).map(|i| format!("m{i}")).collect();
        assert_eq!(got, rest);
        until_count(&nodes[0], "qq", 0).await;
        // Deleted through one node, it is gone from every node (once the metadata, which
        // lost its leader with c1 too, has a new one: until then the change times out).
        let mut deleted = None;
        for _ in 0..20 {
            let (_c, ch) = lapin_channel(nodes[1].amqp).await;
            match ch
                .queue_delete("qq".into(), QueueDeleteOptions::default())
                .await
            {
                Ok(n) => {
                    deleted = Some(n);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        assert_eq!(deleted, Some(0));
        for node in &nodes {
            assert_eq!(count(node, "qq").await, None, "{}", node.name());
        }
    });
}

/// The error a declaration on a fresh channel of `node` gets, as lapin prints it.
async fn declare_error(
    node: &Node,
    name: &str,
    opts: QueueDeclareOptions,
    args: FieldTable,
) -> String {
    let (_c, ch) = lapin_channel(node.amqp).await;
    match ch.queue_declare(name.into(), opts, args).await {
        Ok(_) => panic!("{name} was declared"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn what_a_quorum_queue_may_not_be_is_refused_with_rabbitmq_s_words() {
    let nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let n = &nodes[0];
        let mut prio = quorum_args();
        prio.insert("x-max-priority".into(), AMQPValue::LongInt(5));
        let cases = [
            (
                declare_error(n, "nd", QueueDeclareOptions::default(), quorum_args()).await,
                "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'nd' in vhost '/'",
            ),
            (
                declare_error(n, "pr", durable(), prio).await,
                "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'pr' in vhost '/' of queue type rabbit_quorum_queue",
            ),
            (
                declare_error(n, "", durable(), quorum_args()).await,
                "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue",
            ),
        ];
        for (got, want) in cases {
            assert!(got.contains(want), "{got}");
        }
        // A plain redeclaration of a quorum queue is not equivalent.
        let (_c, ch) = lapin_channel(n.amqp).await;
        ch.queue_declare("q".into(), durable(), quorum_args())
            .await
            .unwrap();
        let plain = declare_error(n, "q", durable(), FieldTable::default()).await;
        assert!(
            plain.contains("inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received none but current is the value 'quorum' of type 'longstr'"),
            "{plain}"
        );
        // Global prefetch and conditional deletes close the connection with 540.
        let (conn, ch) = lapin_channel(n.amqp).await;
        ch.basic_qos(10, BasicQosOptions { global: true }).await.unwrap();
        let err = ch
            .basic_consume("q".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NOT_IMPLEMENTED - queue 'q' in vhost '/' does not support global qos"),
            "{err}"
        );
        drop(conn);
        let (_conn, ch) = lapin_channel(n.amqp).await;
        let err = ch
            .queue_delete("q".into(), QueueDeleteOptions { if_unused: true, ..Default::default() })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NOT_IMPLEMENTED - cannot delete queue 'q' in vhost '/'. queue.delete operations with if-unused flag set are not supported by quorum queues"),
            "{err}"
        );
    });
}
