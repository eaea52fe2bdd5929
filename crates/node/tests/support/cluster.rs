//! Clusters for tests: nodes formed from a peers list, or joined as the article joins them,
//! and the warrenctl calls that check on them.

use super::{Node, Spec, eventually, free_port, scratch_dir, within};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;

/// How long a change may wait for a majority in these clusters.
pub const TIMEOUT_MS: u64 = 2_000;

/// Starts `n` nodes named c1@localhost... that form a cluster from their peers list, and waits
/// until each sees all of them as running disc nodes.
pub fn cluster(n: usize) -> Vec<Node> {
    cluster_with(n, "")
}

/// [`cluster`], with `extra` added to every node's configuration file.
pub fn cluster_with(n: usize, extra: &str) -> Vec<Node> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let names: Vec<String> = (1..=n).map(|i| format!("c{i}@localhost")).collect();
    let peers: Vec<String> = names
        .iter()
        .zip(&ports)
        .map(|(name, port)| format!("\"{name}:{port}\""))
        .collect();
    let config = format!(
        "[cluster]\npeers = [{}]\nmetadata_timeout_ms = {TIMEOUT_MS}\n{extra}",
        peers.join(", ")
    );
    let nodes: Vec<Node> = names
        .iter()
        .zip(&ports)
        .map(|(name, port)| {
            Node::start_as(Spec {
                name: name.clone(),
                cluster_port: *port,
                config: Some(config.clone()),
                dir: scratch_dir("cluster"),
                netns: None,
            })
        })
        .collect();
    for node in &nodes {
        let mut last = serde_json::Value::Null;
        let formed = within(Duration::from_secs(30), || {
            last = status(node);
            last["disk_nodes"] == serde_json::json!(names)
                && last["running_nodes"] == serde_json::json!(names)
        });
        assert!(
            formed,
            "{} never saw the cluster formed: {last}",
            node.name()
        );
    }
    nodes
}

/// `cluster_status --formatter json` on a node (null while its application is not running).
pub fn status(node: &Node) -> serde_json::Value {
    let (code, out, _) = node.ctl(&["cluster_status", "--formatter", "json"]);
    if code != 0 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
}

pub fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

/// The arguments of a quorum queue declaration.
pub fn quorum_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    t
}

pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// A node alone, named `name`.
pub fn alone(name: &str) -> Node {
    Node::start_as(Spec {
        name: name.into(),
        cluster_port: 0,
        config: Some(format!("[cluster]\nmetadata_timeout_ms = {TIMEOUT_MS}\n")),
        dir: scratch_dir("cluster"),
        netns: None,
    })
}

pub fn ok(node: &Node, args: &[&str]) -> String {
    let (code, out, err) = node.ctl(args);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    out
}

pub fn pair() -> (Node, Node) {
    let a = alone("a@localhost");
    let b = alone("b@localhost");
    ok(&b, &["stop_app"]);
    ok(&b, &["join_cluster", &a.name()]);
    ok(&b, &["start_app"]);
    for node in [&a, &b] {
        eventually("two disc nodes", Duration::from_secs(20), || {
            status(node)["disk_nodes"] == serde_json::json!(["a@localhost", "b@localhost"])
        });
    }
    (a, b)
}

/// The index in `nodes` of the metadata leader's node, from the last leader each node logged
/// (`metadata leader leader=<name>:<port>`).
pub fn metadata_leader(nodes: &[Node]) -> usize {
    let mut seen = None;
    eventually("a metadata leader", Duration::from_secs(20), || {
        for n in nodes {
            while let Ok(line) = n.log.try_recv() {
                if let Some(at) = line.find("leader=") {
                    let addr = line[at + 7..].split_whitespace().next().unwrap_or("");
                    seen = nodes
                        .iter()
                        .position(|m| addr.starts_with(&format!("{}:", m.spec.name)));
                }
            }
        }
        seen.is_some()
    });
    seen.unwrap_or_default()
}
