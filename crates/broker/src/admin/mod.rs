//! What operators do to a node from outside AMQP (warrenctl today, the management API
//! later): users, vhosts and permissions changed as topology commands, and listings of what
//! the node holds, as plain rows. Refusals say which rabbitmqctl case they are, so a tool can
//! print RabbitMQ's message and exit code.

use crate::broker::Broker;
use std::sync::Arc;
use warren_amqp::ShortStr;
use warren_meta::{Command, NodeId, PasswordHash, Permissions, Policy, QueueType, Topology};
use warren_raft::ProposeError;

pub use crate::metadata::MemberError;
pub use quorum::MemberRow;

mod quorum;

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoSuchUser(String),
    NoSuchVhost(String),
    UserExists(String),
    /// No majority committed the change in time (on the node named).
    TimedOut(String),
    /// Anything else the topology refused, with its message.
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoSuchUser(u) => write!(f, "User \"{u}\" does not exist"),
            Refusal::NoSuchVhost(v) => write!(f, "Virtual host '{v}' does not exist"),
            Refusal::UserExists(u) => write!(f, "User \"{u}\" already exists"),
            // rabbitmqctl's words for Khepri's timeout, naming warren's metadata store.
            Refusal::TimedOut(node) => write!(
                f,
                "The metadata store has timed out on node {node}.\nThe cluster could be in minority."
            ),
            Refusal::Other(m) => f.write_str(m),
        }
    }
}

pub type AdminResult<T> = Result<T, Refusal>;

/// Permissions from `set_permissions`' three regular expressions.
pub fn permissions(configure: &str, write: &str, read: &str) -> Permissions {
    Permissions {
        configure: configure.to_owned(),
        write: write.to_owned(),
        read: read.to_owned(),
    }
}

/// A queue as `list_queues` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    pub arguments: warren_amqp::FieldTable,
    pub stats: crate::queue::QueueStats,
    /// The queue's home node, by name.
    pub node: String,
    /// `classic` or `quorum`, as rabbitmqctl's `type` column shows it.
    pub kind: &'static str,
    /// `running`; `down` for a classic queue whose node is not running, `minority` for a
    /// quorum queue without a majority of its members running.
    pub state: &'static str,
    /// A quorum queue's leader as its members know it, its members, and those whose nodes
    /// run, by name (none, for a classic queue).
    pub leader: Option<String>,
    pub members: Vec<String>,
    pub online: Vec<String>,
}

/// The operator's view of one node.
#[derive(Clone)]
pub struct Admin {
    broker: Arc<Broker>,
}

impl Admin {
    pub fn new(broker: Arc<Broker>) -> Admin {
        Admin { broker }
    }

    fn read<T>(&self, f: impl FnOnce(&Topology) -> T) -> T {
        self.broker.meta.read(f)
    }

    async fn change(&self, cmd: Command) -> AdminResult<()> {
        let meta = &self.broker.meta;
        match meta.submit(&cmd).await {
            Ok(outcome) => outcome.map(drop).map_err(|e| Refusal::Other(e.text)),
            Err(ProposeError::TimedOut) => Err(Refusal::TimedOut(meta.name().to_owned())),
            Err(e) => Err(Refusal::Other(e.to_string())),
        }
    }

    fn user_must_exist(&self, name: &str) -> AdminResult<()> {
        match self.read(|t| t.user(name).is_some()) {
            true => Ok(()),
            false => Err(Refusal::NoSuchUser(name.to_owned())),
        }
    }

    fn vhost_must_exist(&self, name: &str) -> AdminResult<()> {
        match self.read(|t| t.vhost(name).is_some()) {
            true => Ok(()),
            false => Err(Refusal::NoSuchVhost(name.to_owned())),
        }
    }

    /// Users and their tags, by name.
    pub fn users(&self) -> Vec<(String, Vec<String>)> {
        let mut users: Vec<_> = self.read(|t| {
            t.users()
                .map(|u| (u.name.clone(), u.tags.clone()))
                .collect()
        });
        users.sort();
        users
    }

    pub async fn add_user(&self, name: &str, password: &str) -> AdminResult<()> {
        if self.read(|t| t.user(name).is_some()) {
            return Err(Refusal::UserExists(name.to_owned()));
        }
        self.change(Command::AddUser {
            name: name.to_owned(),
            password: PasswordHash::new(password),
            tags: Vec::new(),
        })
        .await
    }

    pub async fn delete_user(&self, name: &str) -> AdminResult<()> {
        self.user_must_exist(name)?;
        self.change(Command::DeleteUser {
            name: name.to_owned(),
        })
        .await
    }

    pub async fn change_password(&self, name: &str, password: &str) -> AdminResult<()> {
        self.user_must_exist(name)?;
        self.change(Command::ChangePassword {
            name: name.to_owned(),
            password: PasswordHash::new(password),
        })
        .await
    }

    pub async fn set_user_tags(&self, name: &str, tags: Vec<String>) -> AdminResult<()> {
        self.user_must_exist(name)?;
        self.change(Command::SetUserTags {
            name: name.to_owned(),
            tags,
        })
        .await
    }

    /// Sets (or replaces) a policy in `vhost`. The answer is the warning the operator should
    /// see, if any (mirroring keys, which warren ignores).
    pub async fn set_policy(&self, vhost: &str, policy: Policy) -> AdminResult<Option<String>> {
        self.vhost_must_exist(vhost)?;
        let warning = warren_meta::mirroring::warning(&policy.name, &policy.definition);
        self.change(Command::SetPolicy {
            vhost: vhost.to_owned(),
            policy,
        })
        .await?;
        if let Some(w) = &warning {
            tracing::warn!(vhost, "{w}");
        }
        Ok(warning)
    }

    pub async fn clear_policy(&self, vhost: &str, name: &str) -> AdminResult<()> {
        self.vhost_must_exist(vhost)?;
        self.change(Command::ClearPolicy {
            vhost: vhost.to_owned(),
            name: name.to_owned(),
        })
        .await
    }

    /// The policies of `vhost`, by name.
    pub fn policies(&self, vhost: &str) -> AdminResult<Vec<Policy>> {
        self.vhost_must_exist(vhost)?;
        let mut p: Vec<Policy> = self.read(|t| {
            t.vhost(vhost)
                .map(|v| v.policies().cloned().collect())
                .unwrap_or_default()
        });
        p.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(p)
    }

    /// Every vhost with its default queue type, by name.
    pub fn vhosts(&self) -> Vec<(String, Option<QueueType>)> {
        let mut v: Vec<(String, Option<QueueType>)> = self.read(|t| {
            t.vhosts()
                .map(|v| (v.name.clone(), v.default_queue_type()))
                .collect()
        });
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub async fn set_cluster_name(&self, name: &str) -> AdminResult<()> {
        self.change(Command::SetClusterName {
            name: name.to_owned(),
        })
        .await
    }

    /// The members whose brokers run, as far as this node can tell (itself included), by
    /// name: a member whose application is stopped (`stop_app`) is not among them.
    pub fn running_members(&self) -> Vec<String> {
        let meta = &self.broker.meta;
        let names = meta.node_names();
        let mut running: Vec<String> = meta
            .running_nodes()
            .into_iter()
            .filter_map(|id| names.get(&id).cloned())
            .collect();
        running.sort();
        running
    }

    /// The cluster's name: as `set_cluster_name` set it, else its first disc node's.
    pub fn cluster_name(&self) -> String {
        self.broker.meta.cluster_name()
    }

    /// Adds a vhost, with the queue type its declarations get when they name none; one that
    /// exists already is left as it is, as RabbitMQ does.
    pub async fn add_vhost(
        &self,
        name: &str,
        default_queue_type: Option<QueueType>,
    ) -> AdminResult<()> {
        if self.read(|t| t.vhost(name).is_some()) {
            return Ok(());
        }
        let name = name.to_owned();
        self.change(match default_queue_type {
            None => Command::AddVhost { name },
            Some(default_queue_type) => Command::AddVhostWithDefaultType {
                name,
                default_queue_type,
            },
        })
        .await
    }

    pub async fn delete_vhost(&self, name: &str) -> AdminResult<()> {
        self.vhost_must_exist(name)?;
        self.change(Command::DeleteVhost {
            name: name.to_owned(),
        })
        .await
    }

    pub async fn set_permissions(
        &self,
        vhost: &str,
        user: &str,
        permissions: Permissions,
    ) -> AdminResult<()> {
        self.vhost_must_exist(vhost)?;
        self.user_must_exist(user)?;
        self.change(Command::SetPermissions {
            user: user.to_owned(),
            vhost: vhost.to_owned(),
            permissions,
        })
        .await
    }

    pub async fn clear_permissions(&self, vhost: &str, user: &str) -> AdminResult<()> {
        self.vhost_must_exist(vhost)?;
        self.user_must_exist(user)?;
        self.change(Command::ClearPermissions {
            user: user.to_owned(),
            vhost: vhost.to_owned(),
        })
        .await
    }

    /// Who may do what in `vhost`, by user.
    pub fn permissions(&self, vhost: &str) -> AdminResult<Vec<(String, Permissions)>> {
        self.vhost_must_exist(vhost)?;
        let mut rows: Vec<(String, Permissions)> = self.read(|t| {
            t.all_permissions()
                .filter(|(_, v, _)| *v == vhost)
                .map(|(u, _, p)| (u.to_owned(), p.clone()))
                .collect()
        });
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }

    /// The queues of `vhost` with their message and consumer counts (an unknown vhost has
    /// none, as rabbitmqctl shows it).
    /// The cluster's members by name: disc nodes (voters) and RAM nodes (learners).
    pub fn members(&self) -> (Vec<String>, Vec<String>) {
        self.broker.meta.members()
    }

    pub async fn queues(&self, vhost: &str) -> Vec<QueueRow> {
        let declared: Vec<warren_meta::Queue> = self.read(|t| {
            t.vhost(vhost)
                .map(|v| v.queues().cloned().collect())
                .unwrap_or_default()
        });
        let meta = &self.broker.meta;
        let serving = self.broker.vhost(vhost);
        let names = meta.node_names();
        let name_of = |n: &NodeId| names.get(n).cloned().unwrap_or_else(|| n.to_string());
        let running = meta.running_nodes();
        let mut rows = Vec::with_capacity(declared.len());
        for q in declared {
            let stats = match serving.as_ref().and_then(|v| v.queue(&q.name)) {
                Some(h) => h.stats().await.unwrap_or_default(),
                None => Default::default(),
            };
            let online: Vec<NodeId> = q
                .members
                .iter()
                .filter(|n| running.contains(n))
                .copied()
                .collect();
            let (state, leader) = if q.kind == QueueType::Quorum {
                let majority = online.len() > q.members.len() / 2;
                let leader = meta.quorum_leader(&q).await;
                (if majority { "running" } else { "minority" }, leader)
            } else {
                let up = running.contains(&q.home);
                (if up { "running" } else { "down" }, None)
            };
            rows.push(QueueRow {
                name: q.name.to_string(),
                durable: q.durable,
                auto_delete: q.auto_delete,
                exclusive: q.exclusive_owner.is_some(),
                arguments: q.arguments.clone(),
                stats,
                node: name_of(&q.home),
                kind: q.kind.as_str(),
                state,
                leader: leader.map(|l| name_of(&l)),
                members: q.members.iter().map(name_of).collect(),
                online: online.iter().map(name_of).collect(),
            });
        }
        rows
    }

    /// Exchanges of `vhost`.
    pub fn exchanges(&self, vhost: &str) -> Vec<warren_meta::Exchange> {
        self.read(|t| {
            t.vhost(vhost)
                .map(|v| v.exchanges().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Bindings of `vhost`. The default exchange's implicit binding of each queue comes
    /// first, as RabbitMQ lists it.
    pub fn bindings(&self, vhost: &str) -> Vec<warren_meta::Binding> {
        self.read(|t| {
            t.vhost(vhost)
                .map(|v| {
                    let implicit = v.queues().map(|q| warren_meta::Binding {
                        source: ShortStr::from(""),
                        destination: warren_meta::Destination::Queue(q.name.clone()),
                        routing_key: q.name.clone(),
                        arguments: warren_amqp::FieldTable::new(),
                    });
                    implicit.chain(v.bindings().iter().cloned()).collect()
                })
                .unwrap_or_default()
        })
    }

    /// The resource alarms raised on this node.
    pub fn alarms(&self) -> crate::alarms::AlarmState {
        self.broker.alarms.state()
    }

    /// Node `node`'s name (its id, if it is no longer a member).
    pub fn node_name(&self, node: NodeId) -> String {
        let names = self.broker.meta.node_names();
        names
            .get(&node)
            .cloned()
            .unwrap_or_else(|| node.to_string())
    }

    /// Connections open on this node.
    pub fn connection_count(&self) -> u64 {
        self.broker.open_connections()
    }

    /// The connections open on this node, oldest first.
    pub fn connections(&self) -> Vec<crate::mail::ConnInfo> {
        self.broker.post.connections()
    }

    /// The channels of this node's connections, with their connection, in connection order.
    pub async fn channels(&self) -> Vec<(crate::mail::ConnInfo, crate::mail::ChannelRow)> {
        let post = &self.broker.post;
        let mut rows = Vec::new();
        for info in post.connections() {
            let Some(mailbox) = post.get_local(info.id) else {
                continue;
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            if mailbox.send(crate::mail::ConnMsg::Describe(tx)).is_err() {
                continue;
            }
            // A connection busy for longer than this is left out rather than holding up the
            // listing.
            if let Ok(Ok(channels)) =
                tokio::time::timeout(std::time::Duration::from_secs(2), rx).await
            {
                rows.extend(channels.into_iter().map(|c| (info.clone(), c)));
            }
        }
        rows
    }

    /// The consumers of `vhost`'s queues: the queue's name and the consumer.
    pub async fn consumers(&self, vhost: &str) -> Vec<(String, crate::queue::ConsumerRow)> {
        let Some(v) = self.broker.vhost(vhost) else {
            return Vec::new();
        };
        let mut handles = v.running_queues();
        handles.sort_by(|a, b| a.name().cmp(b.name()));
        let mut rows = Vec::new();
        for h in handles {
            for c in h.consumers().await.unwrap_or_default() {
                rows.push((h.name().to_string(), c));
            }
        }
        rows
    }
}
