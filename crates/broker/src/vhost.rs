//! A virtual host at run time: the thin layer between channels and the topology. It turns a
//! client's request into a [`Command`] for [`Metadata`] (where RabbitMQ's rules are checked
//! and the change is applied), keeps the handles of the vhost's running queues, and publishes
//! the routing [`Snapshot`] that publishers read without taking any lock.

use crate::message::Message;
use crate::metadata::Metadata;
use crate::placement;
use crate::queue::{DeadLetterSink, OnRemove, QueueDisk, QueueHandle};
use crate::routing::{Changes, Snapshot};
use arc_swap::ArcSwap;
use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use warren_amqp::{AmqpError, AmqpResult, FieldTable, ShortStr};
use warren_meta::rules::{default_exchange_refused, describe};
use warren_meta::{
    Binding, Command, ConnId, Exchange, ExchangeKind, QueueArgs, QueueDeclaration, QueueId,
    QueueType,
};

/// What `exchange.declare` asks for.
pub struct ExchangeDeclare {
    pub name: ShortStr,
    pub kind: ShortStr,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// What `queue.declare` asks for, with the name already resolved.
pub struct QueueDeclare {
    pub name: ShortStr,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub conn: ConnId,
}

pub struct VHost {
    pub name: String,
    /// Running queues by name. Changed only while the metadata applies a change.
    queues: Mutex<HashMap<ShortStr, QueueHandle>>,
    snapshot: ArcSwap<Snapshot>,
    meta: Weak<Metadata>,
    this: Weak<VHost>,
}

/// Where queues of this node keep messages on disk, and how much they keep in memory (the
/// `[store]` section of the configuration, laid out under the data directory).
#[derive(Debug, Clone)]
pub struct StoreLayout {
    pub data_dir: std::path::PathBuf,
    pub segment_bytes: u64,
    pub queue_memory_bytes: u64,
}

impl StoreLayout {
    /// A durable queue's log directory, named by the queue's id (kept across restarts): a
    /// queue deleted and declared again under its name is another queue with another log, so
    /// nothing the old one does on its way out can touch the new one's files.
    pub fn durable_dir(&self, id: QueueId) -> std::path::PathBuf {
        self.data_dir
            .join("queues")
            .join(format!("{}-{}", id.node, id.n))
    }

    /// Where a durable queue's log was kept before logs were named by id: a hash of the vhost
    /// and queue names. Read once, at the first start that finds it, and moved.
    pub fn legacy_durable_dir(&self, vhost: &str, queue: &ShortStr) -> std::path::PathBuf {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(vhost.as_bytes());
        h.update([0]);
        h.update(queue.as_bytes());
        let hex: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.data_dir.join("queues").join(hex)
    }

    /// A quorum queue's group directory on this node (its log and snapshot).
    pub fn quorum_dir(&self, id: QueueId) -> std::path::PathBuf {
        self.data_dir
            .join("quorum")
            .join(format!("{}-{}", id.node, id.n))
    }

    /// A transient queue's log directory, used only if it pages messages out; the whole
    /// `transient` directory is emptied at start.
    pub fn transient_dir(&self, id: QueueId) -> std::path::PathBuf {
        self.data_dir
            .join("transient")
            .join(format!("{}-{}", id.node, id.n))
    }

    pub fn config(&self, dir: std::path::PathBuf, q: &warren_meta::Queue) -> QueueDisk {
        QueueDisk {
            dir,
            segment_bytes: self.segment_bytes,
            memory_bytes: if q.args.lazy {
                0
            } else {
                self.queue_memory_bytes
            },
        }
    }
}

/// How many nodes hold a quorum queue unless its declaration says otherwise (RabbitMQ's
/// default; fewer if fewer nodes run).
const QUORUM_GROUP_SIZE: u64 = 3;

/// How long a closing connection waits for its exclusive queues to leave the topology.
const FORGET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn metadata_gone() -> AmqpError {
    AmqpError::internal_error("the node is shutting down")
}

impl VHost {
    pub(crate) fn new(name: &str, meta: Weak<Metadata>) -> Arc<VHost> {
        Arc::new_cyclic(|this| VHost {
            name: name.to_owned(),
            queues: Mutex::new(HashMap::default()),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            meta,
            this: this.clone(),
        })
    }

    fn meta(&self) -> AmqpResult<Arc<Metadata>> {
        self.meta.upgrade().ok_or_else(metadata_gone)
    }

    /// The queue type declarations that name none get here (none while shutting down).
    pub fn default_queue_type(&self) -> Option<QueueType> {
        self.meta
            .upgrade()
            .and_then(|m| m.default_queue_type(&self.name))
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<ShortStr, QueueHandle>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn queue_started(&self, h: QueueHandle) {
        self.queues().insert(h.name().clone(), h);
    }

    /// Forgets a queue's handle if it is still queue `id`; returns it.
    pub(crate) fn queue_stopped(&self, name: &ShortStr, id: QueueId) -> Option<QueueHandle> {
        let mut qs = self.queues();
        if qs.get(name).map(QueueHandle::id) != Some(id) {
            return None;
        }
        qs.remove(name)
    }

    /// Brings routing up to date with a batch of changes (called while they are applied).
    pub(crate) fn update_routes(&self, v: &warren_meta::Vhost, changes: &Changes) {
        let snapshot = self.routes().update(v, &self.queues(), changes);
        self.snapshot.store(Arc::new(snapshot));
    }

    /// The current routing snapshot.
    pub fn routes(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    fn rs(&self, kind: &str, name: &ShortStr) -> String {
        describe(kind, name, &self.name)
    }

    // ---- exchanges ----

    pub async fn declare_exchange(&self, req: ExchangeDeclare) -> AmqpResult<()> {
        let meta = self.meta()?;
        if req.passive {
            if req.name.is_empty() {
                return Err(default_exchange_refused());
            }
            let exists = meta.read(|t| {
                t.vhost(&self.name)
                    .is_some_and(|v| v.exchange(&req.name).is_some())
            });
            if !exists {
                return Err(AmqpError::not_found(format!(
                    "no {}",
                    self.rs("exchange", &req.name)
                )));
            }
            return Ok(());
        }
        let kind = ExchangeKind::parse(req.kind.as_bytes()).ok_or_else(|| {
            AmqpError::command_invalid(format!("unknown exchange type '{}'", req.kind))
        })?;
        let exchange = Exchange {
            name: req.name,
            kind,
            durable: req.durable,
            auto_delete: req.auto_delete,
            internal: req.internal,
            arguments: req.arguments,
        };
        // Declaring what exists is answered from the local copy, without a change.
        let equivalent = meta.read(|t| match t.vhost(&self.name) {
            Some(v) => v.check_exchange_declaration(&exchange),
            None => Ok(false),
        })?;
        if equivalent {
            return Ok(());
        }
        self.change(Command::DeclareExchange {
            vhost: self.name.clone(),
            exchange,
        })
        .await
    }

    /// Makes a change and waits until it is applied on this node.
    async fn change(&self, cmd: Command) -> AmqpResult<()> {
        self.meta()?.change(&cmd).await.map(drop)
    }

    pub async fn delete_exchange(&self, name: ShortStr, if_unused: bool) -> AmqpResult<()> {
        self.change(Command::DeleteExchange {
            vhost: self.name.clone(),
            name,
            if_unused,
        })
        .await
    }

    // ---- bindings ----

    /// Adds a binding; `conn` is checked against exclusive destination queues.
    pub async fn bind(&self, binding: Binding, conn: ConnId) -> AmqpResult<()> {
        // Binding what is bound is answered from the local copy, without a change.
        let bound = self.meta()?.read(|t| match t.vhost(&self.name) {
            Some(v) => v.check_rebinding(&binding, Some(conn)),
            None => Ok(false),
        })?;
        if bound {
            return Ok(());
        }
        self.change(Command::Bind {
            vhost: self.name.clone(),
            binding,
            by: Some(conn),
        })
        .await
    }

    /// Removes a binding. Like RabbitMQ, removing one that does not exist (or whose exchange
    /// or queue does not) is not an error.
    pub async fn unbind(&self, binding: Binding, conn: ConnId) -> AmqpResult<()> {
        self.change(Command::Unbind {
            vhost: self.name.clone(),
            binding,
            by: Some(conn),
        })
        .await
    }

    // ---- queues ----

    /// Declares a queue, or checks an existing one against the declaration. Returns its handle
    /// and whether it was created.
    pub async fn declare_queue(&self, req: QueueDeclare) -> AmqpResult<(QueueHandle, bool)> {
        let meta = self.meta()?;
        let declaration = QueueDeclaration {
            name: req.name,
            id: meta.ids.next(),
            durable: req.durable,
            auto_delete: req.auto_delete,
            exclusive_owner: req.exclusive.then_some(req.conn),
            arguments: req.arguments,
            home: meta.node(),
        };
        // An equivalent redeclaration is answered from the local copy, without a change.
        let existing = meta.read(|t| match t.vhost(&self.name) {
            Some(v) => v
                .check_queue_declaration(&declaration)
                .map(|q| q.map(|q| q.id)),
            None => Ok(None),
        })?;
        if existing.is_none() {
            let mut declaration = declaration;
            let describe = self.rs("queue", &declaration.name);
            let args = QueueArgs::parse(&declaration.arguments, &describe)?;
            let running = meta.running_nodes();
            let me = meta.node();
            let vhost = self.name.clone();
            let command = if args.queue_type == QueueType::Quorum {
                let size = args.initial_group_size.unwrap_or(QUORUM_GROUP_SIZE) as usize;
                let members =
                    meta.read(|t| placement::members(t, me, &running, args.locator, size));
                declaration.home = members.first().copied().unwrap_or(me);
                Command::DeclareQuorumQueue {
                    vhost,
                    queue: declaration.clone(),
                    members,
                }
            } else {
                // Exclusive queues stay with their connection, as in RabbitMQ.
                if declaration.exclusive_owner.is_none() {
                    let id = declaration.id.n;
                    declaration.home =
                        meta.read(|t| placement::home(t, me, &running, args.locator, id));
                }
                Command::DeclareQueue {
                    vhost,
                    queue: declaration.clone(),
                }
            };
            let (name, home) = (declaration.name.clone(), declaration.home);
            let changed = meta.change(&command).await?;
            let handle = self.queue(&name).ok_or_else(|| self.no_queue(&name))?;
            if home != meta.node() {
                serving(&handle).await;
            }
            return Ok((handle, changed));
        }
        let handle = self
            .queue(&declaration.name)
            .ok_or_else(|| self.no_queue(&declaration.name))?;
        Ok((handle, false))
    }

    fn no_queue(&self, name: &ShortStr) -> AmqpError {
        AmqpError::not_found(format!("no {}", self.rs("queue", name)))
    }

    /// Looks a queue up for use by connection `conn` (405 if another owns it).
    pub fn queue_for(&self, name: &ShortStr, conn: ConnId) -> AmqpResult<QueueHandle> {
        let q = self.queue(name).ok_or_else(|| self.no_queue(name))?;
        q.queue().check_exclusive(&self.name, Some(conn))?;
        Ok(q)
    }

    /// The handles of every queue of this vhost that runs on this node.
    pub(crate) fn running_queues(&self) -> Vec<QueueHandle> {
        self.queues().values().cloned().collect()
    }

    pub fn queue(&self, name: &ShortStr) -> Option<QueueHandle> {
        self.queues().get(name).cloned()
    }

    /// Deletes a queue; a queue that does not exist counts as deleted with 0 messages.
    pub async fn delete_queue(
        &self,
        name: &ShortStr,
        if_unused: bool,
        if_empty: bool,
        conn: ConnId,
    ) -> AmqpResult<u32> {
        let q = match self.queue_for(name, conn) {
            Ok(q) => q,
            Err(e) if e.code == warren_amqp::reply::NOT_FOUND => return Ok(0),
            Err(e) => return Err(e),
        };
        if q.queue().kind == QueueType::Quorum && (if_unused || if_empty) {
            let flag = if if_unused { "if-unused" } else { "if-empty" };
            return Err(AmqpError::not_implemented(format!(
                "cannot delete {}. queue.delete operations with {flag} flag set are not supported by quorum queues",
                self.rs("queue", name)
            )));
        }
        let n = q.delete(if_unused, if_empty).await?;
        self.forget(&q).await?;
        Ok(n)
    }

    /// Takes a queue (that has stopped or is stopping) out of the topology, with its bindings.
    async fn forget(&self, q: &QueueHandle) -> AmqpResult<()> {
        self.change(Command::DeleteQueue {
            vhost: self.name.clone(),
            name: q.name().clone(),
            id: q.id(),
        })
        .await
    }

    /// A connection closed: its exclusive queues go with it.
    pub async fn connection_closed(&self, conn: ConnId) {
        let owned: Vec<QueueHandle> = self
            .queues()
            .values()
            .filter(|q| q.queue().exclusive_owner == Some(conn))
            .cloned()
            .collect();
        for q in owned {
            let _ = q.delete(false, false).await;
            // Taken out of the topology through the group; without a majority that waits, and
            // a closing connection does not wait long for it.
            let Some(v) = self.this.upgrade() else { return };
            let forgetting = tokio::spawn(async move { v.forget(&q).await });
            let _ = tokio::time::timeout(FORGET_WAIT, forgetting).await;
        }
    }

    /// What a queue calls when it removes itself (auto-delete, x-expires): the group is
    /// told, without the queue waiting for it.
    pub(crate) fn on_remove(&self) -> OnRemove {
        let vhost = self.this.clone();
        Arc::new(move |name: &ShortStr, id: QueueId| {
            let Some(v) = vhost.upgrade() else { return };
            let Ok(meta) = v.meta() else { return };
            let cmd = Command::DeleteQueue {
                vhost: v.name.clone(),
                name: name.clone(),
                id,
            };
            tokio::spawn(async move {
                if let Err(e) = meta.change(&cmd).await {
                    tracing::warn!(error = %e, "cannot take a removed queue out of the topology");
                }
            });
        })
    }

    /// Where a queue sends the messages it dead-letters: routed from the dead-letter exchange
    /// like any publish, to the queues that can be reached.
    pub(crate) fn dead_letters(&self) -> DeadLetterSink {
        let vhost = self.this.clone();
        DeadLetterSink::new(move |m: &Message| {
            let Some(v) = vhost.upgrade() else {
                return Vec::new();
            };
            let routes = v.routes();
            let Some(x) = routes.exchange(&m.exchange) else {
                return Vec::new();
            };
            let mut queues = Vec::new();
            routes.route(x, m, &mut queues);
            queues.retain(QueueHandle::is_reachable);
            queues
        })
    }
}

/// Waits (a little) until a queue just placed on another node runs there: that node applies
/// the declaration shortly after this one, and the client may use the queue at once.
async fn serving(handle: &QueueHandle) {
    for _ in 0..250 {
        if handle.counts().await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
