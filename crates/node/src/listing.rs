//! The listings of what runs on each node, connections and channels: every node answers for
//! its own, and the node warrenctl asks gathers the others' rows over the cluster, as
//! rabbitmqctl lists them across the cluster. (Queues, exchanges and bindings are in the
//! replicated metadata, and a queue's counts reach any node, so those listings need no
//! gathering.)

use serde_json::Value;
use std::net::SocketAddr;
use warren_broker::admin::Admin;

pub const CONNECTION_COLUMNS: &[&str] = &[
    "user",
    "peer_host",
    "peer_port",
    "state",
    "vhost",
    "name",
    "node",
];

pub const CHANNEL_COLUMNS: &[&str] = &[
    "pid",
    "connection",
    "name",
    "number",
    "user",
    "vhost",
    "transactional",
    "confirm",
    "consumer_count",
    "messages_unacknowledged",
    "messages_uncommitted",
    "messages_unconfirmed",
    "prefetch_count",
    "global_prefetch_count",
];

/// Whether `verb` lists what runs on each node.
pub fn is_gathered(verb: &str) -> bool {
    matches!(verb, "list_connections" | "list_channels")
}

/// Each node's raised resource alarms, gathered for `cluster_status`: a row `[node,
/// resource]` for each (`memory`, `disk`).
pub const ALARMS: &str = "alarms";

/// Whether a node answers other nodes' requests for its rows of `verb`.
pub fn answers(verb: &str) -> bool {
    is_gathered(verb) || verb == ALARMS
}

/// This node's alarm rows (see [`ALARMS`]); `me` is the node's name.
pub fn own_alarms(admin: &Admin, me: &str) -> Vec<Vec<Value>> {
    let raised = admin.alarms();
    [("memory", raised.memory), ("disk", raised.disk)]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(resource, _)| vec![me.into(), resource.into()])
        .collect()
}

/// Alarm rows (see [`ALARMS`]) as rabbitmqctl's JSON writes alarms.
pub fn alarm_maps(rows: &[Vec<Value>]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "node": r.first().cloned().unwrap_or_default(),
                    "resource": r.get(1).cloned().unwrap_or_default(),
                    "type": "resource_limit",
                })
            })
            .collect(),
    )
}

/// Alarm rows as rabbitmqctl's text lists them; `(none)` without any.
pub fn alarm_lines(rows: &[Vec<Value>]) -> String {
    if rows.is_empty() {
        return "(none)".to_owned();
    }
    rows.iter()
        .map(|r| {
            let node = r.first().and_then(Value::as_str).unwrap_or_default();
            match r.get(1).and_then(Value::as_str) {
                Some("disk") => format!("Free disk space alarm on node {node}"),
                _ => format!("Memory alarm on node {node}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn columns(verb: &str) -> &'static [&'static str] {
    if verb == "list_channels" {
        CHANNEL_COLUMNS
    } else {
        CONNECTION_COLUMNS
    }
}

/// This node's rows for `verb`; `me` is the node's name, `amqp` where clients connect.
pub async fn local_rows(verb: &str, admin: &Admin, amqp: SocketAddr, me: &str) -> Vec<Vec<Value>> {
    match verb {
        "list_connections" => admin
            .connections()
            .into_iter()
            .map(|c| {
                vec![
                    c.user.into(),
                    c.peer.ip().to_string().into(),
                    c.peer.port().into(),
                    "running".into(),
                    c.vhost.into(),
                    c.name.into(),
                    me.into(),
                ]
            })
            .collect(),
        "list_channels" => admin
            .channels()
            .await
            .into_iter()
            .map(|(conn, ch)| {
                // No Erlang pids here: the channel and its connection named as RabbitMQ
                // prints a pid, by node and number.
                vec![
                    format!("<{me}.{}.{}>", conn.id.n, ch.number).into(),
                    format!("<{me}.{}>", conn.id.n).into(),
                    format!("{} -> {amqp} ({})", conn.peer, ch.number).into(),
                    ch.number.into(),
                    conn.user.into(),
                    conn.vhost.into(),
                    ch.transactional.into(),
                    ch.confirm.into(),
                    ch.consumers.into(),
                    ch.unacknowledged.into(),
                    ch.uncommitted.into(),
                    ch.unconfirmed.into(),
                    ch.prefetch.into(),
                    ch.global_prefetch.into(),
                ]
            })
            .collect(),
        ALARMS => own_alarms(admin, me),
        _ => Vec::new(),
    }
}
