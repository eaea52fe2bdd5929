//! The topology: every vhost with its exchanges, queues, bindings and policies, and the users
//! with their permissions. `apply` is a plain `match` over [`Command`]: deterministic, no I/O,
//! no clock, so every node that applies the same commands in the same order holds the same
//! topology. Checks and error texts follow RabbitMQ's `rabbit_channel`, `rabbit_exchange` and
//! `rabbit_amqqueue`.

use crate::command::{Applied, Command, Effect, QueueDeclaration};
use crate::ids::{NodeId, QueueId};
use crate::model::{Destination, Permissions, Queue, QueueType, User};
use crate::queue_args::{Overflow, QueueArgs};
use crate::rules::{check_reserved, default_exchange_refused};
pub use crate::vhost::Vhost;
use std::collections::BTreeMap;
use warren_amqp::{AmqpError, AmqpResult, FieldValue, ShortStr};

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
