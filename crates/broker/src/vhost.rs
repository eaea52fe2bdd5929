//! A virtual host: its exchanges, queues and bindings.
//!
//! Declarations go through one mutex-held master copy and, when they change something, publish
//! a new routing [`Snapshot`]. Publishers only ever load the snapshot, so declaring never slows
//! publishing. Checks and error texts follow RabbitMQ's `rabbit_channel`, `rabbit_exchange` and
//! `rabbit_amqqueue`.

use crate::definitions::{self, Definitions};
use crate::error::{AmqpError, AmqpResult};
use crate::persist::MetaStore;
use crate::queue::{
    self, DeadLetterSink, OnRemove, QueueArgs, QueueHandle, QueueInfo, StoreConfig,
};
use crate::routing::headers::HeadersBinding;
use crate::routing::{Binding, Destination, ExchangeKind, ExchangeSpec, Snapshot};
use arc_swap::ArcSwap;
use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use warren_amqp::{FieldTable, FieldValue, ShortStr};

static NEXT_QUEUE_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeDef {
    pub name: ShortStr,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

impl ExchangeDef {
    fn alternate(&self) -> Option<ShortStr> {
        match self.arguments.get("alternate-exchange") {
            Some(FieldValue::LongStr(b)) => Some(ShortStr::from_bytes(b.clone())),
            _ => None,
        }
    }
}

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
    pub conn_id: u64,
}

/// The queue arguments RabbitMQ compares when a classic queue is declared again.
const QUEUE_EQUIVALENCE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
];

#[derive(Default)]
struct State {
    exchanges: HashMap<ShortStr, ExchangeDef>,
    queues: HashMap<ShortStr, QueueHandle>,
    bindings: Vec<Binding>,
    /// Set by a change to something durable, so that the change is written to disk.
    durable_changed: bool,
}

impl State {
    /// Whether a binding outlives a restart: both of its ends must.
    fn is_durable(&self, b: &Binding) -> bool {
        let source = self.exchanges.get(&b.source).is_some_and(|x| x.durable);
        let dest = match &b.destination {
            Destination::Queue(q) => self.queues.get(q).is_some_and(|h| h.info().durable),
            Destination::Exchange(x) => self.exchanges.get(x).is_some_and(|x| x.durable),
        };
        source && dest && !b.source.is_empty()
    }

    fn remove_bindings(&mut self, keep: impl Fn(&Binding) -> bool) -> Vec<Binding> {
        let (kept, removed): (Vec<Binding>, Vec<Binding>) = std::mem::take(&mut self.bindings)
            .into_iter()
            .partition(|b| keep(b));
        self.bindings = kept;
        if removed.iter().any(|b| self.is_durable(b)) {
            self.durable_changed = true;
        }
        removed
    }
}

pub struct VHost {
    pub name: String,
    state: Mutex<State>,
    snapshot: ArcSwap<Snapshot>,
    meta: Arc<MetaStore>,
    store: StoreSettings,
    this: Weak<VHost>,
}

/// Where queues of this node keep messages on disk, and how much they keep in memory.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub data_dir: std::path::PathBuf,
    pub segment_bytes: u64,
    pub queue_memory_bytes: u64,
}

impl StoreSettings {
    /// A durable queue's log directory: stable across restarts, named by a hash of the vhost
    /// and queue names (which may hold any bytes).
    pub fn durable_dir(&self, vhost: &str, queue: &ShortStr) -> std::path::PathBuf {
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

    /// A transient queue's log directory, used only if it pages messages out; the whole
    /// `transient` directory is emptied at start.
    pub fn transient_dir(&self, id: u64) -> std::path::PathBuf {
        self.data_dir.join("transient").join(id.to_string())
    }

    fn config(&self, dir: std::path::PathBuf, arguments: &FieldTable) -> StoreConfig {
        let lazy = matches!(arguments.get("x-queue-mode"), Some(FieldValue::LongStr(m)) if m.as_ref() == b"lazy");
        StoreConfig {
            dir,
            segment_bytes: self.segment_bytes,
            memory_bytes: if lazy { 0 } else { self.queue_memory_bytes },
        }
    }
}

/// "exchange 'x' in vhost '/'", as RabbitMQ names resources in its messages.
pub fn describe(kind: &str, name: &ShortStr, vhost: &str) -> String {
    format!("{kind} '{name}' in vhost '{vhost}'")
}

impl VHost {
    pub fn new(name: &str, meta: Arc<MetaStore>, store: StoreSettings) -> Arc<VHost> {
        let vhost = Arc::new_cyclic(|this| VHost {
            name: name.to_owned(),
            state: Mutex::new(State::default()),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            meta,
            store,
            this: this.clone(),
        });
        {
            let mut st = vhost.lock();
            let builtin = [
                ("", ExchangeKind::Direct, false),
                ("amq.direct", ExchangeKind::Direct, false),
                ("amq.fanout", ExchangeKind::Fanout, false),
                ("amq.topic", ExchangeKind::Topic, false),
                ("amq.headers", ExchangeKind::Headers, false),
                ("amq.match", ExchangeKind::Headers, false),
                ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
            ];
            for (n, kind, internal) in builtin {
                let name = ShortStr::from(n);
                st.exchanges.insert(
                    name.clone(),
                    ExchangeDef {
                        name,
                        kind,
                        durable: true,
                        auto_delete: false,
                        internal,
                        arguments: FieldTable::new(),
                    },
                );
            }
            vhost.publish(&mut st);
        }
        vhost
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere; the topology itself is still consistent
        // because every change is made in one step under the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a change visible: a new routing snapshot, and, if something durable changed, a
    /// definitions generation to wait for before replying.
    fn publish(&self, st: &mut State) -> Option<u64> {
        let specs = st.exchanges.values().map(|x| ExchangeSpec {
            name: &x.name,
            kind: x.kind,
            internal: x.internal,
            alternate: x.alternate(),
            is_default: x.name.is_empty(),
        });
        self.snapshot
            .store(Arc::new(Snapshot::build(specs, &st.bindings, &st.queues)));
        std::mem::take(&mut st.durable_changed).then(|| self.meta.bump())
    }

    /// Waits until a change is in the definitions file.
    async fn persisted(&self, generation: Option<u64>) -> AmqpResult<()> {
        let Some(g) = generation else { return Ok(()) };
        self.meta
            .wait(g)
            .await
            .map_err(|e| AmqpError::internal_error(format!("cannot write definitions: {e}")))
    }

    /// The current routing snapshot.
    pub fn routes(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    fn rs(&self, kind: &str, name: &ShortStr) -> String {
        describe(kind, name, &self.name)
    }

    fn no_exchange(&self, name: &ShortStr) -> AmqpError {
        AmqpError::not_found(format!("no {}", self.rs("exchange", name)))
    }

    fn no_queue(&self, name: &ShortStr) -> AmqpError {
        AmqpError::not_found(format!("no {}", self.rs("queue", name)))
    }

    // ---- exchanges ----

    pub async fn declare_exchange(&self, req: ExchangeDeclare) -> AmqpResult<()> {
        let generation = self.declare_exchange_now(req)?;
        self.persisted(generation).await
    }

    fn declare_exchange_now(&self, req: ExchangeDeclare) -> AmqpResult<Option<u64>> {
        let name = strip_cr_lf(&req.name);
        if req.passive {
            if name.is_empty() {
                return Err(default_exchange_refused());
            }
            let st = self.lock();
            return match st.exchanges.get(&name) {
                Some(_) => Ok(None),
                None => Err(self.no_exchange(&name)),
            };
        }
        let kind = ExchangeKind::parse(req.kind.as_bytes()).ok_or_else(|| {
            AmqpError::command_invalid(format!("unknown exchange type '{}'", req.kind))
        })?;
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        let mut st = self.lock();
        let existing = st.exchanges.get(&name).cloned();
        let mut generation = None;
        let def = match existing {
            Some(x) => x,
            None => {
                check_reserved("exchange", &name)?;
                if let Some(v) = req.arguments.get("alternate-exchange") {
                    if !matches!(v, FieldValue::LongStr(_)) {
                        return Err(AmqpError::precondition_failed(format!(
                            "invalid type '{}' for arg 'alternate-exchange' in {}",
                            v.type_name(),
                            self.rs("exchange", &name)
                        )));
                    }
                }
                let def = ExchangeDef {
                    name: name.clone(),
                    kind,
                    durable: req.durable,
                    auto_delete: req.auto_delete,
                    internal: req.internal,
                    arguments: req.arguments.clone(),
                };
                st.exchanges.insert(name.clone(), def.clone());
                st.durable_changed |= def.durable;
                generation = self.publish(&mut st);
                def
            }
        };
        let rs = self.rs("exchange", &name);
        field_equivalence("type", kind.as_str(), def.kind.as_str(), &rs)?;
        field_equivalence("durable", req.durable, def.durable, &rs)?;
        field_equivalence("auto_delete", req.auto_delete, def.auto_delete, &rs)?;
        field_equivalence("internal", req.internal, def.internal, &rs)?;
        args_equivalence(&def.arguments, &req.arguments, &["alternate-exchange"], &rs)?;
        Ok(generation)
    }

    pub async fn delete_exchange(&self, name: &ShortStr, if_unused: bool) -> AmqpResult<()> {
        let generation = self.delete_exchange_now(name, if_unused)?;
        self.persisted(generation).await
    }

    fn delete_exchange_now(&self, name: &ShortStr, if_unused: bool) -> AmqpResult<Option<u64>> {
        let name = strip_cr_lf(name);
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if name.starts_with(b"amq.") {
            return Err(AmqpError::access_refused(format!(
                "deletion of system {} not allowed",
                self.rs("exchange", &name)
            )));
        }
        let mut st = self.lock();
        if !st.exchanges.contains_key(&name) {
            return Ok(None);
        }
        if if_unused && st.bindings.iter().any(|b| b.source == name) {
            return Err(AmqpError::precondition_failed(format!(
                "{} in use",
                self.rs("exchange", &name)
            )));
        }
        remove_exchange(&mut st, &name);
        Ok(self.publish(&mut st))
    }

    pub fn exchange(&self, name: &ShortStr) -> Option<ExchangeDef> {
        self.lock().exchanges.get(name).cloned()
    }

    // ---- bindings ----

    /// Adds a binding; `conn_id` is checked against exclusive destination queues.
    pub async fn bind(&self, b: Binding, conn_id: u64) -> AmqpResult<()> {
        let generation = self.bind_now(b, conn_id)?;
        self.persisted(generation).await
    }

    fn bind_now(&self, b: Binding, conn_id: u64) -> AmqpResult<Option<u64>> {
        let b = Binding {
            source: strip_cr_lf(&b.source),
            destination: match b.destination {
                Destination::Queue(q) => Destination::Queue(strip_cr_lf(&q)),
                Destination::Exchange(x) => Destination::Exchange(strip_cr_lf(&x)),
            },
            ..b
        };
        let mut st = self.lock();
        self.check_binding(&st, &b, conn_id)?;
        if let Some(src) = st.exchanges.get(&b.source) {
            if src.kind == ExchangeKind::Headers {
                HeadersBinding::parse(&b.arguments)?;
            }
        }
        if st.bindings.contains(&b) {
            return Ok(None);
        }
        st.durable_changed |= st.is_durable(&b);
        st.bindings.push(b);
        Ok(self.publish(&mut st))
    }

    /// Removes a binding. Like RabbitMQ, removing one that does not exist (or whose exchange
    /// or queue does not) is not an error.
    pub async fn unbind(&self, b: Binding, conn_id: u64) -> AmqpResult<()> {
        let generation = self.unbind_now(b, conn_id)?;
        self.persisted(generation).await
    }

    fn unbind_now(&self, b: Binding, conn_id: u64) -> AmqpResult<Option<u64>> {
        let mut st = self.lock();
        if b.source.is_empty() || matches!(&b.destination, Destination::Exchange(x) if x.is_empty())
        {
            return Err(default_exchange_refused());
        }
        if let Destination::Queue(q) = &b.destination {
            if let Some(h) = st.queues.get(q) {
                check_exclusive(h, conn_id)?;
            }
        }
        if st.remove_bindings(|x| x != &b).is_empty() {
            return Ok(None);
        }
        auto_delete_exchange(&mut st, &b.source);
        Ok(self.publish(&mut st))
    }

    fn check_binding(&self, st: &State, b: &Binding, conn_id: u64) -> AmqpResult<()> {
        if b.source.is_empty() || matches!(&b.destination, Destination::Exchange(x) if x.is_empty())
        {
            return Err(default_exchange_refused());
        }
        if !st.exchanges.contains_key(&b.source) {
            return Err(self.no_exchange(&b.source));
        }
        match &b.destination {
            Destination::Exchange(x) => {
                if !st.exchanges.contains_key(x) {
                    return Err(self.no_exchange(x));
                }
            }
            Destination::Queue(q) => match st.queues.get(q) {
                None => return Err(self.no_queue(q)),
                Some(h) => check_exclusive(h, conn_id)?,
            },
        }
        Ok(())
    }

    // ---- queues ----

    /// Declares a queue, or checks an existing one against the declaration. Returns its handle
    /// and whether it was created.
    pub async fn declare_queue(&self, req: QueueDeclare) -> AmqpResult<(QueueHandle, bool)> {
        let (handle, created, generation) = self.declare_queue_now(req)?;
        self.persisted(generation).await?;
        Ok((handle, created))
    }

    fn declare_queue_now(&self, req: QueueDeclare) -> AmqpResult<(QueueHandle, bool, Option<u64>)> {
        let mut st = self.lock();
        // Exclusive queues are never durable, whatever the client asked.
        let durable = req.durable && !req.exclusive;
        if let Some(q) = st.queues.get(&req.name) {
            let info = q.info();
            let rs = self.rs("queue", &req.name);
            let owner = req.exclusive.then_some(req.conn_id);
            if info.exclusive_owner != owner {
                return Err(locked(&rs));
            }
            field_equivalence("durable", durable, info.durable, &rs)?;
            field_equivalence("auto_delete", req.auto_delete, info.auto_delete, &rs)?;
            args_equivalence(&info.arguments, &req.arguments, QUEUE_EQUIVALENCE_ARGS, &rs)?;
            return Ok((q.clone(), false, None));
        }
        let args = QueueArgs::parse(&req.arguments, &self.rs("queue", &req.name))?;
        let info = QueueInfo {
            id: NEXT_QUEUE_ID.fetch_add(1, Ordering::Relaxed),
            name: req.name.clone(),
            vhost: self.name.clone(),
            durable,
            exclusive_owner: req.exclusive.then_some(req.conn_id),
            auto_delete: req.auto_delete,
            arguments: req.arguments,
            args,
        };
        st.durable_changed |= info.durable;
        let dir = if info.durable {
            let dir = self.store.durable_dir(&self.name, &info.name);
            // A new queue starts empty, whatever an earlier queue of that name left behind.
            let _ = std::fs::remove_dir_all(&dir);
            dir
        } else {
            self.store.transient_dir(info.id)
        };
        let start = queue::empty(
            self.store.config(dir, &info.arguments),
            self.on_remove(),
            self.dead_letters(),
        );
        let handle = queue::spawn(info, start);
        st.queues.insert(req.name, handle.clone());
        let generation = self.publish(&mut st);
        Ok((handle, true, generation))
    }

    /// Looks a queue up for use by connection `conn_id` (405 if another owns it).
    pub fn queue_for(&self, name: &ShortStr, conn_id: u64) -> AmqpResult<QueueHandle> {
        let st = self.lock();
        let q = st.queues.get(name).ok_or_else(|| self.no_queue(name))?;
        check_exclusive(q, conn_id)?;
        Ok(q.clone())
    }

    pub fn queue(&self, name: &ShortStr) -> Option<QueueHandle> {
        self.lock().queues.get(name).cloned()
    }

    /// Deletes a queue; a queue that does not exist counts as deleted with 0 messages.
    pub async fn delete_queue(
        &self,
        name: &ShortStr,
        if_unused: bool,
        if_empty: bool,
        conn_id: u64,
    ) -> AmqpResult<u32> {
        let q = match self.queue_for(name, conn_id) {
            Ok(q) => q,
            Err(e) if e.code == warren_amqp::reply::NOT_FOUND => return Ok(0),
            Err(e) => return Err(e),
        };
        let n = q.delete(if_unused, if_empty).await?;
        let generation = self.forget_queue(&q);
        self.persisted(generation).await?;
        Ok(n)
    }

    /// Takes a queue (that has stopped or is stopping) out of the topology, with its bindings.
    fn forget_queue(&self, q: &QueueHandle) -> Option<u64> {
        let mut st = self.lock();
        if st.queues.get(q.name()).map(|h| h.id()) != Some(q.id()) {
            return None;
        }
        let dest = Destination::Queue(q.name().clone());
        let removed = st.remove_bindings(|b| b.destination != dest);
        st.queues.remove(q.name());
        st.durable_changed |= q.info().durable;
        for b in removed {
            auto_delete_exchange(&mut st, &b.source);
        }
        self.publish(&mut st)
    }

    /// A connection closed: its exclusive queues go with it.
    pub async fn connection_closed(&self, conn_id: u64) {
        let owned: Vec<QueueHandle> = self
            .lock()
            .queues
            .values()
            .filter(|q| q.info().exclusive_owner == Some(conn_id))
            .cloned()
            .collect();
        for q in owned {
            let _ = q.delete(false, false).await;
            // Exclusive queues are never durable: nothing to wait for.
            let _ = self.forget_queue(&q);
        }
    }
}

impl VHost {
    /// Adds this vhost's durable exchanges, queues and bindings to `defs`.
    pub fn export(&self, defs: &mut Definitions) {
        let st = self.lock();
        let vhost = &self.name;
        let mut exchanges: Vec<&ExchangeDef> = st
            .exchanges
            .values()
            .filter(|x| x.durable && !x.name.is_empty() && !x.name.starts_with(b"amq."))
            .collect();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        for x in exchanges {
            defs.exchanges.push(definitions::ExchangeDef {
                name: x.name.to_string(),
                vhost: vhost.clone(),
                kind: x.kind.as_str().to_owned(),
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: definitions::table_to_json(&x.arguments),
            });
        }
        let mut queues: Vec<&QueueHandle> =
            st.queues.values().filter(|q| q.info().durable).collect();
        queues.sort_by(|a, b| a.name().cmp(b.name()));
        for q in queues {
            let info = q.info();
            defs.queues.push(definitions::QueueDef {
                name: info.name.to_string(),
                vhost: vhost.clone(),
                durable: true,
                auto_delete: info.auto_delete,
                arguments: definitions::table_to_json(&info.arguments),
            });
        }
        for b in st.bindings.iter().filter(|b| st.is_durable(b)) {
            let (destination_type, destination) = match &b.destination {
                Destination::Queue(q) => ("queue", q),
                Destination::Exchange(x) => ("exchange", x),
            };
            defs.bindings.push(definitions::BindingDef {
                source: b.source.to_string(),
                vhost: vhost.clone(),
                destination: destination.to_string(),
                destination_type: destination_type.to_owned(),
                routing_key: b.routing_key.to_string(),
                arguments: definitions::table_to_json(&b.arguments),
            });
        }
    }

    /// Recreates this vhost's durable exchanges, queues and bindings from `defs` (at start).
    pub fn import(&self, defs: &Definitions) -> Result<(), String> {
        let mut st = self.lock();
        let mine = |v: &String| *v == self.name;
        for x in defs.exchanges.iter().filter(|x| mine(&x.vhost)) {
            let kind = ExchangeKind::parse(x.kind.as_bytes())
                .ok_or_else(|| format!("exchange '{}': unknown type '{}'", x.name, x.kind))?;
            let name = ShortStr::from(x.name.as_str());
            st.exchanges.insert(
                name.clone(),
                ExchangeDef {
                    name,
                    kind,
                    durable: x.durable,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: definitions::json_to_table(&x.arguments),
                },
            );
        }
        for q in defs.queues.iter().filter(|q| mine(&q.vhost)) {
            let name = ShortStr::from(q.name.as_str());
            if st.queues.contains_key(&name) {
                continue;
            }
            let arguments = definitions::json_to_table(&q.arguments);
            // Definitions written by another broker may hold arguments this one refuses:
            // keep the queue and its messages, and say so.
            let args = QueueArgs::parse(&arguments, &self.rs("queue", &name)).unwrap_or_else(|e| {
                tracing::warn!(queue = %q.name, vhost = %self.name, error = %e, "ignoring invalid queue arguments");
                QueueArgs::default()
            });
            let info = QueueInfo {
                id: NEXT_QUEUE_ID.fetch_add(1, Ordering::Relaxed),
                name: name.clone(),
                vhost: self.name.clone(),
                durable: q.durable,
                exclusive_owner: None,
                auto_delete: q.auto_delete,
                arguments,
                args,
            };
            let dir = self.store.durable_dir(&self.name, &info.name);
            let levels = info.args.max_priority.map_or(1, |p| p as u16 + 1);
            let (start, repairs) = queue::recover(
                self.store.config(dir, &info.arguments),
                levels,
                self.on_remove(),
                self.dead_letters(),
            )
            .map_err(|e| format!("queue '{}': cannot open its log: {e}", q.name))?;
            for r in repairs {
                tracing::warn!(queue = %q.name, vhost = %self.name, "{r}");
            }
            st.queues.insert(name, queue::spawn(info, start));
        }
        for b in defs.bindings.iter().filter(|b| mine(&b.vhost)) {
            let dest = ShortStr::from(b.destination.as_str());
            let binding = Binding {
                source: b.source.as_str().into(),
                destination: if b.destination_type == "exchange" {
                    Destination::Exchange(dest)
                } else {
                    Destination::Queue(dest)
                },
                routing_key: b.routing_key.as_str().into(),
                arguments: definitions::json_to_table(&b.arguments),
            };
            if !st.bindings.contains(&binding) {
                st.bindings.push(binding);
            }
        }
        st.durable_changed = false;
        self.publish(&mut st);
        Ok(())
    }

    /// What a queue calls when it removes itself (auto-delete, x-expires).
    fn on_remove(&self) -> OnRemove {
        let vhost = self.this.clone();
        Arc::new(move |q: &QueueHandle| {
            if let Some(v) = vhost.upgrade() {
                let _ = v.forget_queue(q);
            }
        })
    }

    /// Where a queue sends the messages it dead-letters: routed from the dead-letter exchange
    /// like any publish (no exchange, no route: dropped, as in RabbitMQ).
    fn dead_letters(&self) -> DeadLetterSink {
        let vhost = self.this.clone();
        Arc::new(move |m: Arc<crate::message::Message>| {
            let Some(v) = vhost.upgrade() else { return };
            let routes = v.routes();
            let Some(x) = routes.exchange(&m.exchange) else {
                return;
            };
            let mut queues = Vec::new();
            routes.route(x, &m, &mut queues);
            if queues.is_empty() {
                return;
            }
            // The sending queue must not wait on another queue's mailbox (two queues
            // dead-lettering to each other would wait forever), so the sends run on their own.
            tokio::spawn(async move {
                for q in queues {
                    let _ = q.publish_batch(vec![(m.clone(), None)]).await;
                }
            });
        })
    }
}

fn remove_exchange(st: &mut State, name: &ShortStr) {
    let dest = Destination::Exchange(name.clone());
    let removed = st.remove_bindings(|b| b.destination != dest && b.source != *name);
    if let Some(x) = st.exchanges.remove(name) {
        st.durable_changed |= x.durable;
    }
    for b in removed {
        if b.source != *name {
            auto_delete_exchange(st, &b.source);
        }
    }
}

/// An auto-delete exchange goes when the last binding from it is removed.
fn auto_delete_exchange(st: &mut State, name: &ShortStr) {
    let auto = st.exchanges.get(name).is_some_and(|x| x.auto_delete);
    if auto && !st.bindings.iter().any(|b| b.source == *name) {
        remove_exchange(st, name);
    }
}

fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

fn check_reserved(kind: &str, name: &ShortStr) -> AmqpResult<()> {
    if name.starts_with(b"amq.") {
        return Err(AmqpError::access_refused(format!(
            "{kind} name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    Ok(())
}

/// RabbitMQ refuses names with reserved prefixes on declaration, before anything else.
pub fn check_queue_name(name: &ShortStr) -> AmqpResult<()> {
    check_reserved("queue", name)
}

fn locked(rs: &str) -> AmqpError {
    AmqpError::resource_locked(format!(
        "cannot obtain exclusive access to locked {rs}. It could be originally declared on \
         another connection or the exclusive property value does not match that of the \
         original declaration."
    ))
}

fn check_exclusive(q: &QueueHandle, conn_id: u64) -> AmqpResult<()> {
    match q.info().exclusive_owner {
        Some(owner) if owner != conn_id => {
            Err(locked(&describe("queue", q.name(), &q.info().vhost)))
        }
        _ => Ok(()),
    }
}

/// RabbitMQ strips CR and LF from names before using them.
pub fn strip_cr_lf(name: &ShortStr) -> ShortStr {
    if !name.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n') {
        return name.clone();
    }
    let v: Vec<u8> = name
        .as_bytes()
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    ShortStr::from_bytes(v.into())
}

fn field_equivalence<T: PartialEq + std::fmt::Display>(
    key: &str,
    received: T,
    current: T,
    rs: &str,
) -> AmqpResult<()> {
    if received == current {
        return Ok(());
    }
    Err(AmqpError::precondition_failed(format!(
        "inequivalent arg '{key}' for {rs}: received '{received}' but current is '{current}'"
    )))
}

/// Erlang's `type_class`: integers of any width compare as one class, floats as another.
fn same_class_and_value(a: &FieldValue, b: &FieldValue) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a == b,
        _ => false,
    }
}

fn describe_arg(v: Option<&FieldValue>) -> String {
    match v {
        None => "none".to_owned(),
        Some(v) => format!("the value '{}' of type '{}'", arg_text(v), v.type_name()),
    }
}

fn arg_text(v: &FieldValue) -> String {
    match v {
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        FieldValue::Bool(b) => b.to_string(),
        other => match other.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{other:?}"),
        },
    }
}

fn args_equivalence(
    current: &FieldTable,
    received: &FieldTable,
    keys: &[&str],
    rs: &str,
) -> AmqpResult<()> {
    for key in keys {
        let (c, r) = (current.get(key), received.get(key));
        let ok = match (c, r) {
            (None, None) => true,
            (Some(c), Some(r)) => same_class_and_value(c, r),
            _ => false,
        };
        if ok {
            continue;
        }
        let (rtext, ctext) = match (c, r) {
            (Some(c), Some(r)) => (format!("'{}'", arg_text(r)), format!("'{}'", arg_text(c))),
            _ => (describe_arg(r), describe_arg(c)),
        };
        return Err(AmqpError::precondition_failed(format!(
            "inequivalent arg '{key}' for {rs}: received {rtext} but current is {ctext}"
        )));
    }
    Ok(())
}
