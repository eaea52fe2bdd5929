//! A queue's disk: its log, and the group commit that makes persistent messages durable before
//! anyone is told so. One fsync is in flight at a time; every message appended while it runs
//! waits for the next one, so a busy queue pays one fsync for many messages.

use super::command::QueueCmd;
use crate::connection::mail::{ConnHandle, ConnMsg};
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};
use warren_store::QueueLog;

/// Who waits for a message to be on disk.
#[derive(Debug)]
pub enum Ticket {
    /// A publisher confirm, owed on a channel.
    Confirm {
        conn: ConnHandle,
        channel: u16,
        channel_key: u64,
        seq: u64,
    },
    /// A transaction's commit.
    Commit(oneshot::Sender<bool>),
}

/// Where and how a queue keeps messages on disk.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The queue's log directory (created when first needed).
    pub dir: PathBuf,
    /// Size at which a log segment is closed and a new one begun.
    pub segment_bytes: u64,
    /// Body bytes of ready messages a queue keeps in memory; beyond it, new messages wait
    /// on disk until they near the head of the queue.
    pub memory_bytes: u64,
}

pub struct Storage {
    pub log: QueueLog,
    /// Appended since the last fsync began.
    dirty: bool,
    waiting: Vec<Ticket>,
    /// The tickets of the fsync in flight, if one is.
    syncing: Option<Vec<Ticket>>,
}

impl Storage {
    pub fn new(log: QueueLog) -> Storage {
        Storage {
            log,
            dirty: false,
            waiting: Vec::new(),
            syncing: None,
        }
    }

    /// Something was appended that must be durable; `ticket` is told once it is.
    pub fn appended(&mut self, ticket: Option<Ticket>) {
        self.dirty = true;
        self.waiting.extend(ticket);
    }

    /// Starts an fsync of everything appended so far, unless one is running; its end comes
    /// back to the queue as `QueueCmd::Synced`.
    pub fn start_sync(&mut self, queue: &mpsc::Sender<QueueCmd>) {
        if self.syncing.is_some() || !self.dirty {
            return;
        }
        self.dirty = false;
        let files = self.log.dirty_files();
        self.syncing = Some(std::mem::take(&mut self.waiting));
        let queue = queue.clone();
        tokio::spawn(async move {
            let ok = match files {
                Ok(files) => {
                    tokio::task::spawn_blocking(move || files.iter().all(|f| f.sync_all().is_ok()))
                        .await
                        .unwrap_or(false)
                }
                Err(_) => false,
            };
            let _ = queue.send(QueueCmd::Synced(ok)).await;
        });
    }

    /// The fsync in flight ended: tells everyone who waited for it.
    pub fn synced(&mut self, ok: bool, queue: &str) {
        if !ok {
            tracing::error!(queue, "fsync failed: publishes waiting for it are nacked");
        }
        settle(self.syncing.take().unwrap_or_default(), ok);
    }

    /// The queue is going away: whoever still waits is told it failed.
    pub fn abandon(&mut self) {
        settle(std::mem::take(&mut self.waiting), false);
        settle(self.syncing.take().unwrap_or_default(), false);
    }
}

/// Tells waiting publishers and transactions, one message per channel.
pub fn settle(tickets: Vec<Ticket>, ok: bool) {
    let mut by_channel: Vec<(ConnHandle, u16, u64, Vec<u64>)> = Vec::new();
    for t in tickets {
        match t {
            Ticket::Commit(tx) => {
                let _ = tx.send(ok);
            }
            Ticket::Confirm {
                conn,
                channel,
                channel_key,
                seq,
            } => match by_channel
                .iter_mut()
                .find(|(c, ch, k, _)| c.id == conn.id && *ch == channel && *k == channel_key)
            {
                Some((_, _, _, seqs)) => seqs.push(seq),
                None => by_channel.push((conn, channel, channel_key, vec![seq])),
            },
        }
    }
    for (conn, channel, channel_key, seqs) in by_channel {
        conn.send(ConnMsg::Confirmed {
            channel,
            channel_key,
            seqs,
            ok,
        });
    }
}
