//! The listings of a vhost's queues, exchanges, bindings and consumers, with rabbitmqctl's
//! columns (recorded on RabbitMQ 3.10, `docs/rabbitmq-behaviour.md`). The topology is
//! replicated and a queue's counts reach any node, so any node lists the whole cluster's.
//! Arguments are written as rabbitmqctl's JSON writes them, `[key, type, value]` sorted by
//! key; warrenctl prints them as rabbitmqctl's text does.

use serde_json::{Value, json};
use warren_broker::admin::Admin;
use warren_cluster::ctl::{Answer, BINDING_COLUMNS, CONSUMER_COLUMNS};
use warren_meta::definitions::table_to_listing;

pub const QUEUE_COLUMNS: &[&str] = &[
    "name",
    "durable",
    "auto_delete",
    "arguments",
    "policy",
    "exclusive",
    "messages_ready",
    "messages_unacknowledged",
    "messages",
    "consumers",
    "state",
    "type",
    "leader",
    "members",
    "online",
    "node",
];

pub const EXCHANGE_COLUMNS: &[&str] = &[
    "name",
    "type",
    "arguments",
    "policy",
    "durable",
    "auto_delete",
    "internal",
];

/// Whether `verb` lists a vhost's entities.
pub fn is_entity_listing(verb: &str) -> bool {
    matches!(
        verb,
        "list_queues" | "list_exchanges" | "list_bindings" | "list_consumers"
    )
}

fn table(columns: &[&str], rows: Vec<Vec<Value>>) -> Answer {
    Answer::Table {
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rows,
    }
}

/// A list column of a quorum queue; empty for a classic queue, as rabbitmqctl leaves it.
fn names_or_blank(quorum: bool, names: Vec<String>) -> Value {
    if quorum { json!(names) } else { json!("") }
}

/// `verb`'s rows for `vhost`.
pub async fn answer(verb: &str, admin: &Admin, vhost: &str) -> Answer {
    match verb {
        "list_queues" => table(
            QUEUE_COLUMNS,
            admin
                .queues(vhost)
                .await
                .into_iter()
                .map(|q| {
                    let quorum = q.kind == "quorum";
                    let s = q.stats;
                    vec![
                        q.name.into(),
                        q.durable.into(),
                        q.auto_delete.into(),
                        table_to_listing(&q.arguments),
                        "".into(),
                        q.exclusive.into(),
                        s.ready.into(),
                        s.unacked.into(),
                        (u64::from(s.ready) + u64::from(s.unacked)).into(),
                        s.consumers.into(),
                        q.state.into(),
                        q.kind.into(),
                        q.leader.unwrap_or_default().into(),
                        names_or_blank(quorum, q.members),
                        names_or_blank(quorum, q.online),
                        q.node.into(),
                    ]
                })
                .collect(),
        ),
        "list_exchanges" => table(
            EXCHANGE_COLUMNS,
            admin
                .exchanges(vhost)
                .into_iter()
                .map(|x| {
                    vec![
                        x.name.to_string().into(),
                        x.kind.as_str().into(),
                        table_to_listing(&x.arguments),
                        "".into(),
                        x.durable.into(),
                        x.auto_delete.into(),
                        x.internal.into(),
                    ]
                })
                .collect(),
        ),
        "list_bindings" => table(
            BINDING_COLUMNS,
            admin
                .bindings(vhost)
                .into_iter()
                .map(|b| {
                    vec![
                        b.source.to_string().into(),
                        "exchange".into(),
                        b.destination.name().to_string().into(),
                        b.destination.kind().into(),
                        b.routing_key.to_string().into(),
                        table_to_listing(&b.arguments),
                    ]
                })
                .collect(),
        ),
        _ => table(
            CONSUMER_COLUMNS,
            admin
                .consumers(vhost)
                .await
                .into_iter()
                .map(|(q, c)| {
                    // No Erlang pids here: the channel named as RabbitMQ prints a pid, by
                    // the node of its connection, the connection and the channel.
                    let node = admin.node_name(c.conn.node);
                    let channel = format!("<{node}.{}.{}>", c.conn.n, c.channel);
                    vec![
                        q.into(),
                        channel.into(),
                        c.tag.to_string().into(),
                        c.ack_required.into(),
                        c.prefetch.into(),
                        c.active.into(),
                        json!([]),
                    ]
                })
                .collect(),
        ),
    }
}
