//! Keeping the durable topology on disk: a journal of changes, and a snapshot now and then.
//!
//! A durable change is recorded, under the topology's lock (so the journal's order is the
//! order of the changes), as one short postcard-encoded entry (exact for every value a field
//! table can hold, floats included) in the metadata journal
//! (`warren_store::Journal`). One writer task appends what was recorded and fsyncs, many
//! changes to one fsync, and announces the last entry it covered; the method that made a
//! change waits for that before replying, so a declare-ok for a durable entity means it is on
//! disk. The cost of a change does not depend on how much topology exists.
//!
//! Every [`SNAPSHOT_EVERY`] entries the writer also writes the whole durable topology as
//! `definitions.json` (RabbitMQ's format, with the journal index it covers) and drops the
//! journal entries it covers. Start-up reads the snapshot and replays the entries after it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, watch};
use warren_meta::{Command, Definitions};
use warren_store::Journal;
use warren_store::journal::write_out;

/// Journal entries between two snapshots, at least: more when the topology is larger (as many
/// entries as the last snapshot held things), so that what snapshots cost per change stays the
/// same however large the topology grows.
pub const SNAPSHOT_EVERY: u64 = 20_000;

pub struct MetaStore {
    path: PathBuf,
    journal: Mutex<Journal>,
    written: watch::Sender<u64>,
    wake: Notify,
    /// The index the last snapshot covers.
    snapshot_at: AtomicU64,
    /// Journal entries between two snapshots, at least.
    snapshot_every: u64,
    /// How many things (exchanges, queues, bindings, users) the last snapshot held.
    snapshot_size: AtomicU64,
    /// Held while a snapshot is written: one at a time, so that the one written at shutdown
    /// never interleaves with a periodic one still on its blocking thread.
    writing: std::sync::Arc<Mutex<()>>,
}

/// Where the node keeps its definitions snapshot.
pub fn definitions_path(data_dir: &Path) -> PathBuf {
    data_dir.join("definitions.json")
}

fn journal_path(data_dir: &Path) -> PathBuf {
    data_dir.join("metadata.journal")
}

/// What a node's data directory says about its topology.
pub struct Saved {
    /// The last snapshot, if there is one.
    pub definitions: Option<Definitions>,
    /// Changes made after it, in order.
    pub changes: Vec<Command>,
}

impl Saved {
    pub fn is_empty(&self) -> bool {
        self.definitions.is_none() && self.changes.is_empty()
    }
}

impl MetaStore {
    /// Opens the node's metadata: its snapshot and the journal entries after it.
    pub fn open(data_dir: &Path) -> Result<(MetaStore, Saved), String> {
        let definitions = load(data_dir)?;
        let covered = definitions
            .as_ref()
            .and_then(|d| d.warren_journal_index)
            .unwrap_or(0);
        let path = journal_path(data_dir);
        let (journal, replay) = Journal::open(&path, covered)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if replay.cut > 0 {
            tracing::warn!(path = %path.display(), bytes = replay.cut, "cut a torn end off the metadata journal (a change interrupted by a crash, never confirmed)");
        }
        let mut changes = Vec::new();
        for (index, entry) in replay.entries.into_iter().filter(|(i, _)| *i > covered) {
            match postcard::from_bytes(&entry) {
                Ok(cmd) => changes.push(cmd),
                // Every entry was read back before it was confirmed (see `record`), so this is
                // damage on disk: say so, keep what can be read, and start.
                Err(e) => {
                    tracing::error!(path = %path.display(), index, error = %e, "skipping an unreadable metadata journal entry")
                }
            }
        }
        let last = journal.last_index();
        let store = MetaStore {
            path: definitions_path(data_dir),
            journal: Mutex::new(journal),
            written: watch::Sender::new(last),
            wake: Notify::new(),
            snapshot_at: AtomicU64::new(covered),
            snapshot_every: SNAPSHOT_EVERY,
            snapshot_size: AtomicU64::new(0),
            writing: std::sync::Arc::new(Mutex::new(())),
        };
        Ok((
            store,
            Saved {
                definitions,
                changes,
            },
        ))
    }

    /// Records a durable change; returns the journal index to wait for. Called under the
    /// topology's lock.
    pub fn record(&self, cmd: &Command) -> u64 {
        let entry = match postcard::to_stdvec(cmd) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a metadata change");
                return 0;
            }
        };
        let index = match self.journal.lock() {
            Ok(mut j) => j.append(&entry),
            Err(_) => 0,
        };
        self.wake.notify_one();
        index
    }

    /// The index of the last change recorded (for a snapshot taken under the same lock).
    pub fn last_index(&self) -> u64 {
        self.journal.lock().map(|j| j.last_index()).unwrap_or(0)
    }

    /// Waits until the journal holds change `index` on disk.
    pub async fn wait(&self, index: u64) -> std::io::Result<()> {
        let mut rx = self.written.subscribe();
        rx.wait_for(|w| *w >= index)
            .await
            .map(|_| ())
            .map_err(|_| std::io::Error::other("metadata writer stopped"))
    }

    /// The writer: runs until the node stops. `snapshot` gathers the durable topology and the
    /// journal index it covers.
    pub async fn run_writer(&self, snapshot: impl Fn() -> Definitions) {
        loop {
            let taken = self.journal.lock().ok().map(|mut j| {
                let pending = j.take_pending();
                (pending, j.last_index(), j.file())
            });
            let Some((pending, last, file)) = taken else {
                return;
            };
            if pending.is_empty() {
                let due = self
                    .snapshot_every
                    .max(self.snapshot_size.load(Ordering::Acquire));
                if last - self.snapshot_at.load(Ordering::Acquire) >= due {
                    self.snapshot(&snapshot).await;
                    continue;
                }
                self.wake.notified().await;
                continue;
            }
            let done = tokio::task::spawn_blocking(move || {
                let r = file.and_then(|mut f| write_out(&mut f, &pending));
                (r, pending)
            })
            .await;
            match done {
                Ok((Ok(()), _)) => {
                    self.written.send_replace(last);
                }
                Ok((Err(e), pending)) => {
                    // A full or failing disk: nothing is confirmed until it writes again, and
                    // what could not be written is tried again first.
                    tracing::error!(error = %e, "cannot write the metadata journal");
                    if let Ok(mut j) = self.journal.lock() {
                        j.restore_pending(pending);
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Writes a snapshot off the async workers.
    async fn snapshot(&self, snapshot: &impl Fn() -> Definitions) {
        let defs = snapshot();
        let Some(index) = defs.warren_journal_index else {
            return;
        };
        let path = self.path.clone();
        let size = size_of(&defs);
        let writing = self.writing.clone();
        let written = tokio::task::spawn_blocking(move || {
            let _one = writing.lock();
            write_atomically(&path, &defs)
        })
        .await;
        match written {
            Ok(Ok(())) => self.covered(index, size),
            Ok(Err(e)) => {
                tracing::error!(error = %e, path = %self.path.display(), "cannot write a metadata snapshot");
                // Not again at once: each attempt reads the whole topology under its lock.
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            Err(_) => {}
        }
    }

    /// Writes the durable topology (with the journal index it covers) as `definitions.json`
    /// and drops the journal entries it covers. Blocks on the disk.
    pub fn write_snapshot(&self, defs: &Definitions) {
        let Some(index) = defs.warren_journal_index else {
            return;
        };
        let _one = self.writing.lock();
        match write_atomically(&self.path, defs) {
            Ok(()) => self.covered(index, size_of(defs)),
            Err(e) => {
                tracing::error!(error = %e, path = %self.path.display(), "cannot write a metadata snapshot");
            }
        }
    }

    /// A snapshot on disk covers the journal up to `index`: those entries go. (Rare, and the
    /// journal is short then: a few megabytes at most.)
    fn covered(&self, index: u64, size: u64) {
        self.snapshot_at.store(index, Ordering::Release);
        self.snapshot_size.store(size, Ordering::Release);
        if let Ok(mut j) = self.journal.lock() {
            if let Err(e) = j.drop_through(index) {
                tracing::warn!(error = %e, "cannot shorten the metadata journal");
            }
        }
    }
}

/// How many things a snapshot holds.
fn size_of(d: &Definitions) -> u64 {
    (d.users.len() + d.exchanges.len() + d.queues.len() + d.bindings.len()) as u64
}

/// Writes the file so that a crash leaves either the old or the new one, never a torn one.
pub fn write_atomically(path: &Path, defs: &Definitions) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(defs).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads the definitions file, if the node has one.
pub fn load(data_dir: &Path) -> Result<Option<Definitions>, String> {
    let path = definitions_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn add_vhost(n: u64) -> Command {
        Command::AddVhost {
            name: format!("v{n}"),
        }
    }

    fn names(changes: &[Command]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Command::AddVhost { name } => name.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn changes_come_back_after_the_snapshot_that_covers_the_ones_before() {
        let dir = std::env::temp_dir().join(format!("warren-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (store, saved) = MetaStore::open(&dir).unwrap();
        assert!(saved.is_empty());
        let store = Arc::new(MetaStore {
            snapshot_every: 3,
            ..store
        });
        // The "topology" the snapshot writes: the vhosts recorded so far.
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let (store, recorded) = (store.clone(), recorded.clone());
            tokio::spawn(async move {
                let s = store.clone();
                store
                    .run_writer(move || {
                        // Under the same lock that changes are recorded under, as the
                        // topology's lock is for the real thing.
                        let held = recorded.lock().unwrap();
                        let vhosts: Vec<String> = held.clone();
                        Definitions {
                            vhosts: vhosts
                                .into_iter()
                                .map(|name| warren_meta::definitions::VhostDef { name })
                                .collect(),
                            warren_journal_index: Some(s.last_index()),
                            ..Default::default()
                        }
                    })
                    .await
            })
        };
        for n in 1..=4 {
            let i = {
                let mut held = recorded.lock().unwrap();
                held.push(format!("v{n}"));
                store.record(&add_vhost(n))
            };
            store.wait(i).await.unwrap();
        }
        // The writer snapshots once 3 entries are past the last snapshot.
        for _ in 0..100 {
            if store.snapshot_at.load(Ordering::Acquire) >= 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let covered = store.snapshot_at.load(Ordering::Acquire);
        assert!(covered >= 3, "a snapshot was taken ({covered})");
        let i = store.record(&add_vhost(5));
        store.wait(i).await.unwrap();
        writer.abort();
        drop(store);

        let (_, saved) = MetaStore::open(&dir).unwrap();
        let defs = saved.definitions.expect("a snapshot");
        let snap: Vec<String> = defs.vhosts.iter().map(|v| v.name.clone()).collect();
        let mut all = snap.clone();
        all.extend(names(&saved.changes));
        assert_eq!(
            all,
            ["v1", "v2", "v3", "v4", "v5"],
            "snapshot {snap:?} then the journal"
        );
        assert_eq!(defs.warren_journal_index, Some(snap.len() as u64));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
