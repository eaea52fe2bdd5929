//! The metadata group's state machine, as openraft sees it: a thin shell around
//! [`Metadata`], which applies committed commands to the topology. A snapshot is the whole
//! topology as definitions JSON (RabbitMQ's format, with warren's ids and homes), with the log
//! position and membership it covers; it is kept in `raft/snapshot.json` (a RAM node's in
//! memory, see [`Kept`]) and is what a node too far behind the log receives.

use crate::metadata::Metadata;
use crate::persist::{read_json, write_atomically};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use warren_meta::Definitions;
use warren_raft::openraft::entry::RaftPayload;
use warren_raft::openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use warren_raft::openraft::{
    BasicNode, Entry, LogId, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use warren_raft::{Meta, Outcome};

/// A snapshot as written to disk and sent to other nodes.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub meta: SnapshotMeta<u64, BasicNode>,
    pub definitions: Definitions,
}

pub(crate) fn snapshot_path(raft_dir: &Path) -> PathBuf {
    raft_dir.join("snapshot.json")
}

/// Where a RAM node keeps the membership its metadata ends with (see [`Kept::Memory`]).
fn members_path(raft_dir: &Path) -> PathBuf {
    raft_dir.join("members.json")
}

/// Where a node keeps its latest snapshot.
#[derive(Clone)]
pub(crate) enum Kept {
    /// In `raft/snapshot.json`.
    Disk(PathBuf),
    /// A RAM node's: in memory, as its log is; only the membership goes to disk
    /// (`raft/members.json`), so that it knows whom to ask for the metadata when it starts
    /// again, as RabbitMQ's RAM nodes keep the disc nodes' names on disk.
    Memory {
        raft_dir: PathBuf,
        last: Arc<Mutex<Option<Vec<u8>>>>,
    },
}

impl Kept {
    pub fn memory(raft_dir: PathBuf) -> Kept {
        Kept::Memory {
            raft_dir,
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// Keeps `bytes`, the snapshot whose header is `meta` (blocking: call off the async
    /// workers).
    fn keep(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Kept::Disk(raft_dir) => write_atomically(&snapshot_path(raft_dir), bytes),
            // The membership is written down where it changes (applying an entry, installing
            // a snapshot), not here: a snapshot is built on a task of its own, which would race
            // those writes and could put back an older membership.
            Kept::Memory { last, .. } => {
                if let Ok(mut last) = last.lock() {
                    *last = Some(bytes.to_vec());
                }
                Ok(())
            }
        }
    }

    /// The snapshot kept last, with its header (blocking).
    fn current(&self) -> Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)> {
        let bytes = match self {
            Kept::Disk(raft_dir) => std::fs::read(snapshot_path(raft_dir)).ok()?,
            Kept::Memory { last, .. } => last.lock().ok()?.clone()?,
        };
        let f: SnapshotFile = serde_json::from_slice(&bytes).ok()?;
        Some((f.meta, bytes))
    }
}

/// Writes a RAM node's membership down (blocking). Called only from the state machine's own
/// task (applying, installing), one write at a time. A failure is logged, not returned: the
/// metadata itself is in memory, and the file only helps the next start find the cluster.
fn write_members(raft_dir: &Path, membership: &StoredMembership<u64, BasicNode>) {
    let written = serde_json::to_vec(membership)
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_atomically(&members_path(raft_dir), &bytes));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot write down the cluster's membership (raft/members.json)");
    }
}

/// The membership a RAM node wrote last (see [`Kept::Memory`]).
pub(crate) fn load_members(
    raft_dir: &Path,
) -> Result<Option<StoredMembership<u64, BasicNode>>, String> {
    read_json(&members_path(raft_dir))
}

/// Reads the node's snapshot, if it has one.
pub(crate) fn load_snapshot(raft_dir: &Path) -> Result<Option<SnapshotFile>, String> {
    read_json(&snapshot_path(raft_dir))
}

/// A snapshot just written.
pub(crate) struct Written {
    pub meta: SnapshotMeta<u64, BasicNode>,
    pub bytes: Vec<u8>,
    /// How many things (users, exchanges, queues, bindings) it holds.
    pub size: u64,
}

/// Writes a snapshot of the topology as it stands now.
pub(crate) fn write_snapshot(meta: &Metadata, kept: &Kept) -> Result<Written, String> {
    let (definitions, applied, membership) = meta.snapshot_state();
    let size = (definitions.users.len()
        + definitions.exchanges.len()
        + definitions.queues.len()
        + definitions.bindings.len()) as u64;
    let snapshot_meta = SnapshotMeta {
        last_log_id: applied,
        last_membership: membership,
        snapshot_id: format!("{}-{}", applied.map_or(0, |l| l.index), meta.ids.next().n),
    };
    let file = SnapshotFile {
        meta: snapshot_meta.clone(),
        definitions,
    };
    let bytes = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
    kept.keep(&bytes).map_err(|e| e.to_string())?;
    Ok(Written {
        meta: snapshot_meta,
        bytes,
        size,
    })
}

#[derive(Clone)]
pub(crate) struct MetaMachine {
    meta: Arc<Metadata>,
    kept: Kept,
    /// How many things the last snapshot held (see `group`: snapshots come as often as
    /// that many entries accumulate).
    pub snapshot_size: Arc<AtomicU64>,
}

impl MetaMachine {
    pub fn new(meta: Arc<Metadata>, kept: Kept) -> MetaMachine {
        MetaMachine {
            meta,
            kept,
            snapshot_size: Arc::new(AtomicU64::new(0)),
        }
    }
}

fn io_error(e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

impl RaftSnapshotBuilder<Meta> for MetaMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Meta>, StorageError<u64>> {
        let (meta, kept) = (self.meta.clone(), self.kept.clone());
        // Exporting holds the topology's lock for as long as it takes to copy it; writing runs
        // off the async workers.
        let written = tokio::task::spawn_blocking(move || write_snapshot(&meta, &kept))
            .await
            .map_err(io_error)?;
        let w = written.map_err(io_error)?;
        self.snapshot_size.store(w.size, Ordering::Release);
        Ok(Snapshot {
            meta: w.meta,
            snapshot: Box::new(Cursor::new(w.bytes)),
        })
    }
}

impl RaftStateMachine<Meta> for MetaMachine {
    type SnapshotBuilder = MetaMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok(self.meta.applied_state())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Meta>> + Send,
        I::IntoIter: Send,
    {
        let Kept::Memory { raft_dir, .. } = &self.kept else {
            return Ok(self.meta.apply_committed(entries));
        };
        // A RAM node writes the membership down whenever it changes (see `Kept::Memory`).
        let mut changed = false;
        let outcomes = self.meta.apply_committed(
            entries
                .into_iter()
                .inspect(|e| changed |= e.get_membership().is_some()),
        );
        if changed {
            let (_, membership) = self.meta.applied_state();
            let dir = raft_dir.clone();
            tokio::task::spawn_blocking(move || write_members(&dir, &membership))
                .await
                .map_err(io_error)?;
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> MetaMachine {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(io_error)?;
        self.meta
            .install(
                &file.definitions,
                meta.last_log_id,
                meta.last_membership.clone(),
            )
            .map_err(io_error)?;
        let (kept, membership) = (self.kept.clone(), meta.last_membership.clone());
        tokio::task::spawn_blocking(move || {
            if let Kept::Memory { raft_dir, .. } = &kept {
                write_members(raft_dir, &membership);
            }
            kept.keep(&bytes)
        })
        .await
        .map_err(io_error)?
        .map_err(io_error)?;
        tracing::info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            "installed a metadata snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Meta>>, StorageError<u64>> {
        let kept = self.kept.clone();
        let file = tokio::task::spawn_blocking(move || kept.current())
            .await
            .map_err(io_error)?;
        Ok(file.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::Mailboxes;
    use crate::vhost::StoreLayout;
    use warren_raft::LogStore;
    use warren_raft::openraft::testing::{StoreBuilder, Suite};

    /// Removes a test's directory when dropped.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Stores on disk, or (`true`) a RAM node's, in memory.
    struct Builder(bool);

    const DISK_SUITE: &str = "warren-raft-suite";
    const RAM_SUITE: &str = "warren-ram-suite";

    impl StoreBuilder<Meta, LogStore<Meta>, MetaMachine, Scratch> for Builder {
        async fn build(&self) -> Result<(Scratch, LogStore<Meta>, MetaMachine), StorageError<u64>> {
            static N: AtomicU64 = AtomicU64::new(0);
            // Apart for each kind, since each suite removes what it left behind when it ends.
            let dir = std::env::temp_dir().join(format!(
                "{}-{}-{}",
                if self.0 { RAM_SUITE } else { DISK_SUITE },
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(io_error)?;
            let layout = StoreLayout {
                data_dir: dir.clone(),
                segment_bytes: 1 << 20,
                queue_memory_bytes: 1 << 20,
            };
            let meta = Metadata::new(
                "suite@localhost",
                layout,
                Vec::new(),
                None,
                Arc::new(Mailboxes::default()),
                crate::queue::remote::Peers::new(Arc::new(crate::queue::remote::NoLinks)),
                crate::quorum::Replicas::new(crate::group::ClusterSetup::alone("suite").quorum),
            );
            let (log, kept) = if self.0 {
                (LogStore::in_memory(), Kept::memory(dir.clone()))
            } else {
                let (log, _) = LogStore::open(&dir.join("log")).map_err(io_error)?;
                (log, Kept::Disk(dir.clone()))
            };
            Ok((Scratch(dir), log, MetaMachine::new(meta, kept)))
        }
    }

    /// openraft's own conformance suite for log storage and state machines: appends,
    /// truncation, purges, votes, the membership read back from log and state machine,
    /// snapshots built, sent and installed.
    #[test]
    fn the_log_and_state_machine_pass_openraft_s_storage_suite() {
        let passed = Suite::test_all(Builder(false));
        crate::persist::remove_left_behind(DISK_SUITE);
        passed.unwrap();
    }

    /// The same suite for a RAM node's log and snapshots, in memory.
    #[test]
    fn a_ram_node_s_log_and_state_machine_pass_openraft_s_storage_suite() {
        let passed = Suite::test_all(Builder(true));
        crate::persist::remove_left_behind(RAM_SUITE);
        passed.unwrap();
    }
}
