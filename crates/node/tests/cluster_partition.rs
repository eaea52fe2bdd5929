//! A partition, made with network namespaces: three nodes, each in a namespace of its own
//! joined to a switch (a bridge in another namespace), and the test's own end of the switch
//! for its clients, on 10.201.0.0/24 with no route out. Cutting a node's cable leaves it
//! alone, a minority, and the other two a majority. Needs root and iproute2, which the test
//! command installs; everything is removed when the test ends, even if it fails.

mod support;

use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;
use support::cluster::{durable, metadata_leader, passive};
use support::net::Net;
use support::{Node, Spec, eventually, lapin_channel_at, scratch_dir};

const CLUSTER_PORT: u16 = 25672;
const USER: &str = "app";
const PASSWORD: &str = "app-secret";

fn name(i: usize) -> String {
    format!("p{i}@10.201.0.{i}")
}

fn ok(node: &Node, args: &[&str]) {
    let (code, out, err) = node.ctl(args);
    assert_eq!(code, 0, "{args:?} on {}: {out}{err}", node.spec.name);
}

/// `list_vhosts` on a node, sorted (none: it does not answer).
fn vhosts(node: &Node) -> Option<Vec<String>> {
    let (code, out, _) = node.ctl(&["-q", "list_vhosts"]);
    (code == 0).then(|| {
        let mut v: Vec<String> = out.lines().skip(1).map(str::to_owned).collect();
        v.sort();
        v
    })
}

/// A channel as the test's user, in confirm mode.
async fn channel(node: &Node) -> (lapin::Connection, lapin::Channel) {
    let (conn, ch) = lapin_channel_at(&format!("amqp://{USER}:{PASSWORD}@{}/%2f", node.amqp)).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, ch)
}

/// Publishes `n` persistent messages and counts those confirmed; with `mandatory`, also
/// those that came back unroutable.
async fn publish(ch: &lapin::Channel, queue: &str, n: u32, mandatory: bool) -> (u32, u32) {
    let mut confirms = Vec::new();
    let opts = BasicPublishOptions {
        mandatory,
        ..Default::default()
    };
    for i in 0..n {
        let props = lapin::BasicProperties::default().with_delivery_mode(2);
        confirms.push(
            ch.basic_publish("".into(), queue.into(), opts, &i.to_be_bytes(), props)
                .await
                .unwrap(),
        );
    }
    let (mut acked, mut returned) = (0, 0);
    for c in confirms {
        let c = c.await.unwrap();
        if c.is_ack() {
            acked += 1;
        }
        if c.take_message().is_some() {
            returned += 1;
        }
    }
    (acked, returned)
}

async fn count(node: &Node, queue: &str) -> Option<u32> {
    let url = format!("amqp://{USER}:{PASSWORD}@{}/%2f", node.amqp);
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .ok()?;
    let ch = conn.create_channel().await.ok()?;
    let q = ch
        .queue_declare(queue.into(), passive(), FieldTable::default())
        .await
        .ok()?;
    Some(q.message_count())
}

/// The metadata leader's node is cut off. The two others elect a leader and take changes;
/// the one alone refuses them (75, in the configured time); publishes to a queue on the
/// majority side are confirmed, while a queue on the node cut off is unroutable from the
/// others. Joined again, every node has one topology (the majority's: nothing the minority
/// was asked for), and every confirmed message is there.
#[test]
fn the_majority_side_of_a_partition_goes_on_and_the_minority_changes_nothing() {
    let net = Net::new();
    let peers: Vec<String> = (1..=3)
        .map(|i| format!("\"{}:{CLUSTER_PORT}\"", name(i)))
        .collect();
    let config = format!(
        "[cluster]\npeers = [{}]\nmetadata_timeout_ms = 2000\n",
        peers.join(", ")
    );
    let nodes: Vec<Node> = (1..=3)
        .map(|i| {
            Node::start_as(Spec {
                name: name(i),
                cluster_port: CLUSTER_PORT,
                config: Some(config.clone()),
                dir: scratch_dir("partition"),
                netns: Some((net.space(&format!("n{i}")), format!("10.201.0.{i}"))),
            })
        })
        .collect();
    for node in &nodes {
        eventually("the cluster to form", Duration::from_secs(30), || {
            let (code, out, _) = node.ctl(&["cluster_status", "--formatter", "json"]);
            code == 0
                && serde_json::from_str::<serde_json::Value>(&out)
                    .is_ok_and(|s| s["running_nodes"].as_array().is_some_and(|r| r.len() == 3))
        });
    }
    // guest may only log in over loopback, and the test's clients come over the switch.
    ok(&nodes[0], &["add_user", USER, PASSWORD]);
    ok(&nodes[0], &["set_permissions", USER, ".*", ".*", ".*"]);
    let cut = metadata_leader(&nodes);
    let (a, b) = ((cut + 1) % 3, (cut + 2) % 3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, on_a) = channel(&nodes[a]).await;
        let (_d, on_cut) = channel(&nodes[cut]).await;
        on_a.queue_declare("on-majority".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        on_cut
            .queue_declare("on-minority".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        assert_eq!(publish(&on_a, "on-majority", 100, false).await, (100, 0));
        assert_eq!(publish(&on_a, "on-minority", 100, false).await, (100, 0));
    });

    net.set_cable(cut + 1, false);
    eventually(
        "the majority to take a change",
        Duration::from_secs(60),
        || nodes[b].ctl(&["add_vhost", "during"]).0 == 0,
    );
    let (code, _, err) = nodes[cut].ctl(&["add_vhost", "minority-change"]);
    assert_eq!(code, 75, "the minority refuses: {err}");
    rt.block_on(async {
        let (_c, on_a) = channel(&nodes[a]).await;
        assert_eq!(publish(&on_a, "on-majority", 100, false).await, (100, 0));
        // The queue's node cannot be reached: unroutable, as in RabbitMQ.
        assert_eq!(publish(&on_a, "on-minority", 10, true).await, (10, 10));
    });

    net.set_cable(cut + 1, true);
    let want: Vec<String> = vec!["/".into(), "during".into()];
    for node in &nodes {
        eventually("one topology again", Duration::from_secs(60), || {
            vhosts(node).as_ref() == Some(&want)
        });
    }
    rt.block_on(async {
        for node in &nodes {
            let mut counts = (None, None);
            for _ in 0..300 {
                counts = (
                    count(node, "on-majority").await,
                    count(node, "on-minority").await,
                );
                if counts == (Some(200), Some(100)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(counts, (Some(200), Some(100)), "through {}", node.spec.name);
        }
    });
}
