//! Clusters of `warren` processes on loopback, formed from `[cluster] peers`: one topology on
//! every node whichever node a change goes through; a node that was down catches up; a
//! majority goes on without a node; a minority refuses changes within the configured time,
//! with RabbitMQ's (Khepri's) answers, and still answers redeclarations of what exists.

mod support;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::FieldTable;
use std::time::{Duration, Instant};
use support::cluster::{
    TIMEOUT_MS, alone, cluster, cluster_with, durable, ok, pair, passive, status,
};
use support::{Node, Spec, eventually, lapin_channel, publish_confirmed};

fn lines(node: &Node, args: &[&str]) -> Vec<String> {
    let mut all = vec!["-q"];
    all.extend(args);
    let (code, out, err) = node.ctl(&all);
    assert_eq!(code, 0, "{args:?}: {err}");
    out.lines().skip(1).map(str::to_owned).collect()
}

/// Declares a durable fanout exchange.
async fn declare_exchange(ch: &lapin::Channel, name: &str) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        name.into(),
        lapin::ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await
}

/// Declares the durable queue `kept-q` and binds it to the exchange `kept`, as applications
/// do on every connect.
async fn declare_bound_queue(ch: &lapin::Channel) -> lapin::Result<()> {
    ch.queue_declare("kept-q".into(), durable(), FieldTable::default())
        .await?;
    ch.queue_bind(
        "kept-q".into(),
        "kept".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

#[test]
fn three_nodes_from_a_peers_list_share_one_topology() {
    let nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c2, on_c2) = lapin_channel(nodes[1].amqp).await;
        on_c2
            .queue_declare("shared".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        let (_c3, on_c3) = lapin_channel(nodes[2].amqp).await;
        declare_exchange(&on_c3, "x").await.unwrap();
        // The queue was declared through another node: it is bound through a third.
        let (_c1, on_c1) = lapin_channel(nodes[0].amqp).await;
        on_c1
            .queue_bind(
                "shared".into(),
                "x".into(),
                "a.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    });
    let (code, _, err) = nodes[0].ctl(&["add_user", "alice", "s3cret"]);
    assert_eq!(code, 0, "{err}");
    for node in &nodes {
        eventually(
            "every change on every node",
            Duration::from_secs(10),
            || {
                let queues = lines(node, &["list_queues", "name", "durable", "node"]);
                let users = lines(node, &["list_users"]);
                let bindings = lines(
                    node,
                    &[
                        "list_bindings",
                        "source_name",
                        "destination_name",
                        "routing_key",
                    ],
                );
                queues == ["shared\ttrue\tc2@localhost"]
                    && users.iter().any(|u| u.starts_with("alice\t"))
                    && bindings.contains(&"x\tshared\ta.#".to_owned())
            },
        );
    }
    let (code, text, _) = nodes[2].ctl(&["cluster_status"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("Disk Nodes\n\nc1@localhost\nc2@localhost\nc3@localhost\n"),
        "{text}"
    );
}

#[test]
fn a_majority_goes_on_without_a_node_and_a_minority_refuses_changes_in_time() {
    let mut nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // One node down: the other two go on, and it catches up when it is back.
    let c3 = nodes.pop().unwrap().kill();
    let (code, _, err) = nodes[0].ctl(&["add_vhost", "while-c3-was-down"]);
    assert_eq!(code, 0, "{err}");
    rt.block_on(async {
        let (_c, ch) = lapin_channel(nodes[1].amqp).await;
        declare_exchange(&ch, "kept").await.unwrap();
        // On the node that will be left alone, so that the queue's home stays up.
        let (_c, ch) = lapin_channel(nodes[0].amqp).await;
        declare_bound_queue(&ch).await.unwrap();
    });
    nodes.push(c3.start());
    eventually(
        "the restarted node to catch up",
        Duration::from_secs(20),
        || lines(&nodes[2], &["list_vhosts"]).contains(&"while-c3-was-down".to_owned()),
    );

    // Two nodes down: the one left refuses changes, within the timeout.
    let c2 = nodes.remove(1).kill();
    let c3 = nodes.remove(1).kill();
    let alone = &nodes[0];
    let t = Instant::now();
    let (code, _, err) = alone.ctl(&["add_vhost", "in-minority"]);
    let took = t.elapsed();
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("has timed out on node c1@localhost"), "{err}");
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS) && took < Duration::from_millis(TIMEOUT_MS * 4),
        "answered after {took:?}"
    );
    assert!(!lines(alone, &["list_vhosts"]).contains(&"in-minority".to_owned()));
    rt.block_on(async {
        // What exists is still answered from the node's own copy.
        let (_c, ch) = lapin_channel(alone.amqp).await;
        declare_exchange(&ch, "kept").await.unwrap();
        declare_bound_queue(&ch).await.unwrap();
        // A new declaration fails as RabbitMQ's does without a majority: 541, which closes
        // the connection.
        let err = declare_exchange(&ch, "new").await.unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("Hard(INTERNALERROR)"), "{text}");
        assert!(
            text.contains(
                "failed to declare exchange 'new' in vhost '/' because the operation timed out"
            ),
            "{text}"
        );
        let (_c, ch) = lapin_channel(alone.amqp).await;
        let err = ch
            .queue_declare("new-q".into(), durable(), FieldTable::default())
            .await
            .unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("Hard(INTERNALERROR)"), "{text}");
        assert!(
            text.contains(
                "Could not declare queue 'new-q' in vhost '/' on node 'c1@localhost' because the metadata store operation timed out"
            ),
            "{text}"
        );
    });
    // A majority again: changes go through.
    nodes.push(c2.start());
    eventually("a majority again", Duration::from_secs(20), || {
        nodes[0].ctl(&["add_vhost", "healed"]).0 == 0
    });
    eventually(
        "the change on the other node",
        Duration::from_secs(10),
        || lines(&nodes[1], &["list_vhosts"]).contains(&"healed".to_owned()),
    );
    drop(c3);
}

/// The article's flow, verbatim but for the tool's name: on the second node, `stop_app`,
/// `join_cluster --ram` the first, `start_app`, then `cluster_status` lists both, the second
/// as a RAM node. Then: declarations through either node land in one topology; with the RAM
/// node stopped the disc node alone is a majority; a killed RAM node rejoins by itself and
/// catches up; and, stopped, it is forgotten by the cluster.
#[test]
fn the_article_s_join_cluster_ram_flow() {
    let a = alone("a@localhost");
    let b = alone("b@localhost");
    assert_eq!(
        ok(&b, &["stop_app"]),
        "Stopping warren application on node b@localhost ...\n"
    );
    let out = ok(&b, &["join_cluster", "--ram", &a.name()]);
    assert!(
        out.starts_with("Clustering node b@localhost with a@localhost"),
        "{out}"
    );
    ok(&b, &["start_app"]);
    for node in [&a, &b] {
        eventually(
            "both nodes in cluster_status",
            Duration::from_secs(20),
            || {
                let s = status(node);
                s["disk_nodes"] == serde_json::json!(["a@localhost"])
                    && s["ram_nodes"] == serde_json::json!(["b@localhost"])
                    && s["running_nodes"] == serde_json::json!(["a@localhost", "b@localhost"])
            },
        );
    }
    let quiet = ok(&a, &["-q", "cluster_status"]);
    assert!(
        quiet.starts_with("Basics\n"),
        "-q drops the informational line: {quiet}"
    );
    let text = ok(&a, &["cluster_status"]);
    assert!(
        text.contains("Disk Nodes\n\na@localhost\n\nRAM Nodes\n\nb@localhost\n\nRunning Nodes\n\na@localhost\nb@localhost\n"),
        "{text}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = lapin_channel(b.amqp).await;
        ch.queue_declare("via-ram-node".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();
        publish_confirmed(&ch, "via-ram-node", b"on disk on the RAM node").await;
    });
    ok(&a, &["add_user", "carol", "pw"]);
    eventually(
        "both changes on both nodes",
        Duration::from_secs(10),
        || {
            [&a, &b].iter().all(|n| {
                lines(n, &["list_queues", "name", "node"]) == ["via-ram-node\tb@localhost"]
                    && lines(n, &["list_users"])
                        .iter()
                        .any(|u| u.starts_with("carol\t"))
            })
        },
    );
    // The RAM node keeps the metadata in memory: on its disk, only whom to ask for it.
    let raft = |n: &Node| n.spec.dir.join("data").join("raft");
    let on_disk = |n: &Node| -> Vec<u8> {
        ["log", "log.spare", "log.old", "snapshot.json"]
            .iter()
            .flat_map(|f| std::fs::read(raft(n).join(f)).unwrap_or_default())
            .collect()
    };
    let holds = |bytes: &[u8], what: &str| bytes.windows(what.len()).any(|w| w == what.as_bytes());
    assert!(holds(&on_disk(&a), "carol"), "the disc node's log");
    assert!(
        !holds(&on_disk(&b), "carol"),
        "the RAM node wrote the topology"
    );
    assert!(!holds(&on_disk(&b), "via-ram-node"));
    let members = std::fs::read_to_string(raft(&b).join("members.json")).unwrap_or_default();
    assert!(members.contains("a@localhost"), "{members}");
    // The RAM node does not vote: the disc node alone is a majority.
    ok(&b, &["stop_app"]);
    ok(&a, &["add_vhost", "while-b-was-stopped"]);
    ok(&b, &["start_app"]);
    // Killed, it comes back by itself and catches up: a RAM node keeps no metadata of its own
    // and takes it from the disc node, while its queue keeps its messages on disk.
    let b = b.kill_and_restart();
    assert!(b.logged("RAM node: taking the metadata from the disc nodes"));
    ok(&a, &["add_vhost", "while-b-restarted"]);
    eventually(
        "the restarted node to catch up",
        Duration::from_secs(20),
        || {
            let v = lines(&b, &["list_vhosts"]);
            v.contains(&"while-b-was-stopped".to_owned())
                && v.contains(&"while-b-restarted".to_owned())
                && lines(&b, &["list_queues", "name", "messages"]) == ["via-ram-node\t1"]
        },
    );
    // A running member is not forgotten; a stopped one is.
    let (code, _, err) = a.ctl(&["forget_cluster_node", "b@localhost"]);
    assert_ne!(code, 0, "forgot a running node");
    assert!(err.contains("b@localhost"), "{err}");
    ok(&b, &["stop_app"]);
    ok(&a, &["forget_cluster_node", "b@localhost"]);
    let s = status(&a);
    assert_eq!(s["ram_nodes"], serde_json::json!([]));
    assert_eq!(s["disk_nodes"], serde_json::json!(["a@localhost"]));
}

/// A node with another cookie cannot join: `join_cluster` fails as for a node that cannot be
/// reached (69), the node it asked logs that the peer does not hold the cookie, the one that
/// asked that the cookies differ, and the cluster is unchanged.
#[test]
fn a_node_with_another_cookie_cannot_join() {
    let a = alone("a@localhost");
    let b = Node::start_with_cookie(
        Spec {
            name: "b@localhost".into(),
            cluster_port: 0,
            config: None,
            dir: support::scratch_dir("cluster"),
            netns: None,
        },
        "ANOTHER-COOKIE",
    );
    let b_ctl = |args: &[&str]| b.ctl_with("ANOTHER-COOKIE", args);
    assert_eq!(b_ctl(&["stop_app"]).0, 0);
    let (code, _, err) = b_ctl(&["join_cluster", &a.name()]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("a@localhost"), "{err}");
    assert!(a.logged("the peer does not hold this cluster's cookie"));
    assert!(b.logged("cannot join: the cookies differ"));
    assert_eq!(status(&a)["disk_nodes"], serde_json::json!(["a@localhost"]));
}

/// `join_cluster` refuses while the application runs, and `change_cluster_node_type` turns a
/// RAM node into a disc node (a voter) when its application starts again.
#[test]
fn joining_asks_for_a_stopped_app_and_a_ram_node_becomes_a_disc_node() {
    let a = alone("a@localhost");
    let b = alone("b@localhost");
    let (code, _, err) = b.ctl(&["join_cluster", &a.name()]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("stop_app"), "{err}");
    ok(&b, &["stop_app"]);
    ok(&b, &["join_cluster", "--ram", &a.name()]);
    ok(&b, &["change_cluster_node_type", "disc"]);
    ok(&b, &["start_app"]);
    eventually("a disc node", Duration::from_secs(20), || {
        status(&a)["disk_nodes"] == serde_json::json!(["a@localhost", "b@localhost"])
    });
    // Two voters: neither alone is a majority any more.
    ok(&b, &["stop_app"]);
    let (code, _, err) = a.ctl(&["add_vhost", "needs-both"]);
    assert_eq!(code, 75, "{err}");
    // force_reset does not ask the cluster: b starts again as a node alone.
    let out = ok(&b, &["force_reset"]);
    assert_eq!(out, "Forcefully resetting node b@localhost ...\n");
    ok(&b, &["start_app"]);
    eventually("b alone", Duration::from_secs(10), || {
        status(&b)["disk_nodes"] == serde_json::json!(["b@localhost"])
    });
}

/// `reset` on a RAM node takes it out of the cluster (the cluster agrees) and empties it: it
/// starts again alone, with only the defaults.
#[test]
fn reset_leaves_the_cluster() {
    let a = alone("a@localhost");
    let b = alone("b@localhost");
    ok(&b, &["stop_app"]);
    ok(&b, &["join_cluster", "--ram", &a.name()]);
    ok(&b, &["start_app"]);
    ok(&a, &["add_vhost", "shared"]);
    eventually("b has the cluster's vhost", Duration::from_secs(20), || {
        lines(&b, &["list_vhosts"]).contains(&"shared".to_owned())
    });
    ok(&b, &["stop_app"]);
    assert_eq!(ok(&b, &["reset"]), "Resetting node b@localhost ...\n");
    eventually("a without b", Duration::from_secs(10), || {
        status(&a)["ram_nodes"] == serde_json::json!([])
    });
    ok(&b, &["start_app"]);
    eventually("b alone, as new", Duration::from_secs(10), || {
        status(&b)["disk_nodes"] == serde_json::json!(["b@localhost"])
            && lines(&b, &["list_vhosts"]) == ["/"]
    });
}

/// Two disc nodes joined as the article does (without --ram).
/// A queue lives on the node that declared it, and a client of the other node uses it as if
/// it were local: persistent publishes confirmed, a passive declare that counts them,
/// basic.get, a consumer with a prefetch that acknowledges, purge and delete; an exclusive
/// queue is locked to its connection from the other node too.
#[test]
fn a_client_of_one_node_uses_a_queue_on_the_other() {
    use futures_lite::StreamExt;
    use lapin::options::*;
    let (a, b) = pair();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_cb, on_b) = lapin_channel(b.amqp).await;
        on_b.queue_declare("lives-on-b".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        let (_ca, on_a) = lapin_channel(a.amqp).await;
        on_a.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..50u32 {
            publish_confirmed(&on_a, "lives-on-b", &i.to_be_bytes()).await;
        }
        let passive = passive();
        let q = on_a
            .queue_declare("lives-on-b".into(), passive, FieldTable::default())
            .await
            .unwrap();
        assert_eq!(q.message_count(), 50);
        let got = on_a
            .basic_get("lives-on-b".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .expect("a message");
        assert_eq!(got.delivery.data, 0u32.to_be_bytes());
        got.delivery.ack(BasicAckOptions::default()).await.unwrap();
        on_a.basic_qos(5, BasicQosOptions::default()).await.unwrap();
        let mut consumer = on_a
            .basic_consume(
                "lives-on-b".into(),
                "c".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for i in 1..50u32 {
            let d = consumer.next().await.unwrap().unwrap();
            assert_eq!(d.data, i.to_be_bytes(), "in order");
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        // Acknowledged on the queue's own node: nothing left there.
        let q = on_b
            .queue_declare("lives-on-b".into(), passive, FieldTable::default())
            .await
            .unwrap();
        assert_eq!(q.message_count(), 0);
        assert_eq!(q.consumer_count(), 1, "the consumer on the other node");
        on_a.basic_cancel("c".into(), BasicCancelOptions::default())
            .await
            .unwrap();
        publish_confirmed(&on_a, "lives-on-b", b"x").await;
        assert_eq!(
            on_a.queue_purge("lives-on-b".into(), QueuePurgeOptions::default())
                .await
                .unwrap(),
            1
        );
        on_a.queue_delete("lives-on-b".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        let err = on_b
            .queue_declare("lives-on-b".into(), passive, FieldTable::default())
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("NOTFOUND"), "{err:?}");

        // Exclusive to a connection on b: a's clients are refused with 405.
        let (_cx, owner) = lapin_channel(b.amqp).await;
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        owner
            .queue_declare("mine".into(), exclusive, FieldTable::default())
            .await
            .unwrap();
        let (_cy, other) = lapin_channel(a.amqp).await;
        let err = other
            .basic_consume(
                "mine".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("RESOURCE_LOCKED"), "{err:?}");

        // A durable queue with persistent messages on b.
        owner
            .queue_declare("stays-on-b".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        for _ in 0..3 {
            publish_confirmed(&on_a, "stays-on-b", b"kept").await;
        }
    });
    // Its home node down: RabbitMQ's 404 from the other node.
    let b = b.kill();
    rt.block_on(async {
        let (_c, on_a) = lapin_channel(a.amqp).await;
        let passive = passive();
        let err = on_a
            .queue_declare("stays-on-b".into(), passive, FieldTable::default())
            .await
            .unwrap_err();
        let text = format!("{err:?}");
        assert!(
            text.contains("home node 'b@localhost' of durable queue 'stays-on-b' in vhost '/' is down or inaccessible"),
            "{text}"
        );
    });
    // Back, with its messages.
    let _b = b.start();
    rt.block_on(async {
        let (_c, on_a) = lapin_channel(a.amqp).await;
        let passive = passive();
        let mut count = None;
        for _ in 0..100 {
            if let Ok(q) = on_a
                .queue_declare("stays-on-b".into(), passive, FieldTable::default())
                .await
            {
                count = Some(q.message_count());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            count,
            Some(3),
            "the queue came back with its persistent messages"
        );
    });
}

/// `x-queue-leader-locator: balanced` places each new queue on the running node with the
/// fewest queues (the declaring node among equals); the client uses it at once, wherever it
/// landed. Without the argument, a queue stays on the declaring node.
#[test]
fn balanced_queues_spread_over_the_running_nodes() {
    use lapin::options::*;
    use lapin::types::AMQPValue;
    let nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = lapin_channel(nodes[0].amqp).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut balanced = FieldTable::default();
        balanced.insert(
            "x-queue-leader-locator".into(),
            AMQPValue::LongString("balanced".into()),
        );
        for q in ["bal-1", "bal-2", "bal-3"] {
            ch.queue_declare(q.into(), durable(), balanced.clone())
                .await
                .unwrap();
            publish_confirmed(&ch, q, q.as_bytes()).await;
            let got = ch
                .basic_get(q.into(), BasicGetOptions::default())
                .await
                .unwrap()
                .expect("the message, from wherever the queue is");
            assert_eq!(got.delivery.data, q.as_bytes());
        }
        ch.queue_declare("local".into(), durable(), FieldTable::default())
            .await
            .unwrap();
    });
    let mut placed = lines(&nodes[0], &["list_queues", "name", "node"]);
    placed.sort();
    assert_eq!(placed[0], "bal-1\tc1@localhost", "the declaring node first");
    let mut homes: Vec<&str> = placed[..3]
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap_or_default())
        .collect();
    homes.sort();
    assert_eq!(homes, ["c1@localhost", "c2@localhost", "c3@localhost"]);
    assert_eq!(placed[3], "local\tc1@localhost");
}

/// Direct reply-to across nodes: a client of one node asks through a queue, a server on the
/// other node answers to the `amq.rabbitmq.reply-to` address it was given, and the reply
/// reaches the asking client on its own node.
#[test]
fn direct_replies_cross_nodes() {
    use futures_lite::StreamExt;
    use lapin::options::*;
    let (a, b) = pair();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_ca, server) = lapin_channel(a.amqp).await;
        server
            .queue_declare(
                "rpc".into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut requests = server
            .basic_consume(
                "rpc".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let (_cb, client) = lapin_channel(b.amqp).await;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let mut replies = client
            .basic_consume(
                "amq.rabbitmq.reply-to".into(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await
            .unwrap();
        for i in 0..3u8 {
            let ask =
                lapin::BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into());
            client
                .basic_publish(
                    "".into(),
                    "rpc".into(),
                    BasicPublishOptions::default(),
                    &[i],
                    ask,
                )
                .await
                .unwrap();
            let request = requests.next().await.unwrap().unwrap();
            let to = request
                .properties
                .reply_to()
                .clone()
                .expect("a reply-to address");
            assert!(to.as_str().starts_with("amq.rabbitmq.reply-to."), "{to}");
            server
                .basic_publish(
                    "".into(),
                    to.as_str().into(),
                    BasicPublishOptions::default(),
                    &[i + 100],
                    lapin::BasicProperties::default(),
                )
                .await
                .unwrap();
            request.ack(BasicAckOptions::default()).await.unwrap();
            let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
                .await
                .expect("the reply crosses to the asking node")
                .unwrap()
                .unwrap();
            assert_eq!(reply.data, [i + 100]);
        }
    });
}

/// `set_cluster_name` through one node names the cluster on every node: in `cluster_status`
/// and in the `cluster_name` clients see in `connection.start`.
#[test]
fn the_cluster_name_is_the_cluster_s() {
    let (a, b) = pair();
    assert_eq!(
        status(&b)["cluster_name"],
        "a@localhost",
        "the first disc node's"
    );
    assert_eq!(
        ok(&a, &["set_cluster_name", "production"]),
        "Setting cluster name to production ...\n"
    );
    eventually("b has the name", Duration::from_secs(10), || {
        status(&b)["cluster_name"] == "production"
    });
    // connection.start, as the first bytes a client reads from b.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(b.amqp).unwrap();
    s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut start = vec![0u8; 4096];
    let n = s.read(&mut start).unwrap();
    let wanted = b"\x0ccluster_nameS\x00\x00\x00\x0aproduction";
    assert!(
        start[..n].windows(wanted.len()).any(|w| w == wanted),
        "cluster_name in connection.start"
    );
}

/// `list_connections` and `list_channels` through one node list the clients of every running
/// node, each row naming its node.
#[test]
fn connections_and_channels_are_listed_across_the_cluster() {
    let (a, b) = pair();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _clients = rt.block_on(async {
        let on_a = lapin_channel(a.amqp).await;
        let on_b = lapin_channel(b.amqp).await;
        (on_a, on_b)
    });
    let mut conns = lines(&a, &["list_connections", "user", "node"]);
    conns.sort();
    assert_eq!(conns, ["guest\ta@localhost", "guest\tb@localhost"]);
    let mut channels = lines(&b, &["list_channels", "pid", "number"]);
    channels.sort();
    assert_eq!(channels.len(), 2, "{channels:?}");
    assert!(channels[0].starts_with("<a@localhost.") && channels[0].ends_with(".1>\t1"));
    assert!(channels[1].starts_with("<b@localhost.") && channels[1].ends_with(".1>\t1"));
    // A consumer on b of a queue on a is listed by a with b's channel.
    rt.block_on(async {
        let (_, ch) = &_clients.0;
        ch.queue_declare("on-a".into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
    });
    // b applies the declaration a moment after a answered it (docs/rabbitmq-behaviour.md,
    // "When other nodes see a change").
    eventually("the queue on b", Duration::from_secs(10), || {
        lines(&b, &["list_queues", "name"]).contains(&"on-a".to_owned())
    });
    let _consumer = rt.block_on(async {
        let (_, ch) = &_clients.1;
        ch.basic_consume(
            "on-a".into(),
            "from-b".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap()
    });
    let consumers = lines(
        &a,
        &[
            "list_consumers",
            "queue_name",
            "channel_pid",
            "consumer_tag",
        ],
    );
    assert_eq!(consumers.len(), 1, "{consumers:?}");
    assert!(
        consumers[0].starts_with("on-a\t<b@localhost.") && consumers[0].ends_with(".1>\tfrom-b"),
        "{consumers:?}"
    );
}

/// The three configuration files of `examples/cluster`, which the README points readers at,
/// form one cluster as they are; only their ports move to free ones (the files use the
/// standard ports, and each node's listeners are given on its command line here).
#[test]
fn the_example_cluster_files_form_a_cluster() {
    let ports: Vec<u16> = (0..3).map(|_| support::free_port()).collect();
    let texts: Vec<String> = (1..=3)
        .map(|i| {
            let path = format!(
                "{}/../../examples/cluster/n{i}.toml",
                env!("CARGO_MANIFEST_DIR")
            );
            let mut text = std::fs::read_to_string(path).unwrap();
            for (j, port) in ports.iter().enumerate() {
                let (from, to) = (25672 + j, format!("{port}"));
                text = text.replace(
                    &format!("n{}@localhost:{from}", j + 1),
                    &format!("n{}@localhost:{to}", j + 1),
                );
            }
            text
        })
        .collect();
    assert!(
        texts.iter().all(|t| !t.contains("localhost:2567")),
        "every peer's port moved"
    );
    let nodes: Vec<Node> = texts
        .into_iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (config, port))| {
            Node::start_as(support::Spec {
                name: format!("n{}@localhost", i + 1),
                cluster_port: *port,
                config: Some(config),
                dir: support::scratch_dir("example-cluster"),
                netns: None,
            })
        })
        .collect();
    let names = serde_json::json!(["n1@localhost", "n2@localhost", "n3@localhost"]);
    for node in &nodes {
        let mut last = serde_json::Value::Null;
        let formed = support::within(Duration::from_secs(30), || {
            last = status(node);
            last["disk_nodes"] == names && last["running_nodes"] == names
        });
        assert!(formed, "{}: {last}", node.name());
    }
}

/// cluster_status lists every running node's resource alarms, as rabbitmqctl does.
#[test]
fn every_node_s_alarms_show_in_cluster_status() {
    // No disk has this much free: each node raises its disk alarm.
    let nodes = cluster_with(2, "[alarms]\ndisk_free_limit_bytes = 1000000000000000000\n");
    let want = serde_json::json!([
        {"node": "c1@localhost", "resource": "disk", "type": "resource_limit"},
        {"node": "c2@localhost", "resource": "disk", "type": "resource_limit"},
    ]);
    let mut last = serde_json::Value::Null;
    let both = support::within(Duration::from_secs(20), || {
        last = status(&nodes[0])["alarms"].clone();
        last == want
    });
    assert!(both, "{last}");
    let text = ok(&nodes[1], &["-q", "cluster_status"]);
    assert!(
        text.contains(
            "Alarms\n\nFree disk space alarm on node c1@localhost\nFree disk space alarm on node c2@localhost\n"
        ),
        "{text}"
    );
}
