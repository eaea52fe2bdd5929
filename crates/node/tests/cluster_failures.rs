//! A node of a cluster goes down (killed, or its broker stopped with `stop_app`) while clients
//! of the other nodes use its queues, and the others answer as RabbitMQ's do (recorded in
//! docs/rabbitmq-behaviour.md on a RabbitMQ 3.10 cluster): consumers of its queues get
//! basic.cancel; a mandatory publish routed only to its queues comes back with 312 NO_ROUTE
//! and is confirmed; its transient queues are gone from the topology; and when it is back, so
//! are its durable queues and their persistent messages.

mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;
use support::cluster::{cluster, durable, ok, passive};
use support::{Node, lapin_channel, publish_confirmed};

/// Waits for a consumer's stream to end (the server cancelled it), skipping deliveries.
async fn cancelled(consumer: &mut lapin::Consumer) -> bool {
    let ended = async {
        loop {
            match consumer.next().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ended)
        .await
        .is_ok()
}

/// Publishes a persistent, mandatory message and returns how it was confirmed: acked, and
/// the reply code if it came back.
async fn publish_mandatory(ch: &lapin::Channel, queue: &str) -> (bool, Option<u16>) {
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
    let confirm = ch
        .basic_publish("".into(), queue.into(), mandatory, b"m", persistent)
        .await
        .unwrap()
        .await
        .unwrap();
    match confirm {
        lapin::Confirmation::Ack(back) => (true, back.map(|m| m.reply_code)),
        other => (false, other.take_message().map(|m| m.reply_code)),
    }
}

async fn consume(ch: &lapin::Channel, queue: &str) -> lapin::Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap()
}

/// Messages in a queue, asked through `node` (none: the queue cannot be used from there).
async fn count(node: &Node, queue: &str) -> Option<u32> {
    let (_c, ch) = lapin_channel(node.amqp).await;
    ch.queue_declare(queue.into(), passive(), FieldTable::default())
        .await
        .ok()
        .map(|q| q.message_count())
}

async fn until_count(node: &Node, queue: &str, want: Option<u32>) {
    for _ in 0..300 {
        if count(node, queue).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{queue} never counted {want:?} through {}", node.name());
}

#[test]
fn a_node_going_down_cancels_its_consumers_and_unroutes_its_queues() {
    let mut nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Queues on c2: one durable with a persistent message, one transient.
    rt.block_on(async {
        let (_c, on2) = lapin_channel(nodes[1].amqp).await;
        on2.queue_declare("far".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        on2.queue_declare("fleeting".into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        on2.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        publish_confirmed(&on2, "far", b"kept").await;
    });
    let c1 = nodes.remove(0);
    let c2 = nodes.remove(0);
    rt.block_on(async {
        let (_c, on1) = lapin_channel(c1.amqp).await;
        on1.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut far = consume(&on1, "far").await;
        let mut fleeting = consume(&on1, "fleeting").await;
        // The persistent message reaches the consumer on c1 and stays unacknowledged.
        let first = far.next().await.unwrap().unwrap();
        assert_eq!(first.data, b"kept");
        assert_eq!(publish_mandatory(&on1, "far").await, (true, None));

        let down = c2.kill();
        assert!(
            cancelled(&mut far).await,
            "basic.cancel for the durable queue"
        );
        assert!(cancelled(&mut fleeting).await, "and for the transient one");
        // Routed to nothing reachable: back with NO_ROUTE, and confirmed.
        assert_eq!(publish_mandatory(&on1, "far").await, (true, Some(312)));
        // The transient queue went with its node; its name is free on the others.
        until_count(&c1, "fleeting", None).await;
        let (_c, fresh) = lapin_channel(c1.amqp).await;
        let q = fresh
            .queue_declare("fleeting".into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        assert_eq!(q.message_count(), 0);
        // The durable queue answers every use from the other nodes with RabbitMQ's 404.
        for what in ["declare", "consume", "get", "purge"] {
            let (_c, ch) = lapin_channel(c1.amqp).await;
            let used = match what {
                "declare" => ch
                    .queue_declare("far".into(), durable(), FieldTable::default())
                    .await
                    .map(drop),
                "consume" => ch
                    .basic_consume(
                        "far".into(),
                        "".into(),
                        Default::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map(drop),
                "get" => ch.basic_get("far".into(), Default::default()).await.map(drop),
                _ => ch.queue_purge("far".into(), Default::default()).await.map(drop),
            };
            let text = format!("{:?}", used.expect_err(what));
            assert!(
                text.contains("NOTFOUND")
                    && text.contains(
                        "home node 'c2@localhost' of durable queue 'far' in vhost '/' is down or inaccessible"
                    ),
                "{what}: {text}"
            );
        }

        // Back: the durable queue serves again, with both persistent messages (the one the
        // consumer never acknowledged included); a publish reaches it.
        let c2 = down.start();
        until_count(&c1, "far", Some(2)).await;
        assert_eq!(publish_mandatory(&on1, "far").await, (true, None));
        assert_eq!(count(&c2, "far").await, Some(3));

        // stop_app: the same, while c2's node still runs.
        let mut far = consume(&on1, "far").await;
        for _ in 0..3 {
            far.next().await.unwrap().unwrap();
        }
        ok(&c2, &["stop_app"]);
        assert!(cancelled(&mut far).await, "basic.cancel at stop_app");
        let running = support::cluster::status(&c1)["running_nodes"].clone();
        assert_eq!(
            running,
            serde_json::json!(["c1@localhost", "c3@localhost"]),
            "a stopped application is not running, as rabbitmqctl reports it"
        );
        assert_eq!(publish_mandatory(&on1, "far").await, (true, Some(312)));
        ok(&c2, &["start_app"]);
        until_count(&c1, "far", Some(3)).await;
        assert_eq!(publish_mandatory(&on1, "far").await, (true, None));
        until_count(&c1, "far", Some(4)).await;
    });
}

/// A member forgotten while it was down, and started again with its old view of the cluster,
/// asks the others for their votes; they do not answer it, so it cannot unseat their leader,
/// and the cluster goes on taking changes.
#[test]
fn a_forgotten_node_that_comes_back_does_not_disturb_the_cluster() {
    let mut nodes = cluster(3);
    let c3 = nodes.pop().unwrap().kill();
    ok(&nodes[0], &["forget_cluster_node", "c3@localhost"]);
    let _c3 = c3.start();
    let ignored = nodes
        .iter()
        .any(|n| n.logged_within("ignored a vote request", Duration::from_secs(20)));
    assert!(
        ignored,
        "the forgotten node asked for votes and was ignored"
    );
    for i in 0..3 {
        ok(&nodes[0], &["add_vhost", &format!("after-{i}")]);
    }
    let s = support::cluster::status(&nodes[1]);
    assert_eq!(
        s["disk_nodes"],
        serde_json::json!(["c1@localhost", "c2@localhost"])
    );
}

/// Two nodes of three gone for good: the one left has no majority and refuses changes. With
/// its application stopped, `forget_cluster_node --offline` takes each lost node out of its
/// membership; started again it is a cluster of one, with its topology and messages, and
/// takes changes.
#[test]
fn a_survivor_forgets_the_lost_majority_offline_and_goes_on() {
    let mut nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = lapin_channel(nodes[0].amqp).await;
        ch.queue_declare("kept".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        publish_confirmed(&ch, "kept", b"still here").await;
    });
    let lost: Vec<_> = nodes.drain(1..).map(Node::kill).collect();
    let c1 = &nodes[0];
    let (code, _, _) = c1.ctl(&["add_vhost", "no-majority"]);
    assert_eq!(code, 75, "a minority refuses changes");
    let (code, _, err) = c1.ctl(&["forget_cluster_node", "--offline", "c2@localhost"]);
    assert_eq!(code, 64, "the application must be stopped first: {err}");
    ok(c1, &["stop_app"]);
    ok(c1, &["forget_cluster_node", "--offline", "c2@localhost"]);
    ok(c1, &["forget_cluster_node", "--offline", "c3@localhost"]);
    let (code, _, _) = c1.ctl(&["forget_cluster_node", "--offline", "c3@localhost"]);
    assert_eq!(code, 70, "no longer a member");
    ok(c1, &["start_app"]);
    let mut took = false;
    for _ in 0..100 {
        if c1.ctl(&["add_vhost", "after"]).0 == 0 {
            took = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(took, "alone, the survivor takes changes again");
    assert_eq!(
        support::cluster::status(c1)["disk_nodes"],
        serde_json::json!(["c1@localhost"])
    );
    rt.block_on(async {
        assert_eq!(count(c1, "kept").await, Some(1));
    });
    drop(lost);
}
