//! Keeping the definitions file current. A change to durable topology bumps a generation
//! number; one writer task writes the whole definitions file (to a temporary file, fsync,
//! rename) and announces the generation it covered. The method that made the change waits for
//! that before replying, so a declare-ok for a durable entity means it is on disk, and many
//! changes made at once share one write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, watch};
use warren_meta::Definitions;

pub struct MetaStore {
    path: PathBuf,
    requested: AtomicU64,
    written: watch::Sender<u64>,
    wake: Notify,
}

/// Where the node keeps its definitions.
pub fn definitions_path(data_dir: &Path) -> PathBuf {
    data_dir.join("definitions.json")
}

impl MetaStore {
    pub fn new(data_dir: &Path) -> MetaStore {
        MetaStore {
            path: definitions_path(data_dir),
            requested: AtomicU64::new(0),
            written: watch::Sender::new(0),
            wake: Notify::new(),
        }
    }

    /// Notes that durable topology changed; returns the generation to wait for.
    pub fn bump(&self) -> u64 {
        let g = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake.notify_one();
        g
    }

    /// Waits until the definitions file includes generation `g`.
    pub async fn wait(&self, g: u64) -> std::io::Result<()> {
        let mut rx = self.written.subscribe();
        rx.wait_for(|w| *w >= g)
            .await
            .map(|_| ())
            .map_err(|_| std::io::Error::other("definitions writer stopped"))
    }

    /// The writer: runs until the node stops. `snapshot` gathers the current definitions.
    pub async fn run_writer(&self, snapshot: impl Fn() -> Definitions) {
        loop {
            let target = self.requested.load(Ordering::Acquire);
            if target <= *self.written.borrow() {
                self.wake.notified().await;
                continue;
            }
            let defs = snapshot();
            let path = self.path.clone();
            let done = tokio::task::spawn_blocking(move || write_atomically(&path, &defs)).await;
            match done {
                Ok(Ok(())) => {
                    self.written.send_replace(target);
                }
                Ok(Err(e)) => {
                    // A full or failing disk: keep the old file (still consistent) and retry.
                    tracing::error!(error = %e, path = %self.path.display(), "cannot write definitions");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    }
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
