//! A data directory belongs to one node at a time. Two nodes writing the same queue logs and
//! definitions file would each take the other's files for their own and lose messages, so a
//! node takes an exclusive lock on `<data_dir>/.lock` for as long as it runs and refuses to
//! start if another process holds it, naming that process. The lock is the kernel's (flock),
//! so it goes away with its process however that process ends.

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

pub struct DataDirLock {
    _lock: Flock<File>,
}

impl DataDirLock {
    /// Locks `dir` (creating it if needed) and records this process's id in the lock file.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        let path = dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                let who = if pid.is_empty() {
                    "another process".to_owned()
                } else {
                    format!("another process (pid {pid})")
                };
                let full = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
                return Err(format!(
                    "data directory '{}' ({}) is in use by {who}; a data directory belongs to one node at a time",
                    dir.display(),
                    full.display()
                ));
            }
        };
        let mut f: &File = &lock;
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = write!(f, "{}", std::process::id());
        let _ = f.flush();
        Ok(DataDirLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = std::env::temp_dir().join(format!("warren-lock-{}", std::process::id()));
        let first = DataDirLock::acquire(&dir).expect("first");
        let err = DataDirLock::acquire(&dir).err().expect("refused");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        let again = DataDirLock::acquire(&dir);
        assert!(again.is_ok(), "free once released");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
