//! The membership verbs: `join_cluster`, `forget_cluster_node`, `change_cluster_node_type`,
//! `reset` and `force_reset`, with rabbitmqctl's rules about when each may run (most only
//! while the broker application is stopped, as in the article's `stop_app`, `join_cluster`,
//! `start_app`).
//!
//! Joining empties the node (as RabbitMQ resets a node that joins), writes down how it means
//! to take part (`warren_broker::formation::Intent`), and asks the cluster's leader, through the
//! node named, to add it as a learner; when the application starts again the node receives
//! the topology from the leader, and a disc node asks to become a voter once it has it.

use crate::app::App;
use crate::transport::MeshTransport;
use std::time::Duration;
use warren_broker::formation::{
    Intent, forget_offline, read_intent, reset_data_dir, stored_members, write_intent,
};
use warren_broker::group::raft_id;
use warren_cluster::ctl::{Answer, exit};
use warren_cluster::{Mesh, NodeAddr};
use warren_raft::{MemberChange, ProposeError, ask_cluster};

/// How long a membership change may take before warrenctl hears it failed.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

/// rabbitmqctl's refusal of a verb that needs the application stopped (a usage error).
fn app_running() -> Answer {
    Answer::failed(
        exit::USAGE,
        "this command requires the 'warren' app to be stopped on the target node. Stop it with 'warrenctl stop_app'.",
    )
}

fn unreachable(node: &str, e: &ProposeError) -> Answer {
    let why = match e {
        ProposeError::TimedOut => "no answer from its cluster in time".to_owned(),
        other => other.to_string(),
    };
    Answer::failed(
        exit::UNAVAILABLE,
        format!("unable to perform an operation on node '{node}': {why}"),
    )
}

pub async fn join_cluster(app: &App, mesh: &Mesh, target: &str, ram: bool) -> Answer {
    let me = mesh.me().name.clone();
    if app.is_running().await {
        return app_running();
    }
    let target = match NodeAddr::parse(target) {
        Ok(t) => t,
        Err(e) => return Answer::failed(exit::USAGE, e),
    };
    if target.name == me {
        return Answer::failed(
            exit::SOFTWARE,
            format!("cannot cluster node with itself: {me}"),
        );
    }
    let data_dir = &app.config().node.data_dir;
    let already = stored_members(data_dir)
        .unwrap_or_default()
        .iter()
        .any(|(id, _)| *id == raft_id(&target.name));
    if already {
        // RabbitMQ answers success and leaves the node's type as it is.
        return Answer::Done;
    }
    // Reached first, so that a node that cannot reach the cluster is not emptied for nothing.
    mesh.keep_connected(target.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !mesh.is_connected(&target.name) {
        if tokio::time::Instant::now() >= deadline {
            return Answer::failed(
                exit::UNAVAILABLE,
                format!(
                    "unable to perform an operation on node '{}'. Please see diagnostics information and suggestions below.",
                    target.name
                ),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Err(e) = reset_data_dir(data_dir) {
        return Answer::failed(exit::SOFTWARE, e);
    }
    let intent = Intent {
        voter: !ram,
        joined: Some(format!("{}:{}", target.name, target.port)),
    };
    if let Err(e) = write_intent(data_dir, &intent) {
        return Answer::failed(exit::SOFTWARE, e);
    }
    let change = MemberChange::Add {
        id: raft_id(&me),
        addr: app.setup().address.clone(),
    };
    let target_addr = format!("{}:{}", target.name, target.port);
    let transport = app.setup().transport.clone();
    match ask_cluster(transport.as_ref(), &target_addr, change, MEMBERSHIP_TIMEOUT).await {
        Ok(_) => Answer::Done,
        Err(e) => unreachable(&target.name, &e),
    }
}

pub async fn change_cluster_node_type(app: &App, mesh: &Mesh, kind: &str) -> Answer {
    let me = mesh.me().name.clone();
    let voter = match kind {
        "disc" | "disk" => true,
        "ram" => false,
        other => {
            let _ = other;
            return Answer::failed(
                exit::DATA,
                "Bad argument: The node type must be either disc or ram.",
            );
        }
    };
    if app.is_running().await {
        return app_running();
    }
    let data_dir = &app.config().node.data_dir;
    let members = stored_members(data_dir).unwrap_or_default();
    let joined = read_intent(data_dir).ok().flatten().and_then(|i| i.joined);
    if joined.is_none() && members.iter().all(|(id, _)| *id == raft_id(&me)) {
        return Answer::failed(
            exit::SOFTWARE,
            "Non-clustered nodes can only be disc nodes.",
        );
    }
    match write_intent(data_dir, &Intent { voter, joined }) {
        // Carried out when the application starts: the node asks the leader.
        Ok(()) => Answer::Done,
        Err(e) => Answer::failed(exit::SOFTWARE, e),
    }
}

pub async fn forget_cluster_node(
    app: &App,
    mesh: &Mesh,
    links: &MeshTransport,
    node: &str,
    offline: bool,
) -> Answer {
    let me = mesh.me().name.clone();
    let node = match NodeAddr::parse(node) {
        Ok(n) => n.name,
        Err(e) => return Answer::failed(exit::USAGE, e),
    };
    if offline {
        // As rabbitmqctl's: on a node whose application is stopped, with no cluster asked.
        if app.is_running().await {
            return app_running();
        }
        if node == me {
            return Answer::failed(
                exit::SOFTWARE,
                format!("cannot forget node {me} from itself; use reset on it instead"),
            );
        }
        let data_dir = &app.config().node.data_dir;
        return match forget_offline(data_dir, raft_id(&me), raft_id(&node)) {
            Ok(()) => Answer::Done,
            Err(e) => Answer::failed(exit::SOFTWARE, e),
        };
    }
    let Some(broker) = app.broker().await else {
        return Answer::failed(
            exit::UNAVAILABLE,
            format!("the warren app is not running on node {me}; start it first"),
        );
    };
    if node == me {
        return Answer::failed(
            exit::SOFTWARE,
            format!("cannot forget node {me} from itself; use reset on it instead"),
        );
    }
    let id = raft_id(&node);
    let (disk, ram) = broker.meta.members();
    if !disk.contains(&node) && !ram.contains(&node) {
        return Answer::failed(
            exit::UNAVAILABLE,
            format!("node {node} is not a member of this cluster"),
        );
    }
    // A member that still runs would go on as if it belonged (and, as a voter, call
    // elections): it must be stopped first, as RabbitMQ asks.
    if links.is_running(&node).await {
        return Answer::failed(
            exit::UNAVAILABLE,
            format!("node {node} is running; stop its app (warrenctl stop_app) first"),
        );
    }
    let Some(group) = broker.meta.group() else {
        return Answer::failed(exit::SOFTWARE, "the node is shutting down");
    };
    match group.change_members(MemberChange::Remove { id }).await {
        Ok(_) => Answer::Done,
        Err(e) => unreachable(&me, &e),
    }
}

/// `reset` leaves the cluster first (the others must agree); `force_reset` does not ask.
pub async fn reset(app: &App, mesh: &Mesh, force: bool) -> Answer {
    let me = mesh.me().name.clone();
    if app.is_running().await {
        return app_running();
    }
    let data_dir = &app.config().node.data_dir;
    if !force {
        let others: Vec<String> = stored_members(data_dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|(id, _)| *id != raft_id(&me))
            .map(|(_, addr)| addr)
            .collect();
        if let Some(first) = others.first() {
            let transport = app.setup().transport.clone();
            for addr in &others {
                if let Ok(peer) = NodeAddr::parse(addr) {
                    mesh.keep_connected(peer);
                }
            }
            let change = MemberChange::Remove { id: raft_id(&me) };
            if let Err(e) = ask_cluster(transport.as_ref(), first, change, MEMBERSHIP_TIMEOUT).await
            {
                return Answer::failed(
                    exit::UNAVAILABLE,
                    format!("cannot leave the cluster ({e}); force_reset resets without asking it"),
                );
            }
        }
    }
    match reset_data_dir(data_dir) {
        Ok(()) => Answer::Done,
        Err(e) => Answer::failed(exit::SOFTWARE, e),
    }
}
