//! A quorum queue's member leaves a node whose clients consume from the queue: they keep their
//! subscriptions, as RabbitMQ's consumers do (they talk to the queue, not to the member on
//! their node).

mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;
use support::cluster::{cluster, durable, quorum_args};
use support::{eventually, lapin_channel, publish_confirmed};

/// Takes the next delivery, which must be `want`, and acknowledges it.
async fn next(consumer: &mut lapin::Consumer, want: &str) {
    let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .unwrap_or_else(|_| panic!("{want} never arrived"))
        .expect("a delivery")
        .expect("not an error");
    assert_eq!(String::from_utf8_lossy(&d.data), want);
    d.ack(BasicAckOptions::default()).await.unwrap();
}

#[test]
fn consumers_on_a_node_whose_member_is_deleted_keep_their_subscription() {
    let nodes = cluster(3);
    let names: Vec<String> = nodes.iter().map(|n| n.spec.name.clone()).collect();
    let quorum_dir = nodes[2].spec.dir.join("data").join("quorum");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = lapin_channel(nodes[0].amqp).await;
        let args = quorum_args();
        ch.queue_declare("kept".into(), durable(), args)
            .await
            .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        // A consumer on c3, which holds a member, with a prefetch smaller than what follows:
        // it gets everything only if its acknowledgements keep reaching the queue.
        let (_c3, ch3) = lapin_channel(nodes[2].amqp).await;
        ch3.basic_qos(3, BasicQosOptions::default()).await.unwrap();
        let mut consumer = ch3
            .basic_consume(
                "kept".into(),
                "watcher".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for i in 0..5 {
            publish_confirmed(&ch, "kept", format!("m{i}").as_bytes()).await;
            next(&mut consumer, &format!("m{i}")).await;
        }
        // c3's member goes; the queue lives on c1 and c2.
        support::cluster::ok(&nodes[1], &["delete_member", "kept", &names[2]]);
        eventually("c3's member to go", Duration::from_secs(20), || {
            std::fs::read_dir(&quorum_dir).map_or(0, |d| d.count()) == 0
        });
        for i in 5..15 {
            publish_confirmed(&ch, "kept", format!("m{i}").as_bytes()).await;
        }
        for i in 5..15 {
            next(&mut consumer, &format!("m{i}")).await;
        }
        // Every acknowledgement was taken, and the consumer is still the queue's (its connection
        // is still open).
        let mut last = String::new();
        let settled = support::within(Duration::from_secs(10), || {
            last = support::cluster::ok(
                &nodes[0],
                &[
                    "-q",
                    "list_queues",
                    "name",
                    "messages_ready",
                    "messages_unacknowledged",
                    "consumers",
                ],
            );
            last.lines().any(|l| l == "kept\t0\t0\t1")
        });
        assert!(settled, "{last}");
        // Cancelling goes through to the queue too.
        ch3.basic_cancel("watcher".into(), BasicCancelOptions::default())
            .await
            .unwrap();
        let cancelled = support::within(Duration::from_secs(10), || {
            last = support::cluster::ok(&nodes[1], &["-q", "list_queues", "name", "consumers"]);
            last.lines().any(|l| l == "kept\t0")
        });
        assert!(cancelled, "{last}");
    });
}
