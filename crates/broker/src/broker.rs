//! The node's shared state: configuration, users, vhosts, direct reply-to consumers, and the
//! connection counter. One `Arc<Broker>` is handed to every connection.

use crate::alarms::Alarms;
use crate::auth::{PasswordHash, User, Users};
use crate::config::Config;
use crate::definitions::{Definitions, UserDef, VhostDef};
use crate::mailbox::ConnHandle;
use crate::persist::{self, MetaStore};
use crate::vhost::{StoreSettings, VHost};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use warren_amqp::ShortStr;

/// A channel consuming from `amq.rabbitmq.reply-to`, found by the token in its address.
#[derive(Debug, Clone)]
pub struct ReplyConsumer {
    pub conn: ConnHandle,
    pub channel: u16,
    pub channel_key: u64,
    pub consumer_tag: ShortStr,
}

pub struct Broker {
    pub config: Config,
    pub users: Users,
    pub meta: Arc<MetaStore>,
    pub alarms: Alarms,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    reply_consumers: Mutex<HashMap<String, ReplyConsumer>>,
    next_connection_id: AtomicU64,
    open_connections: AtomicU64,
}

impl Broker {
    /// Opens the node over its data directory: recreates the durable topology and users from
    /// the definitions file if there is one, else starts with the default user and vhost `/`.
    /// Must run inside the tokio runtime (queues are tasks).
    pub fn open(config: Config) -> Result<Arc<Broker>, String> {
        let dir = &config.node.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        let saved = persist::load(dir)?;
        let meta = Arc::new(MetaStore::new(dir));
        let users = Users::default();
        let loopback = |name: &str| config.auth.loopback_users.iter().any(|u| u == name);
        match saved.as_ref().filter(|d| !d.users.is_empty()) {
            Some(defs) => {
                for u in &defs.users {
                    let password = PasswordHash::from_rabbit_string(&u.password_hash)
                        .ok_or_else(|| format!("user '{}': unreadable password hash", u.name))?;
                    users.add(User {
                        name: u.name.clone(),
                        password,
                        tags: u.tags.clone(),
                        loopback_only: loopback(&u.name),
                    });
                }
            }
            None => users.add(User {
                name: config.auth.default_user.clone(),
                password: PasswordHash::new(&config.auth.default_pass),
                tags: vec!["administrator".to_owned()],
                loopback_only: loopback(&config.auth.default_user),
            }),
        }
        let mut names: Vec<String> = saved
            .as_ref()
            .map(|d| d.vhosts.iter().map(|v| v.name.clone()).collect())
            .unwrap_or_default();
        if names.is_empty() {
            names.push("/".to_owned());
        }
        // Transient queues' pages from an earlier run are garbage now.
        let _ = std::fs::remove_dir_all(dir.join("transient"));
        let store = StoreSettings {
            data_dir: dir.clone(),
            segment_bytes: config.store.segment_bytes,
            queue_memory_bytes: config.store.queue_memory_bytes,
        };
        let mut vhosts = HashMap::new();
        for name in names {
            let v = VHost::new(&name, meta.clone(), store.clone());
            if let Some(defs) = &saved {
                v.import(defs)?;
            }
            vhosts.insert(name, v);
        }
        let alarms = Alarms::new(&config.alarms, dir);
        let broker = Arc::new(Broker {
            config,
            users,
            meta,
            alarms,
            vhosts: RwLock::new(vhosts),
            reply_consumers: Mutex::new(HashMap::new()),
            next_connection_id: AtomicU64::new(1),
            open_connections: AtomicU64::new(0),
        });
        if saved.is_none() {
            // Record the default user (hashed) and vhost from the first start on.
            broker.meta.bump();
        }
        Ok(broker)
    }

    /// The node's durable state, as written to the definitions file.
    pub fn definitions(&self) -> Definitions {
        let mut d = Definitions {
            product_name: Some("warren".to_owned()),
            product_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            users: self
                .users
                .all()
                .into_iter()
                .map(|u| UserDef {
                    name: u.name,
                    password_hash: u.password.to_rabbit_string(),
                    hashing_algorithm: "rabbit_password_hashing_sha256".to_owned(),
                    tags: u.tags,
                })
                .collect(),
            ..Default::default()
        };
        let vhosts: Vec<Arc<VHost>> = match self.vhosts.read() {
            Ok(v) => v.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for v in vhosts {
            d.vhosts.push(VhostDef {
                name: v.name.clone(),
            });
            v.export(&mut d);
        }
        d.vhosts.sort_by(|a, b| a.name.cmp(&b.name));
        d
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().ok()?.get(name).cloned()
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Connections past their handshake and not yet closed.
    pub fn open_connections(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    pub(crate) fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn register_reply_consumer(&self, token: String, consumer: ReplyConsumer) {
        if let Ok(mut m) = self.reply_consumers.lock() {
            m.insert(token, consumer);
        }
    }

    pub fn reply_consumer(&self, token: &str) -> Option<ReplyConsumer> {
        self.reply_consumers.lock().ok()?.get(token).cloned()
    }

    pub fn remove_reply_consumer(&self, token: &str) {
        if let Ok(mut m) = self.reply_consumers.lock() {
            m.remove(token);
        }
    }
}
