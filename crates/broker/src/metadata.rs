//! The node's topology at run time: the pure [`Topology`] behind one lock, and the work each
//! change brings with it. Every change goes the same way: a [`Command`] is applied (checked,
//! deterministic, all or nothing), then its [`Effect`]s are carried out in order (queues
//! started or stopped, routing snapshots swapped), then, if something durable changed, the
//! caller waits until the definitions file holds it. Applying and carrying out happen under
//! the same lock so that effects land in the order of their commands; neither does I/O or
//! waits.
//!
//! This is where a replicated log will sit: commands will go through it before being applied
//! here, and the effects stay the same.

use crate::auth::{self, LoginError};
use crate::mail::Mailboxes;
use crate::persist::{MetaStore, Saved};
use crate::queue::{self, QueueHandle};
use crate::routing::Changes;
use crate::vhost::{StoreLayout, VHost};
use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use warren_amqp::{AmqpError, AmqpResult};
use warren_meta::{
    Applied, Command, Definitions, Effect, NodeId, Queue, Scope, Topology, UidSource, User,
};

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
    /// Declared now: it starts empty, whatever an earlier queue of its name left on disk.
    Declared,
    /// Recreated at start-up: a durable queue takes its messages back from its log.
    Recovered,
    /// Being replayed at start-up (the snapshot, then the journal): queues start only once
    /// everything is applied, so that a queue deleted and declared again under its name
    /// starts once, from the one log that is its own.
    Replaying,
}

pub struct Metadata {
    topology: Mutex<Topology>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    pub store: MetaStore,
    pub ids: UidSource,
    settings: StoreLayout,
    loopback_users: Vec<String>,
    /// The node's connection mailboxes, which its queues deliver to.
    post: Arc<Mailboxes>,
}

impl Metadata {
    pub fn new(
        node: NodeId,
        store: MetaStore,
        settings: StoreLayout,
        loopback_users: Vec<String>,
        post: Arc<Mailboxes>,
    ) -> Arc<Metadata> {
        Arc::new(Metadata {
            topology: Mutex::new(Topology::new()),
            vhosts: RwLock::new(HashMap::default()),
            store,
            ids: UidSource::new(node),
            settings,
            loopback_users,
            post,
        })
    }

    pub fn node(&self) -> NodeId {
        self.ids.node()
    }

    fn lock(&self) -> MutexGuard<'_, Topology> {
        // A poisoned lock means a panic elsewhere; the topology itself is consistent because
        // `apply` changes nothing when it fails.
        self.topology.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the topology.
    pub fn read<T>(&self, f: impl FnOnce(&Topology) -> T) -> T {
        f(&self.lock())
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().ok()?.get(name).cloned()
    }

    /// Applies a change and carries out its effects; returns what changed and, if it must be
    /// on disk before the client hears of it, the definitions generation to wait for.
    pub fn apply(self: &Arc<Self>, cmd: &Command) -> AmqpResult<(Applied, Option<u64>)> {
        self.apply_from(cmd, Origin::Declared)
    }

    fn apply_from(
        self: &Arc<Self>,
        cmd: &Command,
        origin: Origin,
    ) -> AmqpResult<(Applied, Option<u64>)> {
        let mut topology = self.lock();
        let mut rebuild = Rebuild::default();
        let applied = self.apply_locked(&mut topology, cmd, origin, &mut rebuild)?;
        // Recorded under the lock, so the journal holds changes in the order they were made.
        let index = applied.durable.then(|| self.store.record(cmd));
        self.rebuild_routes(&topology, rebuild);
        drop(topology);
        Ok((applied, index))
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

    /// Waits until a change is in the metadata journal on disk.
    pub async fn persisted(&self, index: Option<u64>) -> AmqpResult<()> {
        let Some(i) = index else { return Ok(()) };
        self.store
            .wait(i)
            .await
            .map_err(|e| AmqpError::internal_error(format!("cannot write definitions: {e}")))
    }

    /// Applies a change and waits until it is durable where it must be.
    pub async fn change(self: &Arc<Self>, cmd: &Command) -> AmqpResult<Applied> {
        let (applied, generation) = self.apply(cmd)?;
        self.persisted(generation).await?;
        Ok(applied)
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
                if origin != Origin::Replaying {
                    if let Some(v) = self.vhost(vhost) {
                        if let Some(h) = self.start_queue(&v, queue, origin) {
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
                        if h.is_running() {
                            tokio::spawn(async move {
                                let _ = h.delete(false, false).await;
                            });
                        }
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
            Effect::AccessChanged | Effect::PoliciesChanged { .. } => {}
        }
    }

    /// Starts the actor of a queue that lives on this node.
    fn start_queue(&self, v: &Arc<VHost>, q: &Queue, origin: Origin) -> Option<QueueHandle> {
        let s = &self.settings;
        let start = if q.durable {
            let dir = s.durable_dir(q.id);
            if origin == Origin::Recovered {
                let legacy = s.legacy_durable_dir(&v.name, &q.name);
                if !dir.exists() && legacy.exists() {
                    if let Err(e) = std::fs::rename(&legacy, &dir) {
                        tracing::error!(queue = %q.name, vhost = %v.name, error = %e, "cannot move the queue's log to its new place");
                    }
                }
                let levels = q.args.max_priority.map_or(1, |p| p as u16 + 1);
                match queue::recover(s.config(dir, q), levels) {
                    Ok((start, repairs)) => {
                        for r in repairs {
                            tracing::warn!(queue = %q.name, vhost = %v.name, "{r}");
                        }
                        start
                    }
                    Err(e) => {
                        tracing::error!(queue = %q.name, vhost = %v.name, error = %e, "cannot open the queue's log");
                        return None;
                    }
                }
            } else {
                // A new queue starts empty, whatever an earlier queue of that name left.
                let _ = std::fs::remove_dir_all(&dir);
                queue::empty(s.config(dir, q))
            }
        } else {
            queue::empty(s.config(s.transient_dir(q.id), q))
        };
        let around = queue::Surroundings {
            on_remove: v.on_remove(),
            dead_letters: v.dead_letters(),
            post: self.post.clone(),
        };
        Some(queue::spawn(&v.name, q.clone(), start, around))
    }

    /// Recreates what a definitions file describes, at start-up: durable queues take their
    /// messages back from their logs. All of it is applied under one lock and each vhost's
    /// routing is compiled once at the end, so start-up time grows with the topology's size,
    /// not with its square.
    pub fn recover(self: &Arc<Self>, saved: &Saved) -> Result<(), String> {
        let node = self.node();
        let mut topology = self.lock();
        let mut cmds = match &saved.definitions {
            Some(defs) => topology.import_commands(defs, node, &mut || self.ids.next())?,
            None => Vec::new(),
        };
        let snapshot_len = cmds.len();
        cmds.extend(saved.changes.iter().cloned());
        let mut rebuild = Rebuild::default();
        for (n, cmd) in cmds.into_iter().enumerate() {
            let Err(e) = self.apply_locked(&mut topology, &cmd, Origin::Replaying, &mut rebuild)
            else {
                continue;
            };
            if n >= snapshot_len {
                // The journal replays what was accepted once; a change that no longer
                // applies (it depended on something transient) is skipped, as it was moot.
                tracing::debug!(error = %e, "journal entry skipped at recovery");
                continue;
            }
            match cmd {
                // Definitions written by another broker may hold arguments this one refuses:
                // keep the queue and its messages without them, and say so.
                Command::DeclareQueue { vhost, mut queue } => {
                    tracing::warn!(queue = %queue.name, %vhost, error = %e, "ignoring invalid queue arguments");
                    queue.arguments = Default::default();
                    let retry = Command::DeclareQueue { vhost, queue };
                    self.apply_locked(&mut topology, &retry, Origin::Replaying, &mut rebuild)
                        .map_err(|e| e.to_string())?;
                }
                other => return Err(format!("cannot recreate {other:?}: {e}")),
            }
        }
        // Now the queues that survived the replay start, each from its log.
        for v in topology.vhosts() {
            let Some(rt) = self.vhost(&v.name) else {
                continue;
            };
            for q in v.queues() {
                if let Some(h) = self.start_queue(&rt, q, Origin::Recovered) {
                    rt.queue_started(h);
                }
            }
            rebuild.of(&v.name).all = true;
        }
        self.rebuild_routes(&topology, rebuild);
        for v in topology.vhosts() {
            let (exchanges, queues) = (v.exchanges().count(), v.queues().count());
            tracing::info!(vhost = %v.name, exchanges, queues, bindings = v.bindings().len(), "recovered the durable topology");
        }
        Ok(())
    }

    /// Stops every queue of this node, keeping their logs: the node is shutting down.
    pub async fn shut_down(&self) {
        let vhosts: Vec<Arc<VHost>> = match self.vhosts.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return,
        };
        for v in vhosts {
            for q in v.running_queues() {
                q.shut_down().await;
            }
        }
    }

    /// The durable part of the topology, as the definitions file holds it.
    pub fn export(&self, scope: Scope) -> Definitions {
        self.read(|t| t.export(scope))
    }

    /// The durable topology with the journal index it covers, taken under the lock that
    /// changes are recorded under, so the two agree.
    pub fn snapshot(&self) -> Definitions {
        let topology = self.lock();
        Definitions {
            warren_journal_index: Some(self.store.last_index()),
            ..topology.export(Scope::Durable)
        }
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
