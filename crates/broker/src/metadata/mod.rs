//! The node's topology at run time: the pure [`Topology`] behind one lock, and the work each
//! change brings with it. Every change is a [`Command`] committed through the metadata's Raft
//! group ([`crate::group`]), then applied here, in log order, on every node: checked,
//! deterministic, all or nothing. Its [`Effect`]s are carried out at once (queues of this node
//! started or stopped, routing snapshots swapped), under the same lock, so that effects land in
//! the order of their commands; neither applying nor carrying out does I/O or waits. The
//! caller of [`Metadata::change`] hears back once its change is applied on this node.
//!
//! Reads never go through the group: a redeclaration equivalent to what exists is answered
//! from this node's copy, so applications that declare on every connect keep working while a
//! majority is out of reach.

use crate::auth::{self, LoginError};
use crate::group::Group;
use crate::mail::Mailboxes;
use crate::persist::Saved;
use crate::queue::remote::Peers;
use crate::routing::Changes;
use crate::vhost::{StoreLayout, VHost};
use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use tokio::sync::watch;
use warren_amqp::{AmqpError, AmqpResult, ShortStr};
use warren_meta::{
    Applied, Command, Definitions, Effect, NodeId, QueueId, QueueType, Scope, Topology, UidSource,
    User,
};
use warren_raft::openraft::{BasicNode, EntryPayload, LogId, StoredMembership};
use warren_raft::{Meta, Outcome, ProposeError};

mod members;
mod queues;
mod rebalance;

pub use members::MemberError;

/// A node's name from its address in the membership (`name@host:port`).
pub(crate) fn node_name(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((name, port)) if name.contains('@') && port.parse::<u16>().is_ok() => name,
        _ => addr,
    }
}

/// A change that no majority committed in time, as RabbitMQ (with Khepri) words it for a
/// queue or an exchange: 541 INTERNAL_ERROR, which closes the connection.
fn timed_out(cmd: &Command, node: &str) -> AmqpError {
    use warren_meta::rules::describe;
    let text = match cmd {
        Command::DeclareQueue { vhost, queue } => format!(
            "Could not declare {} on node '{node}' because the metadata store operation timed out",
            describe("queue", &queue.name, vhost)
        ),
        Command::DeclareExchange { vhost, exchange } => format!(
            "failed to declare {} because the operation timed out",
            describe("exchange", &exchange.name, vhost)
        ),
        _ => format!(
            "the metadata store operation timed out on node '{node}' (the cluster could be in minority)"
        ),
    };
    AmqpError::internal_error(text)
}

/// What a batch of changes touched in each vhost's routing.
#[derive(Default)]
struct Rebuild(Vec<(String, Changes)>);

impl Rebuild {
    fn of(&mut self, vhost: &str) -> &mut Changes {
        let at = match self.0.iter().position(|(v, _)| v == vhost) {
            Some(at) => at,
            None => {
                self.0.push((vhost.to_owned(), Changes::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }
}

/// Why a queue is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Applied from the log now: a new queue starts empty; one whose log exists (the entry
    /// was applied before, in an earlier life of this node) takes its messages back.
    Declared,
    /// Being replayed at start-up (the snapshot, then the journal): queues start only once
    /// everything is applied, so that a queue deleted and declared again under its name
    /// starts once, from the one log that is its own.
    Replaying,
}

/// What the lock holds: the topology, and how far into the log it is.
pub(crate) struct Held {
    pub topology: Topology,
    /// The last log entry applied.
    pub applied: Option<LogId<u64>>,
    /// The cluster's members as of that entry.
    pub membership: StoredMembership<u64, BasicNode>,
}

pub struct Metadata {
    held: Mutex<Held>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    /// The index of the last log entry applied, for callers waiting to see their change.
    applied_index: watch::Sender<u64>,
    /// The metadata's Raft group, once started.
    group: OnceLock<Group>,
    name: String,
    pub ids: UidSource,
    settings: StoreLayout,
    loopback_users: Vec<String>,
    /// The node's default queue type, for vhosts without one (`[node] default_queue_type`).
    default_queue_type: Option<QueueType>,
    /// The node's connection mailboxes, which its queues deliver to.
    post: Arc<Mailboxes>,
    /// How handles of queues on other nodes reach them.
    peers: Arc<Peers>,
    /// The quorum queues' groups this node is a member of.
    replicas: Arc<crate::quorum::Replicas>,
    /// The members' addresses by raft id (`name@host:port`), for quorum queues' groups: kept
    /// apart from the membership so that a queue starting while a change is applied can read
    /// them.
    addresses: RwLock<std::collections::HashMap<u64, String>>,
}

impl Metadata {
    pub fn new(
        name: &str,
        settings: StoreLayout,
        loopback_users: Vec<String>,
        default_queue_type: Option<QueueType>,
        post: Arc<Mailboxes>,
        peers: Arc<Peers>,
        replicas: Arc<crate::quorum::Replicas>,
    ) -> Arc<Metadata> {
        Arc::new(Metadata {
            held: Mutex::new(Held {
                topology: Topology::new(),
                applied: None,
                membership: StoredMembership::default(),
            }),
            vhosts: RwLock::new(HashMap::default()),
            applied_index: watch::Sender::new(0),
            group: OnceLock::new(),
            name: name.to_owned(),
            ids: UidSource::new(NodeId::from_name(name)),
            settings,
            loopback_users,
            default_queue_type,
            post,
            peers,
            replicas,
            addresses: RwLock::new(std::collections::HashMap::new()),
        })
    }

    /// The queue type that declarations naming none get in `vhost`: the vhost's default, else
    /// the node's.
    pub fn default_queue_type(&self, vhost: &str) -> Option<QueueType> {
        self.read(|t| t.vhost(vhost).and_then(|v| v.default_queue_type()))
            .or(self.default_queue_type)
    }

    pub fn node(&self) -> NodeId {
        self.ids.node()
    }

    /// The quorum queues' groups this node is a member of.
    pub(crate) fn replicas(&self) -> &Arc<crate::quorum::Replicas> {
        &self.replicas
    }

    /// The node's name, `name@host`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Held> {
        // A poisoned lock means a panic elsewhere; the topology itself is consistent because
        // `apply` changes nothing when it fails.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the topology.
    pub fn read<T>(&self, f: impl FnOnce(&Topology) -> T) -> T {
        f(&self.lock().topology)
    }

    pub(crate) fn set_group(&self, group: Group) {
        let _ = self.group.set(group);
    }

    pub fn group(&self) -> Option<&Group> {
        self.group.get()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().ok()?.get(name).cloned()
    }

    /// Makes a change through the group and waits until it is applied on this node; returns
    /// whether it changed anything. Without a majority it fails within the group's timeout
    /// (RabbitMQ with Khepri answers 541 the same way, after its own timeout).
    pub async fn change(&self, cmd: &Command) -> AmqpResult<bool> {
        match self.submit(cmd).await {
            Ok(outcome) => outcome,
            Err(ProposeError::TimedOut) => Err(timed_out(cmd, &self.name)),
            Err(e) => Err(AmqpError::internal_error(e.to_string())),
        }
    }

    /// Hands a change to the group and waits until it is applied on this node: what applying
    /// it answered, or why it was not committed.
    pub async fn submit(&self, cmd: &Command) -> Result<Outcome, ProposeError> {
        let group = self
            .group
            .get()
            .ok_or_else(|| ProposeError::Stopped("the node is shutting down".into()))?;
        let (index, outcome) = group.propose(cmd.clone()).await?;
        let mut applied = self.applied_index.subscribe();
        // Applied here shortly after the leader applied it; the wait is bounded all the same,
        // as the leader may be all this node hears from.
        let seen = tokio::time::timeout(group.timeout(), applied.wait_for(|a| *a >= index));
        match seen.await {
            Ok(Ok(_)) => Ok(outcome),
            _ => Err(ProposeError::TimedOut),
        }
    }

    /// Applies committed log entries, in order, and carries out their effects; what each
    /// answered goes back to whoever proposed it.
    pub(crate) fn apply_committed(
        self: &Arc<Self>,
        entries: impl IntoIterator<Item = warren_raft::openraft::Entry<Meta>>,
    ) -> Vec<Outcome> {
        let mut held = self.lock();
        let mut rebuild = Rebuild::default();
        let mut out = Vec::new();
        for e in entries {
            held.applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Ok(false)),
                EntryPayload::Normal(cmd) => out.push(
                    self.apply_locked(&mut held.topology, &cmd, Origin::Declared, &mut rebuild)
                        .map(|a| !a.is_unchanged()),
                ),
                EntryPayload::Membership(m) => {
                    held.membership = StoredMembership::new(Some(e.log_id), m);
                    self.tell_peers(&held.membership);
                    out.push(Ok(false));
                }
            }
        }
        self.rebuild_routes(&held.topology, rebuild);
        let last = held.applied.map_or(0, |l| l.index);
        drop(held);
        self.applied_index.send_replace(last);
        out
    }

    /// The cluster's members by name: the voters (RabbitMQ's disc nodes) and the learners
    /// (its RAM nodes), each sorted.
    pub fn members(&self) -> (Vec<String>, Vec<String>) {
        let held = self.lock();
        let m = held.membership.membership();
        let named = |ids: &mut dyn Iterator<Item = u64>| {
            let mut names: Vec<String> = ids
                .filter_map(|id| m.get_node(&id))
                .map(|n| node_name(&n.addr).to_owned())
                .collect();
            names.sort();
            names
        };
        (named(&mut m.voter_ids()), named(&mut m.learner_ids()))
    }

    /// The cluster's name: as `set_cluster_name` set it, else its first disc node's (this
    /// node's, alone).
    pub fn cluster_name(&self) -> String {
        if let Some(name) = self.read(|t| t.cluster_name().map(str::to_owned)) {
            return name;
        }
        let (disc, _) = self.members();
        disc.into_iter().next().unwrap_or_else(|| self.name.clone())
    }

    /// The members whose brokers can be reached now, this node included.
    pub(crate) fn running_nodes(&self) -> Vec<NodeId> {
        let me = self.node();
        let mut ids: Vec<NodeId> = self
            .node_names()
            .into_keys()
            .filter(|id| *id == me || self.peers.is_reachable(*id))
            .collect();
        ids.sort();
        ids
    }

    /// The cluster's nodes by id, named as RabbitMQ names nodes (`name@host`).
    pub fn node_names(&self) -> std::collections::HashMap<NodeId, String> {
        self.names_in(&self.lock().membership)
    }

    /// The queue channel learns the members, to name them and keep links to them.
    /// Learns the cluster's members and their addresses (also before the topology is
    /// recovered, so that quorum queues' members starting then can reach each other).
    pub(crate) fn tell_peers(&self, membership: &StoredMembership<u64, BasicNode>) {
        let members: Vec<(NodeId, String)> = membership
            .membership()
            .nodes()
            .map(|(id, n)| (NodeId(*id), n.addr.clone()))
            .collect();
        if let Ok(mut a) = self.addresses.write() {
            *a = members
                .iter()
                .map(|(id, addr)| (id.0, addr.clone()))
                .collect();
        }
        self.peers.set_members((self.node(), &self.name), members);
    }

    fn names_in(
        &self,
        membership: &StoredMembership<u64, BasicNode>,
    ) -> std::collections::HashMap<NodeId, String> {
        let mut names: std::collections::HashMap<NodeId, String> = membership
            .membership()
            .nodes()
            .map(|(id, n)| (NodeId(*id), node_name(&n.addr).to_owned()))
            .collect();
        names.insert(self.node(), self.name.clone());
        names
    }

    /// Where the topology stands in the log.
    pub(crate) fn applied_state(&self) -> (Option<LogId<u64>>, StoredMembership<u64, BasicNode>) {
        let held = self.lock();
        (held.applied, held.membership.clone())
    }

    /// Sets where the topology stands in the log (after building it at start-up).
    pub(crate) fn set_applied(
        &self,
        applied: Option<LogId<u64>>,
        membership: StoredMembership<u64, BasicNode>,
    ) {
        self.stand_at(self.lock(), applied, membership);
    }

    /// Records where the topology (under its lock) stands in the log, and tells whoever waits
    /// for an entry to be applied.
    fn stand_at(
        &self,
        mut held: MutexGuard<'_, Held>,
        applied: Option<LogId<u64>>,
        membership: StoredMembership<u64, BasicNode>,
    ) {
        held.applied = applied;
        self.tell_peers(&membership);
        held.membership = membership;
        drop(held);
        self.applied_index
            .send_replace(applied.map_or(0, |l| l.index));
    }

    /// Applies one command and carries out its effects; notes the vhosts whose routing must
    /// be compiled again.
    fn apply_locked(
        self: &Arc<Self>,
        topology: &mut Topology,
        cmd: &Command,
        origin: Origin,
        rebuild: &mut Rebuild,
    ) -> AmqpResult<Applied> {
        let applied = topology.apply(cmd)?;
        for e in &applied.effects {
            self.carry_out(e, origin, rebuild);
        }
        Ok(applied)
    }

    /// Brings the routing of each vhost a batch of changes touched up to date, once.
    fn rebuild_routes(&self, topology: &Topology, rebuild: Rebuild) {
        for (name, changes) in rebuild.0 {
            if let (Some(v), Some(rt)) = (topology.vhost(&name), self.vhost(&name)) {
                rt.update_routes(v, &changes);
            }
        }
    }

    fn carry_out(self: &Arc<Self>, e: &Effect, origin: Origin, rebuild: &mut Rebuild) {
        match e {
            Effect::VhostAdded(name) => {
                let v = VHost::new(name, Arc::downgrade(self));
                if let Ok(mut m) = self.vhosts.write() {
                    m.insert(name.clone(), v);
                }
                rebuild.of(name).all = true;
            }
            Effect::VhostDeleted(name) => {
                if let Ok(mut m) = self.vhosts.write() {
                    m.remove(name);
                }
            }
            Effect::QueueAdded { vhost, queue } => {
                // Only the queue's home node runs it; the others reach it there.
                if origin != Origin::Replaying {
                    if let Some(v) = self.vhost(vhost) {
                        if let Some(h) = self.handle_for(&v, queue) {
                            v.queue_started(h);
                        }
                    }
                }
                rebuild.of(vhost).queues.push(queue.name.clone());
            }
            Effect::QueueDeleted { vhost, queue } => {
                if let Some(v) = self.vhost(vhost) {
                    // Whoever took it out of the topology has usually deleted it already (a
                    // client's queue.delete, auto-delete, x-expires); if it still runs (its
                    // vhost went), it is deleted now.
                    if let Some(h) = v.queue_stopped(&queue.name, queue.id) {
                        if queue.kind == QueueType::Quorum && h.is_local() {
                            self.retire_member(h, queue.id, true);
                        } else if h.is_local() && h.is_running() {
                            tokio::spawn(async move {
                                let _ = h.delete(false, false).await;
                            });
                        }
                    }
                }
                rebuild.of(vhost).queues.push(queue.name.clone());
            }
            Effect::QueueMembersChanged {
                vhost,
                queue,
                before,
            } => {
                if origin != Origin::Replaying {
                    if let Some(v) = self.vhost(vhost) {
                        self.members_changed(&v, queue, before);
                    }
                }
                rebuild.of(vhost).queues.push(queue.name.clone());
            }
            Effect::ExchangeAdded { vhost, exchange }
            | Effect::ExchangeDeleted { vhost, exchange } => {
                rebuild.of(vhost).exchanges.push(exchange.name.clone());
            }
            Effect::BindingAdded { vhost, binding } => rebuild.of(vhost).binding(binding, true),
            Effect::BindingRemoved { vhost, binding } => rebuild.of(vhost).binding(binding, false),
            Effect::AccessChanged | Effect::PoliciesChanged { .. } | Effect::ClusterNamed(_) => {}
        }
    }

    /// Recreates what a definitions file describes, at start-up: durable queues take their
    /// messages back from their logs. All of it is applied under one lock and each vhost's
    /// routing is compiled once at the end, so start-up time grows with the topology's size,
    /// not with its square.
    pub fn recover(self: &Arc<Self>, saved: &Saved) -> Result<(), String> {
        let node = self.node();
        let mut held = self.lock();
        let topology = &mut held.topology;
        let mut cmds = match &saved.definitions {
            Some(defs) => topology.import_commands(defs, node, &mut || self.ids.next())?,
            None => Vec::new(),
        };
        let snapshot_len = cmds.len();
        cmds.extend(saved.changes.iter().cloned());
        let mut rebuild = Rebuild::default();
        for (n, cmd) in cmds.into_iter().enumerate() {
            let Err(e) = self.apply_locked(topology, &cmd, Origin::Replaying, &mut rebuild) else {
                continue;
            };
            if n >= snapshot_len {
                // The log replays what was applied once, refusals included (they were
                // refused then too, and changed nothing).
                tracing::debug!(error = %e, "log entry refused again at recovery");
                continue;
            }
            match cmd {
                // Definitions written by another broker may hold arguments this one refuses:
                // keep the queue and its messages without them, and say so.
                Command::DeclareQueue { vhost, mut queue } => {
                    tracing::warn!(queue = %queue.name, %vhost, error = %e, "ignoring invalid queue arguments");
                    queue.arguments = Default::default();
                    let retry = Command::DeclareQueue { vhost, queue };
                    self.apply_locked(topology, &retry, Origin::Replaying, &mut rebuild)
                        .map_err(|e| e.to_string())?;
                }
                other => return Err(format!("cannot recreate {other:?}: {e}")),
            }
        }
        // Now the queues of this node that survived the replay start, each from its log. Its
        // transient and exclusive queues are gone with its memory; the group is told so (see
        // `Command::ForgetTransient`) once it runs.
        let me = self.node();
        for v in topology.vhosts() {
            let Some(rt) = self.vhost(&v.name) else {
                continue;
            };
            let survivors = v
                .queues()
                .filter(|q| q.home != me || (q.durable && q.exclusive_owner.is_none()));
            for q in survivors {
                if let Some(h) = self.handle_for(&rt, q) {
                    rt.queue_started(h);
                }
            }
            rebuild.of(&v.name).all = true;
        }
        self.rebuild_routes(topology, rebuild);
        for v in topology.vhosts() {
            let (exchanges, queues) = (v.exchanges().count(), v.queues().count());
            tracing::info!(vhost = %v.name, exchanges, queues, bindings = v.bindings().len(), "recovered the durable topology");
        }
        Ok(())
    }

    fn all_vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Node `node` went down: this node's queues forget its connections, and its transient
    /// and exclusive queues leave the topology, as RabbitMQ deletes them when their node
    /// goes. Every node that sees it proposes the deletion; the first to commit does it.
    pub(crate) fn node_gone(self: &Arc<Self>, node: NodeId) {
        for v in self.all_vhosts() {
            for q in v.running_queues() {
                q.node_gone(node);
            }
        }
        if node == self.node() {
            return;
        }
        self.replicas.leader_gone(node.0);
        let queues: Vec<(String, ShortStr, QueueId)> = self.read(|t| {
            t.vhosts()
                .flat_map(|v| {
                    v.queues()
                        .filter(|q| q.home == node && (!q.durable || q.exclusive_owner.is_some()))
                        .map(|q| (v.name.clone(), q.name.clone(), q.id))
                })
                .collect()
        });
        if queues.is_empty() {
            return;
        }
        let meta = self.clone();
        tokio::spawn(async move {
            if let Err(e) = meta.submit(&Command::DeleteQueues { queues }).await {
                tracing::info!(
                    node = %meta.peers.name_of(node),
                    error = ?e,
                    "cannot delete the transient queues of a node that went down"
                );
            }
        });
    }

    /// Stops every queue of this node, keeping their logs: the node is shutting down.
    pub async fn shut_down(&self) {
        for v in self.all_vhosts() {
            for q in v.running_queues() {
                q.shut_down().await;
            }
        }
    }

    /// The durable part of the topology, as the definitions file holds it.
    pub fn export(&self, scope: Scope) -> Definitions {
        self.read(|t| t.export(scope))
    }

    /// The whole topology (transient and exclusive queues included, with their ids and
    /// homes) and where it stands in the log, taken under one lock so the two agree: a Raft
    /// snapshot.
    pub(crate) fn snapshot_state(
        &self,
    ) -> (
        Definitions,
        Option<LogId<u64>>,
        StoredMembership<u64, BasicNode>,
    ) {
        let held = self.lock();
        (
            held.topology.export(Scope::All),
            held.applied,
            held.membership.clone(),
        )
    }

    /// Replaces the topology by a snapshot the leader sent (this node was too far behind for
    /// the log): queues of this node that the snapshot no longer holds are deleted, those it
    /// holds and that do not run yet start (from their logs, if they have any), and every
    /// vhost's routing is compiled again.
    pub(crate) fn install(
        self: &Arc<Self>,
        defs: &Definitions,
        applied: Option<LogId<u64>>,
        membership: StoredMembership<u64, BasicNode>,
    ) -> Result<(), String> {
        let mut fresh = Topology::new();
        let cmds = fresh.import_commands(defs, self.node(), &mut || self.ids.next())?;
        for c in &cmds {
            if let Err(e) = fresh.apply(c) {
                tracing::warn!(error = %e, "a snapshot entry does not apply");
            }
        }
        let mut held = self.lock();
        let old = std::mem::replace(&mut held.topology, fresh);
        let topology = &held.topology;
        for v in old.vhosts() {
            if topology.vhost(&v.name).is_some() {
                continue;
            }
            if let Ok(mut m) = self.vhosts.write() {
                if let Some(rt) = m.remove(&v.name) {
                    for q in rt.running_queues() {
                        tokio::spawn(async move {
                            let _ = q.delete(false, false).await;
                        });
                    }
                }
            }
        }
        let mut rebuild = Rebuild::default();
        for v in topology.vhosts() {
            let rt = match self.vhost(&v.name) {
                Some(rt) => rt,
                None => {
                    let rt = VHost::new(&v.name, Arc::downgrade(self));
                    if let Ok(mut m) = self.vhosts.write() {
                        m.insert(v.name.clone(), rt.clone());
                    }
                    rt
                }
            };
            for h in rt.running_queues() {
                let kept = v.queue(h.name()).is_some_and(|q| q.id == h.id());
                if !kept {
                    if let Some(h) = rt.queue_stopped(h.name(), h.id()) {
                        if h.is_local() {
                            tokio::spawn(async move {
                                let _ = h.delete(false, false).await;
                            });
                        }
                    }
                }
            }
            for q in v.queues() {
                if rt.queue(&q.name).is_none() {
                    if let Some(h) = self.handle_for(&rt, q) {
                        rt.queue_started(h);
                    }
                }
            }
            rebuild.of(&v.name).all = true;
        }
        self.rebuild_routes(topology, rebuild);
        self.stand_at(held, applied, membership);
        Ok(())
    }

    pub fn login(
        &self,
        name: &str,
        password: &str,
        from_loopback: bool,
    ) -> Result<User, LoginError> {
        self.read(|t| auth::login(t, &self.loopback_users, name, password, from_loopback))
    }
}
