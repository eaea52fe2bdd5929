//! The node's shared state: configuration, the topology ([`Metadata`]: vhosts, users,
//! exchanges, queues), alarms, direct reply-to consumers, and the connection counter. One
//! `Arc<Broker>` is handed to every connection.

use crate::alarms::Alarms;
use crate::config::Config;
use crate::group::ClusterSetup;
use crate::mail::Mailboxes;
use crate::metadata::Metadata;
use crate::queue::remote::Peers;
use crate::remote::Remote;
use crate::reply_to::ReplyConsumers;
use crate::vhost::{StoreLayout, VHost};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use warren_meta::ConnId;

pub struct Broker {
    pub config: Config,
    pub meta: Arc<Metadata>,
    pub alarms: Alarms,
    /// The mailboxes of this node's connections, for its queues to deliver to.
    pub post: Arc<Mailboxes>,
    /// What other nodes send this one on the queue channel.
    pub remote: Arc<Remote>,
    /// Direct reply-to consumers on this node.
    pub replies: Arc<ReplyConsumers>,
    open_connections: AtomicU64,
    /// Connections closed since the node started (see `trim`).
    closed_connections: AtomicU64,
}

impl Broker {
    /// Opens a node alone over its data directory (see [`Broker::open_in`]).
    pub async fn open(config: Config) -> Result<Arc<Broker>, String> {
        let alone = ClusterSetup::alone(&config.node.name);
        Broker::open_in(config, &alone).await
    }

    /// Opens the node over its data directory: rebuilds the topology from the metadata's Raft
    /// snapshot and log (or, at the first start, from what the directory held before, else
    /// with the default user and vhost `/`), starts this node's queues from their logs, and
    /// starts the metadata group with the cluster `setup` describes.
    pub async fn open_in(config: Config, setup: &ClusterSetup) -> Result<Arc<Broker>, String> {
        let dir = &config.node.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        // Transient queues' pages from an earlier run are garbage now.
        let _ = std::fs::remove_dir_all(dir.join("transient"));
        let layout = StoreLayout {
            data_dir: dir.clone(),
            segment_bytes: config.store.segment_bytes,
            queue_memory_bytes: config.store.queue_memory_bytes,
        };
        let post = Arc::new(Mailboxes::default());
        let peers = Peers::new(setup.links.clone());
        let meta = Metadata::new(
            &config.node.name,
            layout,
            config.auth.loopback_users.clone(),
            config.node.queue_type(),
            post.clone(),
            peers.clone(),
            crate::quorum::Replicas::new(setup.quorum.clone()),
        );
        crate::quorum::watch::spawn(meta.replicas());
        let replies = Arc::new(ReplyConsumers::default());
        let remote = Remote::new(peers, &meta, post.clone(), replies.clone());
        let router: Arc<dyn crate::mail::MailRouter> = remote.clone();
        post.route(meta.node(), Arc::downgrade(&router));
        crate::formation::start(&meta, &config, setup).await?;
        let alarms = Alarms::new(&config.alarms, dir);
        Ok(Arc::new(Broker {
            config,
            meta,
            alarms,
            post,
            remote,
            replies,
            open_connections: AtomicU64::new(0),
            closed_connections: AtomicU64::new(0),
        }))
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.meta.vhost(name)
    }

    /// Answers a request from another node for a quorum queue's group (raft id `from`).
    pub async fn serve_quorum(&self, from: u64, request: &[u8]) -> bytes::Bytes {
        self.meta.replicas().serve(from, request).await
    }

    /// A new connection's id, unique across the cluster.
    pub fn next_connection_id(&self) -> ConnId {
        self.meta.ids.next()
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
        self.closed_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed since the node started.
    pub fn connections_closed(&self) -> u64 {
        self.closed_connections.load(Ordering::Relaxed)
    }
}
