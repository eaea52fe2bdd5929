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

/// Each node's listeners, gathered for `cluster_status`: a row `[node, interface, port,
/// protocol, purpose]` for each.
pub const LISTENERS: &str = "listeners";

/// Whether a node answers other nodes' requests for its rows of `verb`.
pub fn answers(verb: &str) -> bool {
    is_gathered(verb) || verb == ALARMS || verb == LISTENERS
}

/// Where this node is: its name and the addresses it listens on.
pub struct Here<'a> {
    pub me: &'a str,
    pub amqp: SocketAddr,
    pub cluster: SocketAddr,
}

/// This node's listener rows (see [`LISTENERS`]).
pub fn own_listeners(here: &Here<'_>) -> Vec<Vec<Value>> {
    [
        (
            here.cluster,
            "clustering",
            "inter-node and CLI tool communication",
        ),
        (here.amqp, "amqp", "AMQP 0-9-1"),
    ]
    .into_iter()
    .map(|(addr, protocol, purpose)| {
        vec![
            here.me.into(),
            addr.ip().to_string().into(),
            addr.port().into(),
            protocol.into(),
            purpose.into(),
        ]
    })
    .collect()
}

/// A listener row (see [`LISTENERS`]) as rabbitmqctl's JSON writes it.
fn listener_map(r: &[Value]) -> Value {
    let field = |i: usize| r.get(i).cloned().unwrap_or_default();
    serde_json::json!({
        "node": field(0),
        "interface": field(1),
        "port": field(2),
        "protocol": field(3),
        "purpose": field(4),
    })
}

/// One node's listener rows as rabbitmqctl's JSON writes them (`status`).
pub fn listener_maps(rows: &[Vec<Value>]) -> Value {
    Value::Array(rows.iter().map(|r| listener_map(r)).collect())
}

/// Every node's listener rows, by node, as `cluster_status --formatter json` writes them.
pub fn listeners_by_node(rows: &[Vec<Value>]) -> Value {
    let mut by_node = serde_json::Map::new();
    for r in rows {
        let node = r.first().and_then(Value::as_str).unwrap_or_default();
        if let Value::Array(list) = by_node
            .entry(node.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(listener_map(r));
        }
    }
    Value::Object(by_node)
}

/// Listener rows as rabbitmqctl's text lists them.
pub fn listener_lines(rows: &[Vec<Value>]) -> String {
    let text = |r: &Vec<Value>, i: usize| match r.get(i) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    rows.iter()
        .map(|r| {
            format!(
                "Node: {}, interface: {}, port: {}, protocol: {}, purpose: {}",
                text(r, 0),
                text(r, 1),
                text(r, 2),
                text(r, 3),
                text(r, 4)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
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

/// This node's rows for `verb`.
pub async fn local_rows(verb: &str, admin: &Admin, here: &Here<'_>) -> Vec<Vec<Value>> {
    let (me, amqp) = (here.me, here.amqp);
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
        LISTENERS => own_listeners(here),
        _ => Vec::new(),
    }
}
