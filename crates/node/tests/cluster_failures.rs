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
use support::{Node, eventually, lapin_channel, publish_confirmed};

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
    // Queues on c2: one durable with a persistent message, one transient, and one exclusive
    // to a connection that stays open.
    let _owner = rt.block_on(async {
        let (owner, on2) = lapin_channel(nodes[1].amqp).await;
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        on2.queue_declare("mine".into(), exclusive, FieldTable::default())
            .await
            .unwrap();
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
        owner
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
        // So did the exclusive one: gone from the topology, not merely out of reach.
        let (_c, ch) = lapin_channel(c1.amqp).await;
        let gone = ch
            .queue_declare("mine".into(), passive(), FieldTable::default())
            .await
            .expect_err("the exclusive queue of a dead node");
        let text = format!("{gone:?}");
        assert!(text.contains("no queue 'mine' in vhost '/'"), "{text}");
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

/// What `list_*` shows through `node`, one listing per verb.
fn listings(node: &Node) -> Vec<String> {
    [
        vec!["list_vhosts"],
        vec!["list_users"],
        vec!["list_permissions", "-p", "v2"],
        vec!["list_permissions", "-p", "v3"],
        vec!["list_exchanges", "name", "type", "durable"],
        vec!["list_bindings"],
        vec!["list_queues", "name", "durable", "node", "messages"],
    ]
    .iter()
    .map(|args| {
        let (code, out, err) = node.ctl(&[&["-q"], args.as_slice()].concat());
        assert_eq!(code, 0, "{args:?}: {err}");
        let mut rows: Vec<&str> = out.lines().collect();
        rows.sort();
        rows.join("\n")
    })
    .collect()
}

/// The metadata leader's node is killed: both survivors still have every vhost, user,
/// permission, exchange, binding and queue (declared through any of the three), every
/// confirmed persistent message of their queues (published through any of the three, the dead
/// one included), and go on taking changes.
#[test]
fn killing_the_metadata_leader_loses_no_metadata_and_no_confirmed_message() {
    let mut nodes = cluster(3);
    let lead = support::cluster::metadata_leader(&nodes);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != lead).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (k, i) in (0..3).enumerate() {
        let node = &nodes[i];
        let v = format!("v{}", k + 1);
        ok(node, &["add_vhost", &v]);
        ok(node, &["add_user", &format!("u{}", k + 1), "pw"]);
        ok(
            node,
            &["set_permissions", "-p", &v, "guest", ".*", ".*", ""],
        );
    }
    rt.block_on(async {
        for (k, i) in survivors.iter().enumerate() {
            let (_c, ch) = lapin_channel(nodes[*i].amqp).await;
            let (q, x) = (format!("q{k}"), format!("x{k}"));
            ch.queue_declare(q.as_str().into(), durable(), FieldTable::default())
                .await
                .unwrap();
            let opts = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            // Declared through the leader's node, bound through the queue's.
            let (_l, on_leader) = lapin_channel(nodes[lead].amqp).await;
            on_leader
                .exchange_declare(
                    x.as_str().into(),
                    lapin::ExchangeKind::Fanout,
                    opts,
                    FieldTable::default(),
                )
                .await
                .unwrap();
            // As with RabbitMQ 4's Khepri, a change is applied on the node that made it before
            // it is answered, and on the others a moment later.
            let queue_node = &nodes[*i];
            let listed = || {
                let (_, out, _) = queue_node.ctl(&["-q", "list_exchanges", "name"]);
                out.lines().any(|l| l == x)
            };
            support::eventually(
                "the exchange on the queue's node",
                Duration::from_secs(10),
                listed,
            );
            ch.queue_bind(
                q.as_str().into(),
                x.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
            // Published through every node: the leader's, the queue's and the other one.
            for (n, node) in nodes.iter().enumerate() {
                let (_p, on) = lapin_channel(node.amqp).await;
                on.confirm_select(ConfirmSelectOptions::default())
                    .await
                    .unwrap();
                for m in 0..10u8 {
                    publish_confirmed(&on, &q, &[n as u8, m]).await;
                }
            }
        }
    });
    let before = listings(&nodes[survivors[0]]);
    assert!(before[6].contains("q0\ttrue\t"), "{}", before[6]);
    assert!(before[6].ends_with("\t30"), "{}", before[6]);
    let dead = nodes.remove(lead).kill();
    for node in &nodes {
        assert_eq!(listings(node), before, "through {}", node.name());
    }
    // Once the survivors have elected a leader (1.5-3 s; a change asked before waits for it,
    // up to these tests' 2 s timeout).
    eventually(
        "a change through a survivor",
        Duration::from_secs(30),
        || nodes[0].ctl(&["add_vhost", "after"]).0 == 0,
    );
    eventually(
        "the change on both survivors",
        Duration::from_secs(30),
        || {
            nodes.iter().all(|n| {
                let (_, out, _) = n.ctl(&["-q", "list_vhosts"]);
                out.lines().any(|l| l == "after")
            })
        },
    );
    // Every message, read through the other survivor than its queue's.
    rt.block_on(async {
        for k in 0..2 {
            let (_c, ch) = lapin_channel(nodes[1 - k].amqp).await;
            let mut got = Vec::new();
            while let Some(m) = ch
                .basic_get(
                    format!("q{k}").as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap()
            {
                got.push(m.delivery.data.clone());
            }
            let want: Vec<Vec<u8>> = (0..3u8)
                .flat_map(|n| (0..10u8).map(move |m| vec![n, m]))
                .collect();
            assert_eq!(got, want, "q{k}");
        }
    });
    drop(dead);
}
