//! Files a node keeps its metadata in besides its Raft log: the group's snapshot (written
//! whole, atomically), and what a data directory held before the metadata became a Raft
//! group (`definitions.json` and `metadata.journal`), read once and imported at the first
//! start over it. A RabbitMQ definitions export put there is imported the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use warren_meta::{Command, Definitions};
use warren_store::Journal;

/// Where a node's definitions were kept before the Raft group, and where a definitions file
/// to import at the first start goes.
pub fn definitions_path(data_dir: &Path) -> PathBuf {
    data_dir.join("definitions.json")
}

fn legacy_journal_path(data_dir: &Path) -> PathBuf {
    data_dir.join("metadata.journal")
}

/// A topology to start from: a snapshot, then changes made after it.
#[derive(Debug, Default)]
pub struct Saved {
    pub definitions: Option<Definitions>,
    pub changes: Vec<Command>,
}

impl Saved {
    pub fn is_empty(&self) -> bool {
        self.definitions.is_none() && self.changes.is_empty()
    }
}

/// Reads what a data directory holds from before the Raft group: the definitions file, and
/// the journal of changes after it (records of `index (u64) | postcard command`).
pub fn load_legacy(data_dir: &Path) -> Result<Saved, String> {
    let definitions = load(data_dir)?;
    let covered = definitions
        .as_ref()
        .and_then(|d| d.warren_journal_index)
        .unwrap_or(0);
    let path = legacy_journal_path(data_dir);
    let mut changes = Vec::new();
    if path.exists() {
        let (_, replay) =
            Journal::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        for raw in replay.records {
            let Some((index, entry)) = raw.split_first_chunk::<8>() else {
                continue;
            };
            if u64::from_be_bytes(*index) <= covered {
                continue;
            }
            match postcard::from_bytes(entry) {
                Ok(cmd) => changes.push(cmd),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "skipping an unreadable metadata journal entry")
                }
            }
        }
    }
    Ok(Saved {
        definitions,
        changes,
    })
}

/// The imported files are kept, renamed, so that nothing reads them again.
pub fn retire_legacy(data_dir: &Path) {
    for path in [definitions_path(data_dir), legacy_journal_path(data_dir)] {
        if path.exists() {
            let mut to = path.clone().into_os_string();
            to.push(".imported");
            if let Err(e) = std::fs::rename(&path, &to) {
                tracing::warn!(path = %path.display(), error = %e, "cannot rename an imported file");
            }
        }
    }
}

/// Writes the file so that a crash leaves either the old or the new one, never a torn one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
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
    read_json(&definitions_path(data_dir))
}

/// Reads a JSON file, if there is one; an unreadable one is an error that names it.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Removes what tests of this process left in the temporary directory under `prefix`
/// (`prefix-<pid>-…`): openraft's storage suite keeps one of its stores past its test.
#[cfg(test)]
pub(crate) fn remove_left_behind(prefix: &str) {
    let mine = format!("{prefix}-{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&mine) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_journal_is_read_after_the_snapshot_it_follows() {
        let dir = std::env::temp_dir().join(format!("warren-legacy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let defs = Definitions {
            warren_journal_index: Some(1),
            ..Default::default()
        };
        write_atomically(&definitions_path(&dir), &serde_json::to_vec(&defs).unwrap()).unwrap();
        let (mut j, _) = Journal::open(&legacy_journal_path(&dir)).unwrap();
        for (i, name) in [(1u64, "covered"), (2, "after")] {
            let mut raw = i.to_be_bytes().to_vec();
            raw.extend(postcard::to_stdvec(&Command::AddVhost { name: name.into() }).unwrap());
            j.append(&raw);
        }
        let pending = j.take_pending();
        warren_store::journal::write_out(&mut j.file().unwrap(), &pending).unwrap();
        let saved = load_legacy(&dir).unwrap();
        assert_eq!(
            saved.changes,
            [Command::AddVhost {
                name: "after".into()
            }]
        );
        assert!(saved.definitions.is_some());
        retire_legacy(&dir);
        assert!(load_legacy(&dir).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
