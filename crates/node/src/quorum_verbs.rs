//! rabbitmq-queues' verbs for quorum queues, as warrenctl asks them: who holds a queue
//! (`add_member`, `delete_member`, `grow`, `shrink`), how its members stand
//! (`quorum_status`), and whether stopping this node would cost a queue its majority
//! (`check_if_node_is_quorum_critical`), and where their leaders are (`rebalance`). Answers
//! and texts are rabbitmq-queues'.

use warren_broker::admin::{Admin, MemberError, MemberRow};
use warren_cluster::ctl::{Answer, Request, exit};

/// The answer to `req` if it is one of these verbs; `me` is this node's name.
pub async fn answer(req: &Request, admin: &Admin, me: &str) -> Option<Answer> {
    let vhost = req.options.get("vhost").map_or("/", String::as_str);
    let arg = |i: usize| req.args.get(i).map(String::as_str).unwrap_or_default();
    Some(match req.verb.as_str() {
        "quorum_status" => match admin.quorum_status(vhost, arg(0)).await {
            Ok(members) => status_table(members),
            Err(MemberError::Classic) => Answer::failed(
                exit::UNAVAILABLE,
                "Cannot get quorum status of a classic queue",
            ),
            Err(e) => failed(e),
        },
        "add_member" => done(admin.add_member(vhost, arg(0), arg(1)).await),
        "delete_member" => done(admin.delete_member(vhost, arg(0), arg(1)).await),
        "grow" => match arg(1) {
            "all" => rows(admin.grow(arg(0), false).await),
            "even" => rows(admin.grow(arg(0), true).await),
            other => Answer::failed(
                exit::USAGE,
                format!("\"strategy '{other}' is not recognised.\""),
            ),
        },
        "shrink" => {
            let mut found = admin.shrink(arg(0)).await;
            if req.options.contains_key("errors-only") {
                found.retain(|r| r.result != "ok");
            }
            rows(found)
        }
        "check_if_node_is_quorum_critical" => {
            let critical = admin.quorum_critical();
            if critical.is_empty() {
                Answer::Report {
                    json: serde_json::json!({"result": "ok"}),
                    text: format!("Node {me} reported no quorum queues with minimum quorum"),
                }
            } else {
                let lines: Vec<String> = critical
                    .iter()
                    .map(|(vhost, name)| {
                        format!(
                            "queue '{name}' in vhost '{vhost}' would lose quorum if node {me} is stopped"
                        )
                    })
                    .collect();
                Answer::failed(exit::UNAVAILABLE, lines.join("\n"))
            }
        }
        "rebalance" => match arg(0) {
            kind @ ("quorum" | "all" | "classic") => {
                // No classic queue is replicated here: `classic` moves nothing.
                let led = if kind == "classic" {
                    admin.quorum_leaders().await
                } else {
                    admin.rebalance_quorum().await
                };
                rebalanced(me, led)
            }
            other => Answer::failed(
                exit::UNAVAILABLE,
                format!("type {other} is not supported. Try one of all, classic, quorum."),
            ),
        },
        _ => return None,
    })
}

const REBALANCE_COLUMNS: [&str; 3] = [
    "Node name",
    "Number of quorum queues",
    "Number of replicated classic queues",
];

/// `rebalance`'s answer: how many queues each running node leads now, the nodes in the order
/// RabbitMQ lists them (the last first).
fn rebalanced(me: &str, mut led: Vec<(String, usize)>) -> Answer {
    led.sort();
    led.reverse();
    let json = led
        .iter()
        .map(|(node, n)| {
            serde_json::json!([
                [REBALANCE_COLUMNS[0], node],
                [REBALANCE_COLUMNS[1], n],
                [REBALANCE_COLUMNS[2], 0]
            ])
        })
        .collect::<Vec<_>>();
    let rows: Vec<Vec<String>> = led
        .into_iter()
        .map(|(node, n)| vec![node, n.to_string(), "0".to_owned()])
        .collect();
    let text = if rows.is_empty() {
        crate::pretty::table(&["Output"], &[vec!["[]".to_owned()]])
    } else {
        crate::pretty::table(&REBALANCE_COLUMNS, &rows)
    };
    Answer::Report {
        json: serde_json::json!({"node": me, "result": "ok", "value": json}),
        // The CLI ends a report with a newline of its own.
        text: text.trim_end_matches('\n').to_owned(),
    }
}

fn failed(e: MemberError) -> Answer {
    Answer::failed(exit::UNAVAILABLE, e.to_string())
}

fn done(r: Result<(), MemberError>) -> Answer {
    r.map_or_else(failed, |()| Answer::Done)
}

fn rows(rows: Vec<MemberRow>) -> Answer {
    Answer::Table {
        columns: ["vhost", "name", "size", "result"]
            .map(str::to_owned)
            .to_vec(),
        rows: rows
            .into_iter()
            .map(|r| {
                vec![
                    r.vhost.into(),
                    r.name.into(),
                    r.size.into(),
                    r.result.into(),
                ]
            })
            .collect(),
    }
}

/// RabbitMQ's columns; a member that did not answer is `noproc` with its other cells empty,
/// and a member without a snapshot shows `undefined`.
fn status_table(members: Vec<(String, Option<warren_raft::MemberStatus>)>) -> Answer {
    use serde_json::Value;
    let columns = [
        "Node Name",
        "Raft State",
        "Log Index",
        "Commit Index",
        "Snapshot Index",
        "Term",
        "Machine Version",
    ];
    let index = |i: Option<u64>| i.map_or(Value::from("undefined"), Value::from);
    let rows = members
        .into_iter()
        .map(|(node, s)| match s {
            Some(s) if s.state != "shutdown" => vec![
                node.into(),
                s.state.into(),
                s.last_log_index.unwrap_or(0).into(),
                s.applied_index.unwrap_or(0).into(),
                index(s.snapshot_index),
                s.term.into(),
                MACHINE_VERSION.into(),
            ],
            _ => {
                let mut row = vec![Value::from(node), "noproc".into()];
                row.resize(columns.len(), Value::from(""));
                row
            }
        })
        .collect();
    Answer::Table {
        columns: columns.map(str::to_owned).to_vec(),
        rows,
    }
}

/// The version of the queue's replicated state machine, as `quorum_status` reports it.
const MACHINE_VERSION: u64 = 1;
