//! The topology: every vhost with its exchanges, queues, bindings and policies, and the users
//! with their permissions. `apply` is a plain `match` over [`Command`]: deterministic, no I/O,
//! no clock, so every node that applies the same commands in the same order holds the same
//! topology. Checks and error texts follow RabbitMQ's `rabbit_channel`, `rabbit_exchange` and
//! `rabbit_amqqueue`.

use crate::bindings::Bindings;
use crate::command::{Applied, Command, Effect, QueueDeclaration};
use crate::equivalence;
use crate::headers::HeadersBinding;
use crate::ids::{ConnId, NodeId, QueueId};
use crate::model::{
    Binding, Destination, Exchange, ExchangeKind, Permissions, Policy, Queue, QueueType, User,
};
use crate::queue_args::{Overflow, QueueArgs};
use crate::rules::{check_reserved, default_exchange_refused, describe, locked};
use std::collections::BTreeMap;
use warren_amqp::{AmqpError, AmqpResult, FieldTable, FieldValue, ShortStr};

/// One vhost's part of the topology.
#[derive(Debug, Clone)]
pub struct Vhost {
    pub name: String,
    exchanges: BTreeMap<ShortStr, Exchange>,
    queues: BTreeMap<ShortStr, Queue>,
    bindings: Bindings,
    policies: BTreeMap<String, Policy>,
    /// What declarations that name no queue type get (RabbitMQ's vhost metadata); `None` is
    /// RabbitMQ's `undefined`.
    default_queue_type: Option<QueueType>,
}

/// The exchanges every vhost has from its creation.
const BUILTIN: [(&str, ExchangeKind, bool); 7] = [
    ("", ExchangeKind::Direct, false),
    ("amq.direct", ExchangeKind::Direct, false),
    ("amq.fanout", ExchangeKind::Fanout, false),
    ("amq.topic", ExchangeKind::Topic, false),
    ("amq.headers", ExchangeKind::Headers, false),
    ("amq.match", ExchangeKind::Headers, false),
    ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
];

impl Vhost {
    fn new(name: &str, default_queue_type: Option<QueueType>) -> Vhost {
        let mut exchanges = BTreeMap::new();
        for (n, kind, internal) in BUILTIN {
            let name = ShortStr::from(n);
            exchanges.insert(
                name.clone(),
                Exchange {
                    name,
                    kind,
                    durable: true,
                    auto_delete: false,
                    internal,
                    arguments: FieldTable::new(),
                },
            );
        }
        Vhost {
            name: name.to_owned(),
            exchanges,
            queues: BTreeMap::new(),
            bindings: Bindings::default(),
            policies: BTreeMap::new(),
            default_queue_type,
        }
    }

    pub fn default_queue_type(&self) -> Option<QueueType> {
        self.default_queue_type
    }

    pub fn exchange(&self, name: &ShortStr) -> Option<&Exchange> {
        self.exchanges.get(name)
    }

    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.values()
    }

    pub fn queue(&self, name: &ShortStr) -> Option<&Queue> {
        self.queues.get(name)
    }

    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.values()
    }

    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.policies.values()
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

    /// Whether a binding outlives a restart: both of its ends must.
    pub fn is_durable(&self, b: &Binding) -> bool {
        let source = self.exchanges.get(&b.source).is_some_and(|x| x.durable);
        let dest = match &b.destination {
            Destination::Queue(q) => self.queues.get(q).is_some_and(|q| q.durable),
            Destination::Exchange(x) => self.exchanges.get(x).is_some_and(|x| x.durable),
        };
        source && dest && !b.source.is_empty()
    }

    /// Checks a declaration against what exists, without changing anything: `Ok(Some(q))` if
    /// an equivalent queue exists (the declaration is answered without a change), `Ok(None)`
    /// if it must be created.
    pub fn check_queue_declaration(&self, d: &QueueDeclaration) -> AmqpResult<Option<&Queue>> {
        let Some(q) = self.queues.get(&d.name) else {
            return Ok(None);
        };
        let rs = self.rs("queue", &d.name);
        if q.exclusive_owner != d.exclusive_owner {
            return Err(locked(&rs));
        }
        // Exclusive queues are never durable, whatever the client asked.
        let durable = d.durable && d.exclusive_owner.is_none();
        equivalence::field("durable", durable, q.durable, &rs)?;
        equivalence::field("auto_delete", d.auto_delete, q.auto_delete, &rs)?;
        equivalence::args(&q.arguments, &d.arguments, equivalence::QUEUE_ARGS, &rs)?;
        Ok(Some(q))
    }

    /// Checks an exchange declaration against what exists: `Ok(true)` if an equivalent
    /// exchange exists, `Ok(false)` if it must be created.
    pub fn check_exchange_declaration(&self, x: &Exchange) -> AmqpResult<bool> {
        if x.name.is_empty() {
            return Err(default_exchange_refused());
        }
        let Some(current) = self.exchanges.get(&x.name) else {
            return Ok(false);
        };
        let rs = self.rs("exchange", &x.name);
        equivalence::field("type", x.kind.as_str(), current.kind.as_str(), &rs)?;
        equivalence::field("durable", x.durable, current.durable, &rs)?;
        equivalence::field("auto_delete", x.auto_delete, current.auto_delete, &rs)?;
        equivalence::field("internal", x.internal, current.internal, &rs)?;
        equivalence::args(
            &current.arguments,
            &x.arguments,
            equivalence::EXCHANGE_ARGS,
            &rs,
        )?;
        Ok(true)
    }

    fn check_binding(&self, b: &Binding, by: Option<ConnId>) -> AmqpResult<()> {
        if b.source.is_empty() || matches!(&b.destination, Destination::Exchange(x) if x.is_empty())
        {
            return Err(default_exchange_refused());
        }
        let source = self
            .exchanges
            .get(&b.source)
            .ok_or_else(|| self.no_exchange(&b.source))?;
        match &b.destination {
            Destination::Exchange(x) => {
                if !self.exchanges.contains_key(x) {
                    return Err(self.no_exchange(x));
                }
            }
            Destination::Queue(q) => {
                let q = self.queues.get(q).ok_or_else(|| self.no_queue(q))?;
                q.check_exclusive(&self.name, by)?;
            }
        }
        if source.kind == ExchangeKind::Headers {
            HeadersBinding::parse(&b.arguments)?;
        }
        Ok(())
    }

    /// Removes an exchange with every binding from or to it, and the auto-delete exchanges
    /// that lose their last binding that way.
    fn remove_exchange(&mut self, name: &ShortStr, out: &mut Applied) {
        let mut removed = self.bindings.remove_source(name);
        removed.extend(
            self.bindings
                .remove_destination(&Destination::Exchange(name.clone())),
        );
        for b in &removed {
            out.durable |= self.is_durable(b);
        }
        let Some(x) = self.exchanges.remove(name) else {
            return;
        };
        out.durable |= x.durable;
        let sources: Vec<ShortStr> = removed
            .iter()
            .filter(|b| b.source != *name)
            .map(|b| b.source.clone())
            .collect();
        for binding in removed {
            out.effects.push(Effect::BindingRemoved {
                vhost: self.name.clone(),
                binding,
            });
        }
        out.effects.push(Effect::ExchangeDeleted {
            vhost: self.name.clone(),
            exchange: x,
        });
        for s in sources {
            self.auto_delete_exchange(&s, out);
        }
    }

    /// An auto-delete exchange goes when the last binding from it is removed.
    fn auto_delete_exchange(&mut self, name: &ShortStr, out: &mut Applied) {
        let auto = self.exchanges.get(name).is_some_and(|x| x.auto_delete);
        if auto && !self.bindings.has_source(name) {
            self.remove_exchange(name, out);
        }
    }

    fn remove_binding_effects(&mut self, removed: Vec<Binding>, out: &mut Applied) {
        let sources: Vec<ShortStr> = removed.iter().map(|b| b.source.clone()).collect();
        for binding in removed {
            out.durable |= self.is_durable(&binding);
            out.effects.push(Effect::BindingRemoved {
                vhost: self.name.clone(),
                binding,
            });
        }
        for s in sources {
            self.auto_delete_exchange(&s, out);
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Topology {
    vhosts: BTreeMap<String, Vhost>,
    users: BTreeMap<String, User>,
    /// By (user, vhost).
    permissions: BTreeMap<(String, String), Permissions>,
    /// Set by `set_cluster_name`; until then the cluster goes by its first node's name.
    cluster_name: Option<String>,
}

fn no_vhost(name: &str) -> AmqpError {
    AmqpError::not_found(format!("vhost '{name}' not found"))
}

fn no_user(name: &str) -> AmqpError {
    AmqpError::not_found(format!("user '{name}' not found"))
}

/// Policies apply to one of these (RabbitMQ's `apply-to`).
const APPLY_TO: &[&str] = &[
    "all",
    "queues",
    "exchanges",
    "classic_queues",
    "quorum_queues",
    "streams",
];

impl Topology {
    pub fn new() -> Topology {
        Topology::default()
    }

    pub fn vhost(&self, name: &str) -> Option<&Vhost> {
        self.vhosts.get(name)
    }

    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster_name.as_deref()
    }

    pub fn vhosts(&self) -> impl Iterator<Item = &Vhost> {
        self.vhosts.values()
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn permissions(&self, user: &str, vhost: &str) -> Option<&Permissions> {
        self.permissions.get(&(user.to_owned(), vhost.to_owned()))
    }

    /// Every (user, vhost, permissions), by user then vhost.
    pub fn all_permissions(&self) -> impl Iterator<Item = (&str, &str, &Permissions)> {
        self.permissions
            .iter()
            .map(|((u, v), p)| (u.as_str(), v.as_str(), p))
    }

    fn vhost_mut(&mut self, name: &str) -> AmqpResult<&mut Vhost> {
        self.vhosts.get_mut(name).ok_or_else(|| no_vhost(name))
    }

    fn user_mut(&mut self, name: &str) -> AmqpResult<&mut User> {
        self.users.get_mut(name).ok_or_else(|| no_user(name))
    }

    /// `queue.declare`: a quorum queue is held by `members` (none given: its home alone).
    fn declare_queue(
        &mut self,
        vhost: &str,
        d: &QueueDeclaration,
        members: &[NodeId],
    ) -> AmqpResult<Applied> {
        let v = self.vhost_mut(vhost)?;
        if v.check_queue_declaration(d)?.is_some() {
            return Ok(Applied::unchanged());
        }
        let rs = v.rs("queue", &d.name);
        let mut args = QueueArgs::parse(&d.arguments, &rs)?;
        let quorum = args.queue_type == QueueType::Quorum;
        if quorum {
            let exclusive = d.exclusive_owner.is_some();
            QueueArgs::check_quorum(&d.arguments, d.durable, d.auto_delete, exclusive, &rs)?;
            // Accepted, and served as drop-head, as RabbitMQ's quorum queues do.
            if args.overflow == Overflow::RejectPublishDlx {
                args.overflow = Overflow::DropHead;
            }
        }
        let members = match (quorum, members.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => vec![d.home],
            (true, false) => members.to_vec(),
        };
        let queue = Queue {
            name: d.name.clone(),
            id: d.id,
            durable: d.durable && d.exclusive_owner.is_none(),
            auto_delete: d.auto_delete,
            exclusive_owner: d.exclusive_owner,
            arguments: d.arguments.clone(),
            kind: args.queue_type,
            args,
            home: d.home,
            members,
        };
        v.queues.insert(queue.name.clone(), queue.clone());
        Ok(Applied {
            durable: queue.durable,
            effects: vec![Effect::QueueAdded {
                vhost: vhost.to_owned(),
                queue,
            }],
        })
    }

    /// A vhost that exists already is left as it is, its default queue type included, as
    /// RabbitMQ's `add_vhost` leaves it.
    fn add_vhost(&mut self, name: &str, default_queue_type: Option<QueueType>) -> Applied {
        if self.vhosts.contains_key(name) {
            return Applied::unchanged();
        }
        self.vhosts
            .insert(name.to_owned(), Vhost::new(name, default_queue_type));
        changed(Effect::VhostAdded(name.to_owned()))
    }

    /// Applies one command. On error nothing has changed.
    pub fn apply(&mut self, cmd: &Command) -> AmqpResult<Applied> {
        match cmd {
            Command::AddVhost { name } => Ok(self.add_vhost(name, None)),
            Command::AddVhostWithDefaultType {
                name,
                default_queue_type,
            } => Ok(self.add_vhost(name, Some(*default_queue_type))),
            Command::DeleteVhost { name } => {
                let v = self.vhosts.remove(name).ok_or_else(|| no_vhost(name))?;
                self.permissions.retain(|(_, vh), _| vh != name);
                let mut out = Applied {
                    durable: true,
                    ..Default::default()
                };
                for queue in v.queues.into_values() {
                    out.effects.push(Effect::QueueDeleted {
                        vhost: name.clone(),
                        queue,
                    });
                }
                out.effects.push(Effect::VhostDeleted(name.clone()));
                out.effects.push(Effect::AccessChanged);
                Ok(out)
            }
            Command::AddUser {
                name,
                password,
                tags,
            } => {
                if self.users.contains_key(name) {
                    return Err(AmqpError::precondition_failed(format!(
                        "user '{name}' already exists"
                    )));
                }
                self.users.insert(
                    name.clone(),
                    User {
                        name: name.clone(),
                        password: password.clone(),
                        tags: tags.clone(),
                    },
                );
                Ok(changed(Effect::AccessChanged))
            }
            Command::ChangePassword { name, password } => {
                self.user_mut(name)?.password = password.clone();
                Ok(changed(Effect::AccessChanged))
            }
            Command::SetUserTags { name, tags } => {
                self.user_mut(name)?.tags = tags.clone();
                Ok(changed(Effect::AccessChanged))
            }
            Command::DeleteUser { name } => {
                self.users.remove(name).ok_or_else(|| no_user(name))?;
                self.permissions.retain(|(u, _), _| u != name);
                Ok(changed(Effect::AccessChanged))
            }
            Command::SetPermissions {
                user,
                vhost,
                permissions,
            } => {
                if !self.users.contains_key(user) {
                    return Err(no_user(user));
                }
                if !self.vhosts.contains_key(vhost) {
                    return Err(no_vhost(vhost));
                }
                self.permissions
                    .insert((user.clone(), vhost.clone()), permissions.clone());
                Ok(changed(Effect::AccessChanged))
            }
            Command::ClearPermissions { user, vhost } => {
                if !self.users.contains_key(user) {
                    return Err(no_user(user));
                }
                if !self.vhosts.contains_key(vhost) {
                    return Err(no_vhost(vhost));
                }
                match self.permissions.remove(&(user.clone(), vhost.clone())) {
                    Some(_) => Ok(changed(Effect::AccessChanged)),
                    None => Ok(Applied::unchanged()),
                }
            }
            Command::SetPolicy { vhost, policy } => {
                if !APPLY_TO.contains(&policy.apply_to.as_str()) {
                    return Err(AmqpError::precondition_failed(format!(
                        "'{}' is not a valid apply-to value",
                        policy.apply_to
                    )));
                }
                let is_object = serde_json::from_str::<serde_json::Value>(&policy.definition)
                    .is_ok_and(|v| v.is_object());
                if !is_object {
                    return Err(AmqpError::precondition_failed(format!(
                        "policy '{}': the definition must be a JSON object",
                        policy.name
                    )));
                }
                let v = self.vhost_mut(vhost)?;
                v.policies.insert(policy.name.clone(), policy.clone());
                Ok(changed(Effect::PoliciesChanged {
                    vhost: vhost.clone(),
                }))
            }
            Command::ClearPolicy { vhost, name } => {
                let v = self.vhost_mut(vhost)?;
                v.policies.remove(name).ok_or_else(|| {
                    AmqpError::not_found(format!("policy '{name}' in vhost '{vhost}' not found"))
                })?;
                Ok(changed(Effect::PoliciesChanged {
                    vhost: vhost.clone(),
                }))
            }
            Command::DeclareExchange { vhost, exchange } => {
                let v = self.vhost_mut(vhost)?;
                if v.check_exchange_declaration(exchange)? {
                    return Ok(Applied::unchanged());
                }
                check_reserved("exchange", &exchange.name)?;
                if let Some(ae) = exchange.arguments.get("alternate-exchange") {
                    if !matches!(ae, FieldValue::LongStr(_)) {
                        return Err(AmqpError::precondition_failed(format!(
                            "invalid type '{}' for arg 'alternate-exchange' in {}",
                            ae.type_name(),
                            v.rs("exchange", &exchange.name)
                        )));
                    }
                }
                v.exchanges.insert(exchange.name.clone(), exchange.clone());
                Ok(Applied {
                    durable: exchange.durable,
                    effects: vec![Effect::ExchangeAdded {
                        vhost: vhost.clone(),
                        exchange: exchange.clone(),
                    }],
                })
            }
            Command::DeleteExchange {
                vhost,
                name,
                if_unused,
            } => {
                let v = self.vhost_mut(vhost)?;
                if name.is_empty() {
                    return Err(default_exchange_refused());
                }
                if name.starts_with(b"amq.") {
                    return Err(AmqpError::access_refused(format!(
                        "deletion of system {} not allowed",
                        v.rs("exchange", name)
                    )));
                }
                if !v.exchanges.contains_key(name) {
                    return Ok(Applied::unchanged());
                }
                if *if_unused && v.bindings.has_source(name) {
                    return Err(AmqpError::precondition_failed(format!(
                        "{} in use",
                        v.rs("exchange", name)
                    )));
                }
                let mut out = Applied::unchanged();
                v.remove_exchange(name, &mut out);
                Ok(out)
            }
            Command::DeclareQueue { vhost, queue: d } => self.declare_queue(vhost, d, &[]),
            Command::DeclareQuorumQueue {
                vhost,
                queue,
                members,
            } => self.declare_queue(vhost, queue, members),
            Command::DeleteQueue { vhost, name, id } => {
                let v = self.vhost_mut(vhost)?;
                if v.queues.get(name).map(|q| q.id) != Some(*id) {
                    return Ok(Applied::unchanged());
                }
                let mut out = Applied::unchanged();
                let removed = v
                    .bindings
                    .remove_destination(&Destination::Queue(name.clone()));
                // Durability of the removed bindings is judged while the queue still exists.
                for b in &removed {
                    out.durable |= v.is_durable(b);
                }
                let Some(queue) = v.queues.remove(name) else {
                    return Ok(out);
                };
                out.durable |= queue.durable;
                v.remove_binding_effects(removed, &mut out);
                out.effects.push(Effect::QueueDeleted {
                    vhost: vhost.clone(),
                    queue,
                });
                Ok(out)
            }
            Command::SetQueueMembers {
                vhost,
                name,
                id,
                members,
            } => {
                let v = self.vhost_mut(vhost)?;
                let Some(q) = v.queues.get_mut(name).filter(|q| q.id == *id) else {
                    return Ok(Applied::unchanged());
                };
                if q.kind != QueueType::Quorum || members.is_empty() || q.members == *members {
                    return Ok(Applied::unchanged());
                }
                let before = std::mem::replace(&mut q.members, members.clone());
                Ok(changed(Effect::QueueMembersChanged {
                    vhost: vhost.clone(),
                    queue: q.clone(),
                    before,
                }))
            }
            Command::SetClusterName { name } => {
                if self.cluster_name.as_deref() == Some(name.as_str()) {
                    return Ok(Applied::unchanged());
                }
                self.cluster_name = Some(name.clone());
                Ok(changed(Effect::ClusterNamed(name.clone())))
            }
            Command::DeleteQueues { queues } => {
                let mut out = Applied::unchanged();
                for (vhost, name, id) in queues {
                    let cmd = Command::DeleteQueue {
                        vhost: vhost.clone(),
                        name: name.clone(),
                        id: *id,
                    };
                    // As for ForgetTransient: a part that no longer applies is skipped.
                    if let Ok(a) = self.apply(&cmd) {
                        out.merge(a);
                    }
                }
                Ok(out)
            }
            Command::ForgetTransient { home, exchanges } => {
                let mut out = Applied::unchanged();
                let names: Vec<String> = self.vhosts.keys().cloned().collect();
                for vhost in names {
                    let Some(v) = self.vhosts.get(&vhost) else {
                        continue;
                    };
                    let gone: Vec<(ShortStr, QueueId)> = v
                        .queues
                        .values()
                        .filter(|q| q.home == *home && (!q.durable || q.exclusive_owner.is_some()))
                        .map(|q| (q.name.clone(), q.id))
                        .collect();
                    for (name, id) in gone {
                        let cmd = Command::DeleteQueue {
                            vhost: vhost.clone(),
                            name,
                            id,
                        };
                        // Each part stands alone: one that no longer applies is skipped, so
                        // that the command never stops halfway.
                        if let Ok(a) = self.apply(&cmd) {
                            out.merge(a);
                        }
                    }
                    if !*exchanges {
                        continue;
                    }
                    let Some(v) = self.vhosts.get(&vhost) else {
                        continue;
                    };
                    let transient: Vec<ShortStr> = v
                        .exchanges
                        .values()
                        .filter(|x| !x.durable)
                        .map(|x| x.name.clone())
                        .collect();
                    for name in transient {
                        let cmd = Command::DeleteExchange {
                            vhost: vhost.clone(),
                            name,
                            if_unused: false,
                        };
                        if let Ok(a) = self.apply(&cmd) {
                            out.merge(a);
                        }
                    }
                }
                Ok(out)
            }
            Command::Bind { vhost, binding, by } => {
                let v = self.vhost_mut(vhost)?;
                v.check_binding(binding, *by)?;
                if v.bindings.contains(binding) {
                    return Ok(Applied::unchanged());
                }
                v.bindings.insert(binding.clone());
                Ok(Applied {
                    durable: v.is_durable(binding),
                    effects: vec![Effect::BindingAdded {
                        vhost: vhost.clone(),
                        binding: binding.clone(),
                    }],
                })
            }
            Command::Unbind { vhost, binding, by } => {
                let v = self.vhost_mut(vhost)?;
                if binding.source.is_empty()
                    || matches!(&binding.destination, Destination::Exchange(x) if x.is_empty())
                {
                    return Err(default_exchange_refused());
                }
                if let Destination::Queue(q) = &binding.destination {
                    if let Some(q) = v.queues.get(q) {
                        q.check_exclusive(vhost, *by)?;
                    }
                }
                let durable = v.is_durable(binding);
                if !v.bindings.remove(binding) {
                    return Ok(Applied::unchanged());
                }
                let mut out = Applied {
                    durable,
                    ..Default::default()
                };
                out.effects.push(Effect::BindingRemoved {
                    vhost: vhost.clone(),
                    binding: binding.clone(),
                });
                v.auto_delete_exchange(&binding.source, &mut out);
                Ok(out)
            }
        }
    }
}

fn changed(effect: Effect) -> Applied {
    Applied {
        effects: vec![effect],
        durable: true,
    }
}
