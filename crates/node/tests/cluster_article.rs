//! The article's flow on three hosts, as an operator types it: three nodes started alone on
//! hosts m1, m2 and m3 (network namespaces that name each other in their hosts files, each
//! node on the default cluster port), then on m2 and m3 `stop_app`, `join_cluster` m1 (m2
//! with `--ram`) and `start_app`, and `cluster_status`, with warrenctl naming each node only
//! as `warren@mN`. Needs root and iproute2, which the test command installs; everything is
//! removed when the test ends.

mod support;

use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;
use support::cluster::durable;
use support::net::Net;
use support::{Node, Spec, eventually, lapin_channel_at, publish_confirmed, scratch_dir};

const HOSTS: [&str; 3] = ["m1", "m2", "m3"];

fn ok(node: &Node, args: &[&str]) -> String {
    let (code, out, err) = node.ctl_by_name(args);
    assert_eq!(code, 0, "{args:?} on {}: {out}{err}", node.spec.name);
    out
}

fn status(node: &Node) -> serde_json::Value {
    let (code, out, _) = node.ctl_by_name(&["cluster_status", "--formatter", "json"]);
    if code != 0 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
}

fn names(nodes: &[&str]) -> serde_json::Value {
    serde_json::json!(
        nodes
            .iter()
            .map(|h| format!("warren@{h}"))
            .collect::<Vec<_>>()
    )
}

#[test]
fn the_article_s_flow_on_three_hosts() {
    let mut net = Net::new();
    net.name_hosts(&HOSTS);
    let nodes: Vec<Node> = (1..=3)
        .map(|i| {
            Node::start_as(Spec {
                name: format!("warren@m{i}"),
                cluster_port: 25672,
                config: None,
                dir: scratch_dir("article"),
                netns: Some((net.space(&format!("n{i}")), format!("10.201.0.{i}"))),
            })
        })
        .collect();
    let (m1, m2, m3) = (&nodes[0], &nodes[1], &nodes[2]);

    assert_eq!(
        ok(m2, &["stop_app"]),
        "Stopping warren application on node warren@m2 ...\n"
    );
    let out = ok(m2, &["join_cluster", "--ram", "warren@m1"]);
    assert!(
        out.starts_with("Clustering node warren@m2 with warren@m1"),
        "{out}"
    );
    ok(m2, &["start_app"]);
    ok(m3, &["stop_app"]);
    ok(m3, &["join_cluster", "warren@m1"]);
    ok(m3, &["start_app"]);
    for node in &nodes {
        eventually(
            "all three in cluster_status",
            Duration::from_secs(30),
            || {
                let s = status(node);
                s["disk_nodes"] == names(&["m1", "m3"])
                    && s["ram_nodes"] == names(&["m2"])
                    && s["running_nodes"] == names(&HOSTS)
            },
        );
    }
    // Every running node's listeners, by node; partitions as RabbitMQ 4 (Khepri) reports
    // them, never any.
    let s = status(m2);
    for (i, host) in HOSTS.iter().enumerate() {
        let listeners = &s["listeners"][format!("warren@{host}")];
        let want = |protocol: &str, port: u64| {
            listeners.as_array().is_some_and(|ls| {
                ls.iter().any(|l| {
                    l["protocol"] == protocol
                        && l["port"] == port
                        && l["interface"] == format!("10.201.0.{}", i + 1)
                })
            })
        };
        assert!(
            want("amqp", 5672) && want("clustering", 25672),
            "{host}: {s}"
        );
    }
    assert_eq!(s["partitions"], serde_json::json!({}), "{s}");
    let text = ok(m1, &["cluster_status"]);
    assert!(
        text.contains(
            "Disk Nodes\n\nwarren@m1\nwarren@m3\n\nRAM Nodes\n\nwarren@m2\n\nRunning Nodes\n\nwarren@m1\nwarren@m2\nwarren@m3\n"
        ),
        "{text}"
    );
    for i in 1..=3 {
        let line = format!(
            "Node: warren@m{i}, interface: 10.201.0.{i}, port: 5672, protocol: amqp, purpose: AMQP 0-9-1"
        );
        assert!(text.contains(&line), "{line} in {text}");
    }

    // Joining a cluster the node is already in succeeds and leaves its type alone, as
    // rabbitmqctl's does.
    ok(m3, &["stop_app"]);
    ok(m3, &["join_cluster", "--ram", "warren@m1"]);
    ok(m3, &["start_app"]);
    eventually("m3 still a disc node", Duration::from_secs(30), || {
        let s = status(m1);
        s["disk_nodes"] == names(&["m1", "m3"]) && s["running_nodes"] == names(&HOSTS)
    });

    // One broker: a queue declared through m1, published to through m3, read through m2.
    ok(m1, &["add_user", "app", "app-secret"]);
    ok(m1, &["set_permissions", "app", ".*", ".*", ".*"]);
    let url = |i: usize| format!("amqp://app:app-secret@10.201.0.{i}:5672/%2f");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c1, on_m1) = lapin_channel_at(&url(1)).await;
        on_m1
            .queue_declare("orders".into(), durable(), FieldTable::default())
            .await
            .unwrap();
        let (_c3, on_m3) = lapin_channel_at(&url(3)).await;
        on_m3
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..5u8 {
            publish_confirmed(&on_m3, "orders", &[i]).await;
        }
        let (_c2, on_m2) = lapin_channel_at(&url(2)).await;
        for i in 0..5u8 {
            let got = on_m2
                .basic_get("orders".into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
                .expect("a message through m2");
            assert_eq!(got.delivery.data, [i]);
        }
    });

    // A disc node becomes a RAM node: m1 is then the only voter, and alone takes changes.
    ok(m3, &["stop_app"]);
    ok(m3, &["change_cluster_node_type", "ram"]);
    ok(m3, &["start_app"]);
    eventually("m3 a RAM node", Duration::from_secs(30), || {
        let s = status(m1);
        s["disk_nodes"] == names(&["m1"])
            && s["ram_nodes"] == names(&["m2", "m3"])
            && s["running_nodes"] == names(&HOSTS)
    });
    ok(m2, &["stop_app"]);
    ok(m3, &["stop_app"]);
    ok(m1, &["add_vhost", "while-the-ram-nodes-were-stopped"]);
}
