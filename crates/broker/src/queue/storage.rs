//! A queue's disk: its log, and the group commit that makes persistent messages durable before
//! anyone is told so. One fsync is in flight at a time; every message appended while it runs
//! waits for the next one, so a busy queue pays one fsync for many messages. The fsync itself
//! is the queue shell's to run: this only says which files and who waits.

use super::command::Ticket;
use std::fs::File;
use std::path::PathBuf;
use warren_store::QueueLog;

/// Where and how one queue keeps messages on disk (from the node's `StoreLayout`).
#[derive(Debug, Clone)]
pub struct QueueDisk {
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

    /// The files to fsync for everything appended so far, unless an fsync is running or
    /// nothing is new. Its end must come back as [`Storage::synced`].
    pub fn start_sync(&mut self) -> Option<std::io::Result<Vec<File>>> {
        if self.syncing.is_some() || !self.dirty {
            return None;
        }
        self.dirty = false;
        self.syncing = Some(std::mem::take(&mut self.waiting));
        Some(self.log.dirty_files())
    }

    /// The fsync in flight ended: who waited for it.
    pub fn synced(&mut self) -> Vec<Ticket> {
        self.syncing.take().unwrap_or_default()
    }

    /// The queue is going away: whoever still waits (to be told it failed).
    pub fn abandon(&mut self) -> Vec<Ticket> {
        let mut all = std::mem::take(&mut self.waiting);
        all.extend(self.syncing.take().unwrap_or_default());
        all
    }
}
