//! Mail: what queues send to connections, and the node's directory of connection mailboxes.
//!
//! A queue never holds a connection. It knows its consumers and waiting publishers only by
//! address (a [`ConnId`], a channel and the channel's key), and its shell looks the
//! connection's mailbox up here by id. That is what lets a queue on another node (or a
//! replicated one) serve a consumer here: it sends the same mail, by the same address, and
//! only the last hop (this directory) is local.
//!
//! A connection's mailbox is unbounded so that a queue never waits on a connection (which
//! could wait on the queue in turn); what bounds it is the credit each consumer grants its
//! queue (see `queue::command::credit_cost`).

use crate::message::Message;
use foldhash::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;
use warren_amqp::ShortStr;
use warren_meta::{ConnId, QueueId};

/// One message handed to one consumer.
#[derive(Debug)]
pub struct Delivery {
    pub channel: u16,
    /// Which opening of the channel the consumer belongs to.
    pub channel_key: u64,
    pub consumer_tag: ShortStr,
    /// The queue it came from; none for direct reply-to, which has no queue.
    pub queue: Option<QueueId>,
    /// The queue's id for this message, used to acknowledge it.
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    pub no_ack: bool,
    /// Carried out again by a quorum queue's new leader: it may have reached its channel
    /// already, and a channel that still holds it drops this copy.
    pub repeat: bool,
}

/// Everything but deliveries crosses to another node as it is (see `queue::wire`). Variants
/// that do not cross come last: a non-self-describing format numbers variants by position,
/// and serde leaves skipped ones out of that count when it reads.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum ConnMsg {
    /// The queue of this consumer went away (deleted); the client is told with basic.cancel
    /// if it asked for consumer-cancel notifications.
    ConsumerGone {
        channel: u16,
        channel_key: u64,
        consumer_tag: ShortStr,
    },
    /// Publishes on a channel are now on disk in one queue (or could not be written).
    Confirmed {
        channel: u16,
        channel_key: u64,
        seqs: Vec<u64>,
        ok: bool,
    },
    /// Messages of a transaction's commit (`seqs`: the commit's number, once per message)
    /// are on disk in one queue (or could not be written).
    Committed {
        channel: u16,
        channel_key: u64,
        seqs: Vec<u64>,
        ok: bool,
    },
    /// Close the connection from the server side (admin action).
    Close { code: u16, text: String },
    #[serde(skip)]
    Deliver(Vec<Delivery>),
    /// Node `node` went down (or its broker stopped): consumers of queues there are
    /// cancelled, as RabbitMQ cancels them when a queue's node goes.
    #[serde(skip)]
    NodeDown { node: warren_meta::NodeId },
    /// An operator asks what the connection's channels are doing (`list_channels`).
    #[serde(skip)]
    Describe(tokio::sync::oneshot::Sender<Vec<ChannelRow>>),
}

/// What an operator sees of a channel (`list_channels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    pub number: u16,
    pub consumers: u32,
    pub unacknowledged: u32,
    /// Publishes not yet confirmed (in confirm mode).
    pub unconfirmed: u32,
    /// Messages published in the open transaction.
    pub uncommitted: u32,
    /// basic.qos for each new consumer, and for the channel as a whole (0: none).
    pub prefetch: u32,
    pub global_prefetch: u32,
    pub confirm: bool,
    pub transactional: bool,
}

pub type Mailbox = mpsc::UnboundedSender<ConnMsg>;

/// A connection's own address and mailbox, as its channels use them.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: ConnId,
    pub tx: Mailbox,
}

impl ConnHandle {
    pub fn send(&self, msg: ConnMsg) -> bool {
        self.tx.send(msg).is_ok()
    }
}

/// What an operator sees of a connection (`list_connections`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub id: ConnId,
    pub user: String,
    pub vhost: String,
    pub peer: std::net::SocketAddr,
    /// The name the client gave its connection, if any.
    pub name: String,
}

/// Where mail for connections on other nodes goes (the cluster's queue channel).
pub trait MailRouter: Send + Sync {
    /// A mailbox that forwards to connection `conn` on its own node.
    fn mailbox_for(&self, conn: ConnId) -> Option<Mailbox>;
}

/// The mailboxes of this node's open connections, by connection id, with what they are; mail
/// for a connection elsewhere goes through the router, when there is one.
#[derive(Default)]
pub struct Mailboxes {
    map: RwLock<HashMap<ConnId, (Mailbox, Option<ConnInfo>)>>,
    router: std::sync::OnceLock<(warren_meta::NodeId, std::sync::Weak<dyn MailRouter>)>,
}

impl std::fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailboxes")
    }
}

impl Mailboxes {
    pub fn register(&self, conn: &ConnHandle) {
        if let Ok(mut m) = self.map.write() {
            m.insert(conn.id, (conn.tx.clone(), None));
        }
    }

    /// Says who a registered connection is, for listings.
    pub fn describe(&self, info: ConnInfo) {
        if let Ok(mut m) = self.map.write() {
            if let Some(entry) = m.get_mut(&info.id) {
                entry.1 = Some(info);
            }
        }
    }

    /// The open connections, oldest first.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let mut all: Vec<ConnInfo> = self
            .map
            .read()
            .map(|m| m.values().filter_map(|(_, i)| i.clone()).collect())
            .unwrap_or_default();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn unregister(&self, id: ConnId) {
        if let Ok(mut m) = self.map.write() {
            m.remove(&id);
        }
    }

    /// Sends mail for connections of other nodes than `me` through `router`.
    pub fn route(&self, me: warren_meta::NodeId, router: std::sync::Weak<dyn MailRouter>) {
        let _ = self.router.set((me, router));
    }

    /// The mailbox of connection `id`, here or (through the router) on its own node.
    pub fn get(&self, id: ConnId) -> Option<Mailbox> {
        if let Some((me, router)) = self.router.get() {
            if id.node != *me {
                return router.upgrade()?.mailbox_for(id);
            }
        }
        self.get_local(id)
    }

    /// The mailboxes of every connection on this node.
    pub fn locals(&self) -> Vec<Mailbox> {
        self.map
            .read()
            .map(|m| m.values().map(|(mb, _)| mb.clone()).collect())
            .unwrap_or_default()
    }

    /// The mailbox of connection `id` if it is on this node.
    pub fn get_local(&self, id: ConnId) -> Option<Mailbox> {
        self.map.read().ok()?.get(&id).map(|(m, _)| m.clone())
    }
}

/// A queue's view of the directory: the mailboxes it has used, so that a delivery does not
/// take a lock. Entries of connections that have gone are dropped now and then.
#[derive(Debug)]
pub struct MailCache {
    post: Arc<Mailboxes>,
    known: HashMap<ConnId, Mailbox>,
    prune_at: usize,
}

impl MailCache {
    pub fn new(post: Arc<Mailboxes>) -> Self {
        MailCache {
            post,
            known: HashMap::default(),
            prune_at: 64,
        }
    }

    /// Sends `msg` to connection `to`; gives it back if that connection is gone.
    pub fn send(&mut self, to: ConnId, msg: ConnMsg) -> Result<(), ConnMsg> {
        let mailbox = match self.known.get(&to) {
            Some(m) => m,
            None => {
                let Some(m) = self.post.get(to) else {
                    return Err(msg);
                };
                if self.known.len() >= self.prune_at {
                    self.known.retain(|_, m| !m.is_closed());
                    self.prune_at = (self.known.len() * 2).max(64);
                }
                self.known.entry(to).or_insert(m)
            }
        };
        match mailbox.send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(msg)) => {
                self.known.remove(&to);
                Err(msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_meta::{NodeId, UidSource};

    #[test]
    fn mail_reaches_registered_connections_only() {
        let ids = UidSource::new(NodeId(7));
        let post = Arc::new(Mailboxes::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let conn = ConnHandle { id: ids.next(), tx };
        post.register(&conn);
        let mut cache = MailCache::new(post.clone());
        let close = || ConnMsg::Close {
            code: 320,
            text: "bye".into(),
        };
        assert!(cache.send(conn.id, close()).is_ok());
        assert!(matches!(
            rx.try_recv(),
            Ok(ConnMsg::Close { code: 320, .. })
        ));
        assert!(
            cache.send(ids.next(), close()).is_err(),
            "unknown connection"
        );
        post.unregister(conn.id);
        drop(rx);
        assert!(
            cache.send(conn.id, close()).is_err(),
            "a closed mailbox gives the mail back"
        );
    }
}
