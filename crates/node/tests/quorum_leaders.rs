//! Where quorum queues' leaders are, and moving them: `rebalance quorum` spreads the leaders
//! of queues that all started on one node over the running nodes, as rabbitmq-queues does.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::cluster::{cluster, durable, quorum_args};
use support::{Node, eventually, lapin_channel};

/// How many quorum queues each node leads, as `list_queues name leader` shows them.
fn leaders(node: &Node) -> BTreeMap<String, usize> {
    let (code, out, err) = node.ctl(&["-q", "list_queues", "name", "type", "leader"]);
    assert_eq!(code, 0, "{err}");
    let mut led = BTreeMap::new();
    for line in out.lines().skip(1) {
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.get(1) == Some(&"quorum") {
            *led.entry(cells.get(2).unwrap_or(&"").to_string())
                .or_default() += 1;
        }
    }
    led
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[test]
fn rebalance_spreads_the_leaders_over_the_running_nodes() {
    let nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = lapin_channel(nodes[0].amqp).await;
        let args = quorum_args();
        for i in 0..6 {
            ch.queue_declare(format!("qq{i}").as_str().into(), durable(), args.clone())
                .await
                .unwrap();
        }
    });
    // Declared through c1 (client-local): c1 leads all six.
    eventually("c1 to lead every queue", Duration::from_secs(20), || {
        leaders(&nodes[1]) == counts(&[("c1@localhost", 6)])
    });
    // A leader steps down for a member that stands only once it has led longer than its
    // lease (the longest election timeout, 1.2 s).
    std::thread::sleep(Duration::from_secs(2));
    let (code, out, err) = nodes[1].ctl(&["rebalance", "quorum"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("Re-balancing leaders of quorum queues...\n"),
        "{out}"
    );
    let even = counts(&[
        ("c1@localhost", 2),
        ("c2@localhost", 2),
        ("c3@localhost", 2),
    ]);
    assert_eq!(leaders(&nodes[2]), even, "{out}");
    for node in ["c1@localhost", "c2@localhost", "c3@localhost"] {
        assert!(out.contains(node), "{out}");
    }
    // Balanced already: nothing moves, and the table says so.
    let (code, json, err) = nodes[0].ctl(&["rebalance", "quorum", "--formatter", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["result"], "ok", "{json}");
    let mut rows: Vec<(String, u64)> = report["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[0][1].as_str().unwrap().to_owned(),
                row[1][1].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("c1@localhost".to_owned(), 2),
            ("c2@localhost".to_owned(), 2),
            ("c3@localhost".to_owned(), 2)
        ]
    );
    assert_eq!(leaders(&nodes[0]), even);
    // No classic queue is replicated: `classic` moves nothing and reports the same leaders;
    // `-q` drops the banner only.
    let (code, out, err) = nodes[2].ctl(&["-q", "rebalance", "classic"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("\x1b(0l"), "{out:?}");
    assert!(out.contains(" c2@localhost \x1b(0x\x1b(B 2 "), "{out:?}");
    assert_eq!(leaders(&nodes[0]), even);
    // Streams are not queues warren has.
    let (code, _, err) = nodes[0].ctl(&["rebalance", "stream"]);
    assert_eq!(code, 69);
    assert!(
        err.contains("type stream is not supported. Try one of all, classic, quorum."),
        "{err}"
    );
}
