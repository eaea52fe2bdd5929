//! The node's shared state: configuration, users, vhosts, direct reply-to consumers, and the
//! connection counter. One `Arc<Broker>` is handed to every connection.

use crate::auth::{PasswordHash, User, Users};
use crate::config::Config;
use crate::mailbox::ConnHandle;
use crate::vhost::VHost;
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
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    reply_consumers: Mutex<HashMap<String, ReplyConsumer>>,
    next_connection_id: AtomicU64,
    open_connections: AtomicU64,
}

impl Broker {
    pub fn new(config: Config) -> Arc<Broker> {
        let users = Users::default();
        users.add(User {
            name: config.auth.default_user.clone(),
            password: PasswordHash::new(&config.auth.default_pass),
            tags: vec!["administrator".to_owned()],
            loopback_only: config
                .auth
                .loopback_users
                .contains(&config.auth.default_user),
        });
        let mut vhosts = HashMap::new();
        vhosts.insert("/".to_owned(), VHost::new("/"));
        Arc::new(Broker {
            config,
            users,
            vhosts: RwLock::new(vhosts),
            reply_consumers: Mutex::new(HashMap::new()),
            next_connection_id: AtomicU64::new(1),
            open_connections: AtomicU64::new(0),
        })
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
