//! The topology to and from definitions JSON. Export writes what RabbitMQ's
//! `export_definitions` writes (durable things only) or, for a snapshot of the replicated
//! metadata, everything. Import turns definitions into the commands that recreate them, so a
//! file is loaded through the same checks as any declaration.

use crate::command::{Command, QueueDeclaration};
use crate::definitions::{
    BindingDef, Definitions, ExchangeDef, GlobalParameterDef, PermissionDef, PolicyDef, QueueDef,
    QueuePlacement, UserDef, VhostDef, VhostMetadata, json_to_table, table_to_json,
};
use crate::ids::{ConnId, NodeId, QueueId};
use crate::model::{Binding, Destination, Exchange, ExchangeKind, Permissions, Policy, QueueType};
use crate::password::PasswordHash;
use crate::topology::Topology;
use std::collections::BTreeMap;
use warren_amqp::ShortStr;

/// How much of the topology an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// What survives a restart, as RabbitMQ exports it.
    Durable,
    /// Everything, transient and exclusive queues included: a metadata snapshot.
    All,
}

impl Topology {
    pub fn export(&self, scope: Scope) -> Definitions {
        let all = scope == Scope::All;
        let mut d = Definitions {
            product_name: Some("warren".to_owned()),
            product_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            ..Default::default()
        };
        if let Some(name) = self.cluster_name() {
            d.global_parameters.push(GlobalParameterDef {
                name: "cluster_name".to_owned(),
                value: serde_json::Value::String(name.to_owned()),
            });
        }
        for u in self.users() {
            d.users.push(UserDef {
                name: u.name.clone(),
                password_hash: u.password.to_rabbit_string(),
                hashing_algorithm: "rabbit_password_hashing_sha256".to_owned(),
                tags: u.tags.clone(),
            });
        }
        for (user, vhost, p) in self.all_permissions() {
            d.permissions.push(PermissionDef {
                user: user.to_owned(),
                vhost: vhost.to_owned(),
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            });
        }
        for v in self.vhosts() {
            let vhost = v.name.clone();
            d.vhosts.push(VhostDef {
                name: vhost.clone(),
                metadata: VhostMetadata {
                    default_queue_type: v.default_queue_type().map(|t| t.as_str().to_owned()),
                },
                default_queue_type: None,
            });
            for p in v.policies() {
                d.policies.push(PolicyDef {
                    vhost: vhost.clone(),
                    name: p.name.clone(),
                    pattern: p.pattern.clone(),
                    apply_to: p.apply_to.clone(),
                    definition: serde_json::from_str(&p.definition).unwrap_or_default(),
                    priority: p.priority,
                });
            }
            for x in v
                .exchanges()
                .filter(|x| (all || x.durable) && !x.is_builtin())
            {
                d.exchanges.push(ExchangeDef {
                    name: x.name.to_string(),
                    vhost: vhost.clone(),
                    kind: x.kind.as_str().to_owned(),
                    durable: x.durable,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: table_to_json(&x.arguments),
                });
            }
            for q in v.queues().filter(|q| all || q.durable) {
                d.queues.push(QueueDef {
                    name: q.name.to_string(),
                    vhost: vhost.clone(),
                    durable: q.durable,
                    auto_delete: q.auto_delete,
                    arguments: table_to_json(&q.arguments),
                    warren: Some(QueuePlacement {
                        id: q.id,
                        home: q.home,
                        exclusive_owner: q.exclusive_owner,
                        members: q.members.clone(),
                    }),
                });
            }
            for b in v.bindings().iter().filter(|b| all || v.is_durable(b)) {
                if b.source.is_empty() {
                    continue;
                }
                d.bindings.push(BindingDef {
                    source: b.source.to_string(),
                    vhost: vhost.clone(),
                    destination: b.destination.name().to_string(),
                    destination_type: b.destination.kind().to_owned(),
                    routing_key: b.routing_key.to_string(),
                    arguments: table_to_json(&b.arguments),
                });
            }
        }
        d
    }

    /// The commands that bring what `defs` describes into this topology: vhosts, users (an
    /// existing user takes the file's password and tags), permissions, policies, exchanges,
    /// queues and bindings, in an order where each finds what it refers to. Queues without a
    /// recorded placement live on `home` with ids from `new_id`.
    pub fn import_commands(
        &self,
        defs: &Definitions,
        home: NodeId,
        new_id: &mut dyn FnMut() -> QueueId,
    ) -> Result<Vec<Command>, String> {
        let mut cmds = Vec::new();
        for p in &defs.global_parameters {
            if let ("cluster_name", serde_json::Value::String(name)) = (p.name.as_str(), &p.value) {
                cmds.push(Command::SetClusterName { name: name.clone() });
            }
        }
        for v in &defs.vhosts {
            let name = v.name.clone();
            cmds.push(match v.queue_type() {
                None => Command::AddVhost { name },
                Some(t) => Command::AddVhostWithDefaultType {
                    name,
                    default_queue_type: QueueType::parse(t).ok_or_else(|| {
                        format!("vhost '{}': unknown default queue type '{t}'", v.name)
                    })?,
                },
            });
        }
        for u in &defs.users {
            let password = PasswordHash::from_rabbit_string(&u.password_hash)
                .ok_or_else(|| format!("user '{}': unreadable password hash", u.name))?;
            if self.user(&u.name).is_some() {
                cmds.push(Command::ChangePassword {
                    name: u.name.clone(),
                    password,
                });
                cmds.push(Command::SetUserTags {
                    name: u.name.clone(),
                    tags: u.tags.clone(),
                });
            } else {
                cmds.push(Command::AddUser {
                    name: u.name.clone(),
                    password,
                    tags: u.tags.clone(),
                });
            }
        }
        for p in &defs.permissions {
            cmds.push(Command::SetPermissions {
                user: p.user.clone(),
                vhost: p.vhost.clone(),
                permissions: Permissions {
                    configure: p.configure.clone(),
                    write: p.write.clone(),
                    read: p.read.clone(),
                },
            });
        }
        for p in &defs.policies {
            cmds.push(Command::SetPolicy {
                vhost: p.vhost.clone(),
                policy: Policy {
                    name: p.name.clone(),
                    pattern: p.pattern.clone(),
                    apply_to: p.apply_to.clone(),
                    definition: serde_json::Value::Object(p.definition.clone()).to_string(),
                    priority: p.priority,
                },
            });
        }
        for x in &defs.exchanges {
            let kind = ExchangeKind::parse(x.kind.as_bytes())
                .ok_or_else(|| format!("exchange '{}': unknown type '{}'", x.name, x.kind))?;
            cmds.push(Command::DeclareExchange {
                vhost: x.vhost.clone(),
                exchange: Exchange {
                    name: ShortStr::from(x.name.as_str()),
                    kind,
                    durable: x.durable,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: json_to_table(&x.arguments),
                },
            });
        }
        for q in &defs.queues {
            let (id, home, exclusive_owner, members) = match &q.warren {
                Some(p) => (p.id, p.home, p.exclusive_owner, p.members.clone()),
                None => (new_id(), home, None, Vec::new()),
            };
            let queue = QueueDeclaration {
                name: ShortStr::from(q.name.as_str()),
                id,
                durable: q.durable,
                auto_delete: q.auto_delete,
                exclusive_owner,
                arguments: json_to_table(&q.arguments),
                home,
            };
            let vhost = q.vhost.clone();
            cmds.push(if members.is_empty() {
                Command::DeclareQueue { vhost, queue }
            } else {
                Command::DeclareQuorumQueue {
                    vhost,
                    queue,
                    members,
                }
            });
        }
        // Exclusive queues are checked against their owner, which a snapshot records.
        let owners: BTreeMap<(&str, &str), ConnId> = defs
            .queues
            .iter()
            .filter_map(|q| {
                let owner = q.warren.as_ref()?.exclusive_owner?;
                Some(((q.vhost.as_str(), q.name.as_str()), owner))
            })
            .collect();
        for b in &defs.bindings {
            let dest = ShortStr::from(b.destination.as_str());
            cmds.push(Command::Bind {
                vhost: b.vhost.clone(),
                binding: Binding {
                    source: b.source.as_str().into(),
                    destination: if b.destination_type == "exchange" {
                        Destination::Exchange(dest)
                    } else {
                        Destination::Queue(dest)
                    },
                    routing_key: b.routing_key.as_str().into(),
                    arguments: json_to_table(&b.arguments),
                },
                by: (b.destination_type == "queue")
                    .then(|| owners.get(&(b.vhost.as_str(), b.destination.as_str())))
                    .flatten()
                    .copied(),
            });
        }
        Ok(cmds)
    }
}
