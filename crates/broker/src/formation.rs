//! How a node forms or joins the metadata's Raft group, and rebuilds its topology.
//!
//! At a node's first start its Raft state is empty. The seed (a node alone, or the one with
//! the smallest name among the configured peers) builds the initial topology (the default
//! vhost and user, or what the data directory held from before the group: a definitions file
//! and journal), writes it as the group's first snapshot, with every configured node a voter,
//! and starts the group from it. Any other node starts empty and receives that snapshot from
//! the leader. At a restart the node rebuilds its topology from its snapshot and the entries
//! committed after it, starts its queues, and only then joins the group: what it applies from
//! then on comes from the log.

use crate::config::Config;
use crate::group::{ClusterSetup, Group, raft_id};
use crate::meta_machine::{Kept, MetaMachine, load_members, load_snapshot, write_snapshot};
use crate::metadata::Metadata;
use crate::persist::{Saved, load_legacy, retire_legacy};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use warren_meta::Command;
use warren_meta::{PasswordHash, Permissions};
use warren_raft::openraft::{
    BasicNode, Entry, EntryPayload, LogId, Membership, ServerState, StoredMembership,
};
use warren_raft::{LogStore, MemberChange, Meta, MetaRaft, Network, Proposer};

/// How this node means to take part, when an operator said so (`join_cluster`,
/// `change_cluster_node_type`): kept in `raft/member.json`. Without it a node is a voter, as
/// nodes formed from a peers list are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Intent {
    /// A disc node (a voter) rather than a RAM node (a learner).
    pub voter: bool,
    /// The node it joined through (`name@host:port`), when it joined one: such a node never
    /// seeds a group of its own; it waits for the leader's snapshot (and a RAM node, which
    /// keeps no metadata, asks that node again at each start).
    pub joined: Option<String>,
}

fn intent_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("raft").join("member.json")
}

pub fn read_intent(data_dir: &Path) -> Result<Option<Intent>, String> {
    crate::persist::read_json(&intent_path(data_dir))
}

pub fn write_intent(data_dir: &Path, intent: &Intent) -> Result<(), String> {
    let path = intent_path(data_dir);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(data_dir.join("raft"))?;
        let bytes = serde_json::to_vec(intent).map_err(std::io::Error::other)?;
        crate::persist::write_atomically(&path, &bytes)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Empties a node's data directory (all but its lock): `reset`.
pub fn reset_data_dir(data_dir: &Path) -> Result<(), String> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", data_dir.display())),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == ".lock") {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The members a stopped node last knew of, by raft id and address (from its snapshot and
/// log), for it to reach the cluster while its group is not running.
pub fn stored_members(data_dir: &Path) -> Result<Vec<(u64, String)>, String> {
    Ok(stored_membership(&data_dir.join("raft"))?
        .map(|m| {
            m.membership()
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect()
        })
        .unwrap_or_default())
}

/// The membership a stopped node's metadata ends with (its snapshot's, unless its log holds
/// a later one).
fn stored_membership(raft_dir: &Path) -> Result<Option<StoredMembership<u64, BasicNode>>, String> {
    let mut membership = load_snapshot(raft_dir)?.map(|s| s.meta.last_membership);
    if let Some(m) = warren_raft::log_store::last_membership::<Meta>(&raft_dir.join("log"))? {
        membership = Some(m);
    }
    if membership.is_none() {
        // A RAM node's metadata is in memory only; what it writes down is the membership.
        membership = load_members(raft_dir)?;
    }
    Ok(membership)
}

/// Whether the stored membership counts node `me` as a voter (a disc node).
fn is_voter(raft_dir: &Path, me: u64) -> Result<bool, String> {
    Ok(stored_membership(raft_dir)?.is_some_and(|m| m.membership().voter_ids().any(|v| v == me)))
}

/// `forget_cluster_node --offline`: removes node `gone` from the membership this stopped
/// node's metadata ends with, by appending a membership without it to its log. This is how a
/// cluster that lost its majority for good starts again from what remains (each node that
/// will not come back forgotten in turn, on a surviving node); it is unsafe if the forgotten
/// node is in fact alive with a majority of its own, which is why it asks for the application
/// to be stopped and is never done by itself.
pub fn forget_offline(data_dir: &Path, me: u64, gone: u64) -> Result<(), String> {
    let raft_dir = data_dir.join("raft");
    let log = raft_dir.join("log");
    let after = load_snapshot(&raft_dir)?.and_then(|s| s.meta.last_log_id);
    let m = stored_membership(&raft_dir)?.ok_or("this node is not part of a cluster")?;
    let m = m.membership();
    if m.get_node(&gone).is_none() {
        return Err("that node is not a member of this node's cluster".to_owned());
    }
    let voters: BTreeSet<u64> = m.voter_ids().filter(|id| *id != gone).collect();
    if voters.is_empty() {
        return Err("that node is the cluster's last disc node".to_owned());
    }
    let nodes: BTreeMap<u64, BasicNode> = m
        .nodes()
        .filter(|(id, _)| **id != gone)
        .map(|(id, n)| (*id, n.clone()))
        .collect();
    let without = Membership::new(vec![voters], nodes);
    warren_raft::log_store::append_offline::<Meta>(&log, me, after, |log_id| Entry {
        log_id,
        payload: EntryPayload::Membership(without),
    })?;
    Ok(())
}

/// Entries at least between two snapshots (more when the topology is larger, so that what
/// snapshots cost per change stays flat).
const SNAPSHOT_EVERY: u64 = 4_096;

/// Starts the group over `data_dir/raft` and makes `meta` its state machine.
pub(crate) async fn start(
    meta: &Arc<Metadata>,
    config: &Config,
    setup: &ClusterSetup,
) -> Result<(), String> {
    let data_dir = &config.node.data_dir;
    let raft_dir = data_dir.join("raft");
    std::fs::create_dir_all(&raft_dir)
        .map_err(|e| format!("cannot create {}: {e}", raft_dir.display()))?;
    let me = raft_id(meta.name());
    let intent = read_intent(data_dir)?;
    // A RAM node (one that joined as such and is not a voter) keeps its metadata in memory
    // only, as RabbitMQ's: it takes it from the disc nodes (the leader's snapshot) each time it
    // starts, and on disk keeps only the membership. Never a voter's: its log counts towards
    // majorities (a change to disc is carried out after the start, onto a log on disk).
    let in_memory = intent
        .as_ref()
        .is_some_and(|i| !i.voter && i.joined.is_some())
        && !is_voter(&raft_dir, me)?;
    if in_memory {
        // It still needs to know whom to ask (RabbitMQ's RAM nodes keep the disc nodes'
        // names on disk for the same reason).
        let mut others: Vec<String> = stored_members(data_dir)?
            .into_iter()
            .filter(|(id, _)| *id != me)
            .map(|(_, addr)| addr)
            .collect();
        others.extend(intent.as_ref().and_then(|i| i.joined.clone()));
        // Left by a disc node's life before a change to RAM (the log's spare and old file
        // are the space its journal recycles: they hold old entries too).
        for f in ["log", "log.spare", "log.old", "snapshot.json"] {
            let _ = std::fs::remove_file(raft_dir.join(f));
        }
        if !others.is_empty() {
            setup.links.keep_linked(others);
        }
        tracing::info!("RAM node: taking the metadata from the disc nodes");
    }
    let (log, kept) = if in_memory {
        (
            LogStore::<Meta>::in_memory(),
            Kept::memory(raft_dir.clone()),
        )
    } else {
        let (log, opened) = LogStore::<Meta>::open(&raft_dir.join("log"))?;
        if opened.cut > 0 {
            tracing::warn!(
                bytes = opened.cut,
                "cut a torn end off the metadata log (written by a crash, never acknowledged)"
            );
        }
        (log, Kept::Disk(raft_dir.clone()))
    };
    let snapshot = load_snapshot(&raft_dir)?;
    let fresh = snapshot.is_none() && log.is_empty();
    let mut awaiting_topology = false;
    if fresh {
        let joining = intent.as_ref().is_some_and(|i| i.joined.is_some());
        let seed = !joining
            && setup
                .peers
                .iter()
                .all(|(name, _)| meta.name() < name.as_str());
        if seed {
            seed_topology(meta, config, data_dir)?;
            let mut nodes: BTreeMap<u64, BasicNode> = setup
                .peers
                .iter()
                .map(|(name, addr)| (raft_id(name), BasicNode::new(addr)))
                .collect();
            nodes.insert(me, BasicNode::new(&setup.address));
            let voters: BTreeSet<u64> = nodes.keys().copied().collect();
            let at = LogId::default();
            let membership = Membership::new(vec![voters], nodes);
            meta.set_applied(Some(at), StoredMembership::new(Some(at), membership));
            write_snapshot(meta, &kept)?;
            log.start_after(at).await.map_err(|e| e.to_string())?;
            retire_legacy(data_dir);
            tracing::info!(peers = setup.peers.len(), "formed the metadata group");
        } else {
            tracing::info!("waiting for the metadata group's leader to send the topology");
            awaiting_topology = true;
        }
    } else {
        rebuild(meta, &log, snapshot)?;
    }
    let machine = MetaMachine::new(meta.clone(), kept);
    let sizes = machine.snapshot_size.clone();
    let raft_config = Arc::new(warren_raft::config("warren")?);
    let raft = MetaRaft::new(
        me,
        raft_config,
        Network::new(setup.transport.clone()),
        log.clone(),
        machine,
    )
    .await
    .map_err(|e| format!("cannot start the metadata group: {e}"))?;
    if let Ok(mut s) = setup.starting.lock() {
        *s = Some(raft.clone());
    }
    let snapshots = tokio::spawn(take_snapshots(raft.clone(), sizes));
    tokio::spawn(report_leaders(raft.clone()));
    let timeout = Duration::from_millis(config.cluster.metadata_timeout_ms);
    let proposer = Proposer::new(raft.clone(), setup.transport.clone());
    let group = Group::new(raft, log, proposer, timeout, snapshots);
    // From the membership the topology was rebuilt with: openraft's metrics may not be
    // filled in yet.
    let alone = {
        let (_, membership) = meta.applied_state();
        let voters: Vec<u64> = membership.membership().voter_ids().collect();
        voters == [me]
    };
    if alone && !matches!(group.raft().metrics().borrow().state, ServerState::Leader) {
        // A node alone need not wait out an election timeout to lead.
        let _ = group.raft().trigger().elect().await;
    }
    let proposer = group.proposer().clone();
    meta.set_group(group);
    if let Some(intent) = intent {
        tokio::spawn(keep_intent(proposer, me, intent.voter, timeout));
    }
    if !fresh {
        forget_transient(meta, alone).await;
    }
    if awaiting_topology {
        await_topology(meta).await;
    }
    if let Ok(mut s) = setup.starting.lock() {
        *s = None;
    }
    Ok(())
}

/// How long a new member waits for the topology before it serves clients all the same.
const TOPOLOGY_WAIT: Duration = Duration::from_secs(10);

/// Holds a new member's start (and so its AMQP listener) until the leader has sent it the
/// topology: before that it knows no user, and refused `guest` and every other login with
/// ACCESS_REFUSED (seen when a client connected right after a cluster formed). RabbitMQ does
/// not serve either before its tables are synced with the cluster's.
async fn await_topology(meta: &Metadata) {
    let deadline = tokio::time::Instant::now() + TOPOLOGY_WAIT;
    while meta.applied_state().0.is_none() {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "no topology from the metadata group's leader yet: serving without it (logins fail until it comes)"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("took the topology from the metadata group's leader");
}

/// Makes this node the kind of member it is meant to be (a voter or a learner) once it is a
/// member: a node that joined as a disc node is promoted when it runs and has the log.
async fn keep_intent(proposer: Proposer<Meta>, me: u64, voter: bool, timeout: Duration) {
    let mut metrics = proposer.raft().metrics();
    loop {
        let (is_voter, is_member) = {
            let m = metrics.borrow_and_update();
            let membership = m.membership_config.membership();
            (
                membership.voter_ids().any(|v| v == me),
                membership.get_node(&me).is_some(),
            )
        };
        if is_member && is_voter != voter {
            let change = if voter {
                MemberChange::Promote { id: me }
            } else {
                MemberChange::Demote { id: me }
            };
            match proposer.change_members(change, timeout).await {
                Ok(_) => tracing::info!(voter, "this node's membership changed as asked"),
                Err(e) => tracing::debug!(error = %e, "cannot change this node's membership yet"),
            }
        }
        let wait = tokio::time::timeout(Duration::from_secs(1), metrics.changed());
        if let Ok(Err(_)) = wait.await {
            return;
        }
    }
}

/// The topology a new group starts from: what the data directory held from before the group,
/// or a fresh node's defaults.
fn seed_topology(meta: &Arc<Metadata>, config: &Config, data_dir: &Path) -> Result<(), String> {
    let legacy = load_legacy(data_dir)?;
    if legacy.is_empty() {
        return meta.recover(&Saved {
            definitions: None,
            changes: defaults(config),
        });
    }
    meta.recover(&legacy)
}

/// Rebuilds the topology at a restart: the snapshot, then the log's entries up to the last
/// commit point written.
fn rebuild(
    meta: &Arc<Metadata>,
    log: &LogStore<Meta>,
    snapshot: Option<crate::meta_machine::SnapshotFile>,
) -> Result<(), String> {
    let (definitions, mut applied, mut membership) = match snapshot {
        Some(s) => (
            Some(s.definitions),
            s.meta.last_log_id,
            s.meta.last_membership,
        ),
        None => (None, None, StoredMembership::default()),
    };
    let from = applied.map_or(0, |l| l.index + 1);
    let mut changes = Vec::new();
    // The commit point is written lazily and may be behind the snapshot.
    let to = log.committed().map_or(0, |c| c.index);
    if to >= from {
        for e in log.entries(from..=to) {
            applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Normal(cmd) => changes.push(cmd),
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(e.log_id), m)
                }
                EntryPayload::Blank => {}
            }
        }
    }
    // The members' addresses first: quorum queues' members start during recovery, and need
    // them to reach each other.
    meta.tell_peers(&membership);
    meta.recover(&Saved {
        definitions,
        changes,
    })?;
    meta.set_applied(applied, membership);
    Ok(())
}

/// Tells the group that this node's transient and exclusive queues are gone (it restarted).
/// A node alone waits for it, so that its clients never see them; in a cluster it is retried
/// in the background until a majority takes it.
async fn forget_transient(meta: &Arc<Metadata>, alone: bool) {
    let cmd = Command::ForgetTransient {
        home: meta.node(),
        exchanges: alone,
    };
    let weak = Arc::downgrade(meta);
    let task = tokio::spawn(async move {
        loop {
            let Some(meta) = weak.upgrade() else { return };
            match meta.change(&cmd).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot forget this node's transient queues yet")
                }
            }
            drop(meta);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    if alone {
        let _ = task.await;
    }
}

/// Logs each change of the group's leader, as this node sees it.
async fn report_leaders(raft: MetaRaft) {
    let mut metrics = raft.metrics();
    let mut last = None;
    loop {
        let (leader, term, addr) = {
            let m = metrics.borrow_and_update();
            let addr = m.current_leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
            (m.current_leader, m.current_term, addr)
        };
        if leader != last {
            match &addr {
                Some(addr) => tracing::info!(leader = %addr, term, "metadata leader"),
                None => tracing::info!(term, "no metadata leader"),
            }
            last = leader;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Asks for a snapshot whenever as many entries have accumulated since the last one as it
/// held things (and at least [`SNAPSHOT_EVERY`]).
async fn take_snapshots(raft: MetaRaft, sizes: Arc<std::sync::atomic::AtomicU64>) {
    let mut metrics = raft.metrics();
    loop {
        if metrics.changed().await.is_err() {
            return;
        }
        let (applied, snapshot) = {
            let m = metrics.borrow_and_update();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map_or(0, |l| l.index),
            )
        };
        let due = SNAPSHOT_EVERY.max(sizes.load(Ordering::Acquire));
        if applied.saturating_sub(snapshot) >= due {
            let _ = raft.trigger().snapshot().await;
            // One at a time: wait until it is taken before looking again.
            let _ = metrics
                .wait_for(|m| m.snapshot.map_or(0, |l| l.index) > snapshot)
                .await;
        }
    }
}

/// What a new cluster starts with: the vhost `/` and the default user (hashed) with every
/// permission on it, as RabbitMQ creates them.
fn defaults(config: &Config) -> Vec<Command> {
    let user = config.auth.default_user.clone();
    let all = ".*".to_owned();
    vec![
        Command::AddVhost {
            name: "/".to_owned(),
        },
        Command::AddUser {
            name: user.clone(),
            password: PasswordHash::new(&config.auth.default_pass),
            tags: vec!["administrator".to_owned()],
        },
        Command::SetPermissions {
            user,
            vhost: "/".to_owned(),
            permissions: Permissions {
                configure: all.clone(),
                write: all.clone(),
                read: all,
            },
        },
    ]
}
