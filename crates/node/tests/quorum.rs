//! Quorum queues on a 3-node cluster, through clients of different nodes: declared on one,
//! published to with confirms on another, consumed on the third; and they keep every
//! confirmed message when the node their group first chose to lead is killed.

mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;
use support::cluster::{cluster, durable, passive, quorum_args};
use support::{Node, lapin_channel, publish_confirmed};

/// Declares quorum queue `queue` through the node at `amqp` and publishes `n` persistent
/// messages `m0`, `m1`... to it, each confirmed.
async fn declare_and_fill(amqp: std::net::SocketAddr, queue: &str, n: usize) {
    let (_c, ch) = lapin_channel(amqp).await;
    ch.queue_declare(queue.into(), durable(), quorum_args())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..n {
        publish_confirmed(&ch, queue, format!("m{i}").as_bytes()).await;
    }
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

/// Members of one node's quorum directory (one per group it holds).
fn groups_on(node: &Node) -> usize {
    std::fs::read_dir(node.spec.dir.join("data").join("quorum")).map_or(0, |d| d.count())
}

/// The rows of `quorum_status` as (node, state, log index) (`-q`: no banner).
fn members(node: &Node, queue: &str) -> Vec<(String, String, String)> {
    support::cluster::ok(node, &["-q", "quorum_status", queue])
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            (
                cells[0].to_owned(),
                cells[1].to_owned(),
                cells[2].to_owned(),
            )
        })
        .collect()
}

/// rabbitmq-queues' membership verbs through warrenctl: a queue on one node grows to three
/// members (the new ones catch up from the leader), loses its leader's member and then all but
/// one, and keeps every message throughout; each node keeps the group's directory only while it
/// holds a member.
#[test]
fn members_are_added_and_removed_and_the_messages_stay() {
    let nodes = cluster(3);
    let names: Vec<String> = nodes.iter().map(|n| n.spec.name.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = lapin_channel(nodes[0].amqp).await;
        let mut one = quorum_args();
        one.insert("x-quorum-initial-group-size".into(), AMQPValue::LongInt(1));
        ch.queue_declare("grown".into(), durable(), one)
            .await
            .unwrap();
        ch.queue_declare("classic".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..5 {
            publish_confirmed(&ch, "grown", format!("m{i}").as_bytes()).await;
        }
    });
    let status = members(&nodes[0], "grown");
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!((&status[0].0, status[0].1.as_str()), (&names[0], "leader"));
    let leader_log = status[0].2.clone();
    assert_eq!(groups_on(&nodes[1]), 0);

    let (code, out, err) = nodes[2].ctl(&["add_member", "grown", &names[1]]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("Adding a replica for queue grown on node {}...\n", names[1])
    );
    // The new member catches up with the leader's log.
    assert!(support::within(Duration::from_secs(20), || {
        let s = members(&nodes[2], "grown");
        s.len() == 2
            && s[1].0 == names[1]
            && s[1].1 == "follower"
            && s[1].2.parse::<u64>().unwrap_or(0) >= leader_log.parse().unwrap_or(u64::MAX)
    }));
    assert_eq!(groups_on(&nodes[1]), 1);
    // Two members: stopping either loses the majority.
    let (code, _, err) = nodes[1].ctl(&["check_if_node_is_quorum_critical"]);
    assert_eq!(code, 69);
    assert!(
        err.contains(&format!(
            "queue 'grown' in vhost '/' would lose quorum if node {} is stopped",
            names[1]
        )),
        "{err}"
    );

    let out = support::cluster::ok(&nodes[1], &["grow", &names[2], "all"]);
    assert_eq!(
        out,
        format!(
            "Growing all quorum queues on {}...\nvhost\tname\tsize\tresult\n/\tgrown\t3\tok\n",
            names[2]
        )
    );
    let out = support::cluster::ok(&nodes[1], &["check_if_node_is_quorum_critical"]);
    assert!(
        out.ends_with(&format!(
            "Node {} reported no quorum queues with minimum quorum\n",
            names[1]
        )),
        "{out}"
    );

    // The leader's member goes: another leads, and its node drops the group's directory.
    support::cluster::ok(&nodes[2], &["delete_member", "grown", &names[0]]);
    assert!(support::within(Duration::from_secs(20), || {
        let s = members(&nodes[1], "grown");
        s.len() == 2 && s.iter().any(|m| m.1 == "leader")
    }));
    assert!(support::within(Duration::from_secs(10), || groups_on(
        &nodes[0]
    ) == 0));
    let out = support::cluster::ok(&nodes[0], &["-q", "shrink", &names[1]]);
    assert_eq!(out, "vhost\tname\tsize\tresult\n/\tgrown\t1\tok\n");
    let out = support::cluster::ok(&nodes[0], &["-q", "shrink", &names[2]]);
    assert_eq!(
        out,
        "vhost\tname\tsize\tresult\n/\tgrown\t1\terror: the last node cannot be removed\n"
    );
    let out = support::cluster::ok(&nodes[0], &["-q", "shrink", &names[2], "--errors-only"]);
    assert_eq!(
        out,
        "vhost\tname\tsize\tresult\n/\tgrown\t1\terror: the last node cannot be removed\n"
    );

    // Every message is still there, through a node that holds no member.
    rt.block_on(async {
        until_count(&nodes[0], "grown", 5).await;
        let bodies = take(&nodes[0], "grown", 5).await;
        assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    });

    // Refusals, in rabbitmq-queues' words.
    let (code, _, err) = nodes[0].ctl(&["add_member", "classic", &names[1]]);
    assert_eq!(
        (code, err.as_str()),
        (69, "Error:\nCannot add members to a classic queue\n")
    );
    let (code, _, err) = nodes[0].ctl(&["add_member", "missing", &names[1]]);
    assert_eq!((code, err.as_str()), (69, "Error:\nnot_found\n"));
    let (code, _, err) = nodes[0].ctl(&["add_member", "grown", "nowhere@localhost"]);
    assert_eq!((code, err.as_str()), (69, "Error:\nnode_not_running\n"));
    let (code, _, err) = nodes[0].ctl(&["quorum_status", "classic"]);
    assert_eq!(
        (code, err.as_str()),
        (69, "Error:\nCannot get quorum status of a classic queue\n")
    );
    let (code, _, err) = nodes[0].ctl(&["grow", &names[0], "some"]);
    assert_eq!(code, 64);
    assert!(
        err.starts_with("Error (argument validation): \"strategy 'some' is not recognised.\""),
        "{err}"
    );
    let (code, _, err) = nodes[0].ctl(&["delete_member", "grown", &names[2]]);
    assert_eq!((code, err.as_str()), (69, "Error:\nlast_node\n"));
}

/// A consumer holding unacknowledged messages when the leader's node dies: the new leader sends
/// again whatever was out (its predecessor may have died before sending some), and the
/// consumer's channel, which holds them already, drops those copies. Nothing arrives twice, and
/// the queue goes on.
#[test]
fn a_new_leader_does_not_deliver_again_what_a_consumer_holds() {
    let mut nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // client-local: the queue's first leader is the declaring node's member.
    rt.block_on(declare_and_fill(nodes[0].amqp, "held", 5));
    assert!(nodes[0].logged_within("leads quorum queue", Duration::from_secs(5)));
    let consumer_at = nodes[1].amqp;
    let (conn, ch, mut consumer) = rt.block_on(async move {
        let (conn, ch) = lapin_channel(consumer_at).await;
        ch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
        let consumer = ch
            .basic_consume(
                "held".into(),
                "holder".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        (conn, ch, consumer)
    });
    let mut tags = Vec::new();
    rt.block_on(async {
        while tags.len() < 5 {
            let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
                .await
                .expect("the five messages")
                .expect("a delivery")
                .expect("not an error");
            assert!(!d.redelivered);
            tags.push(d.delivery_tag);
        }
    });
    let _down = nodes.remove(0).kill();
    assert!(
        nodes
            .iter()
            .any(|n| n.logged_within("leads quorum queue", Duration::from_secs(20))),
        "a new leader"
    );
    rt.block_on(async {
        // The takeover's copies of what the consumer holds do not reach it.
        let again = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await;
        assert!(again.is_err(), "delivered again: {again:?}");
        for tag in tags {
            ch.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
        }
        let (_p, publisher) = lapin_channel(nodes[1].amqp).await;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        publish_confirmed(&publisher, "held", b"after").await;
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("the next message")
            .expect("a delivery")
            .expect("not an error");
        assert_eq!((d.data.as_slice(), d.redelivered), (&b"after"[..], false));
        d.ack(BasicAckOptions::default()).await.unwrap();
        let _ = conn.close(200, "bye".into()).await;
        until_count(&nodes[1], "held", 0).await;
    });
}

/// Time passes on an idle quorum queue as on a classic one, with no command to carry it: its
/// messages' TTL runs out, and unused it expires (`x-expires`). The leader proposes a tick
/// when the replicas' next deadline is due, so every replica expires the same messages.
#[test]
fn an_idle_quorum_queue_expires_its_messages_and_itself() {
    let node = Node::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = lapin_channel(node.amqp).await;
        // Expired messages are dead-lettered to a classic queue: counting that one does not
        // touch the quorum queue.
        ch.queue_declare("dlq".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        let mut ttl = quorum_args();
        ttl.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        ttl.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString("dlq".into()),
        );
        ttl.insert("x-message-ttl".into(), AMQPValue::LongInt(300));
        ch.queue_declare("ttl".into(), durable(), ttl)
            .await
            .unwrap();
        let mut expires = quorum_args();
        expires.insert("x-expires".into(), AMQPValue::LongInt(1000));
        ch.queue_declare("expiring".into(), durable(), expires)
            .await
            .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        publish_confirmed(&ch, "ttl", b"soon gone").await;
    });
    std::thread::sleep(Duration::from_millis(2_500));
    rt.block_on(async {
        assert_eq!(count(&node, "dlq").await, Some(1), "the message expired");
        assert_eq!(count(&node, "ttl").await, Some(0));
        let (_c, ch) = lapin_channel(node.amqp).await;
        let err = ch
            .queue_declare("expiring".into(), passive(), FieldTable::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NOT_FOUND - no queue 'expiring' in vhost '/'"),
            "{err}"
        );
    });
}

/// A node restarted with a quorum queue it alone holds: its member comes back as the leader it
/// was, takes over, and serves the messages it confirmed.
#[test]
fn a_quorum_queue_held_by_one_node_serves_again_after_kill_9() {
    let node = Node::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(declare_and_fill(node.amqp, "alone", 3));
    let node = node.kill_and_restart();
    rt.block_on(async {
        let got = take(&node, "alone", 3).await;
        assert_eq!(got, ["m0", "m1", "m2"]);
    });
}

/// A member whose files are damaged (its snapshot overwritten while its node was down) is set
/// aside and rebuilt from the other members: it comes back as a follower with the whole log,
/// and the queue keeps every message.
#[test]
fn a_member_with_damaged_files_is_rebuilt_from_the_others() {
    let mut nodes = cluster(3);
    let names: Vec<String> = nodes.iter().map(|n| n.spec.name.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(declare_and_fill(nodes[0].amqp, "mended", 5));
    let damaged = nodes.remove(2);
    let spec_dir = damaged.spec.dir.clone();
    let stopped = damaged.kill();
    let groups = spec_dir.join("data").join("quorum");
    let member = std::fs::read_dir(&groups)
        .unwrap()
        .flatten()
        .next()
        .expect("the member's directory")
        .path();
    std::fs::write(member.join("snapshot"), b"not a snapshot").unwrap();
    nodes.push(stopped.start());
    assert!(
        nodes[2].logged_within(
            "rebuilding it from the other members",
            Duration::from_secs(20)
        ),
        "the damage is seen"
    );
    assert!(
        nodes[2].logged_within(
            "was rebuilt from the other members",
            Duration::from_secs(30)
        ),
        "the member comes back"
    );
    assert!(support::within(Duration::from_secs(20), || {
        let s = members(&nodes[0], "mended");
        let leader_log = s.iter().find(|m| m.1 == "leader").map(|m| m.2.clone());
        s.len() == 3
            && s.iter()
                .any(|m| m.0 == names[2] && m.1 == "follower" && Some(m.2.clone()) == leader_log)
    }));
    // What was damaged is kept aside, not removed.
    let kept = std::fs::read_dir(&groups)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
        .count();
    assert_eq!(kept, 1);
    rt.block_on(async {
        let got = take(&nodes[2], "mended", 5).await;
        assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    });
    // Started again, the rebuilt member numbers its entries above those the others remember
    // of it (the record of its starts was in the directory set aside): more than they
    // remember, proposed through it, then one more after its restart, confirmed.
    rt.block_on(declare_and_fill(nodes[2].amqp, "mended", 20));
    let node = nodes.remove(2).kill_and_restart();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            declare_and_fill(node.amqp, "mended", 1),
        )
        .await
        .expect("a publish through the restarted member is confirmed");
        let got = take(&node, "mended", 21).await;
        let mut want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        want.push("m0".to_owned());
        assert_eq!(got, want);
    });
}

/// A node that holds no member of a quorum queue reaches it through a member, and through
/// another when that one's node dies: its publisher and its consumer go on.
#[test]
fn a_node_without_a_member_goes_through_another_when_one_dies() {
    let mut nodes = cluster(4);
    let names: Vec<String> = nodes.iter().map(|n| n.spec.name.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(declare_and_fill(nodes[0].amqp, "spread", 0));
    let held: Vec<String> = members(&nodes[0], "spread")
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(held.len(), 3, "{held:?}");
    let outside = (0..4).find(|i| !held.contains(&names[*i])).unwrap();
    // Its handle goes through the first member it can reach: the first placed.
    let first = (0..4).find(|i| names[*i] == held[0]).unwrap();
    let at = nodes[outside].amqp;
    let (conn, ch, mut consumer) = rt.block_on(async move {
        let (conn, ch) = lapin_channel(at).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let consumer = ch
            .basic_consume(
                "spread".into(),
                "outside".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        (conn, ch, consumer)
    });
    let round = |ch: &lapin::Channel, consumer: &mut lapin::Consumer, tag: &'static str| {
        let (ch, consumer) = (ch.clone(), consumer);
        rt.block_on(async move {
            for i in 0..3 {
                publish_confirmed(&ch, "spread", format!("{tag}{i}").as_bytes()).await;
            }
            let mut got = Vec::new();
            while got.len() < 3 {
                let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
                    .await
                    .unwrap_or_else(|_| panic!("only {got:?} arrived"))
                    .expect("a delivery")
                    .expect("not an error");
                let body = String::from_utf8_lossy(&d.data).into_owned();
                d.ack(BasicAckOptions::default()).await.unwrap();
                // An acknowledgement still on its way when a leader died is lost with it: the
                // next leader sends that message again, marked redelivered.
                if !body.starts_with(tag) {
                    assert!(d.redelivered, "{body} came again unmarked");
                    continue;
                }
                got.push(body);
            }
            got
        })
    };
    assert_eq!(round(&ch, &mut consumer, "a"), ["a0", "a1", "a2"]);
    let _down = nodes.remove(first).kill();
    let outside = if outside > first {
        outside - 1
    } else {
        outside
    };
    assert!(
        nodes[outside].logged_within(
            &format!("node down or its broker stopped node={}", names[first]),
            Duration::from_secs(20)
        ),
        "the node without a member sees the first member's node go"
    );
    assert_eq!(round(&ch, &mut consumer, "b"), ["b0", "b1", "b2"]);
    rt.block_on(async {
        until_count(&nodes[outside], "spread", 0).await;
        let _ = conn.close(200, "bye".into()).await;
    });
}
