//! The shared secret that makes nodes (and warrenctl) one cluster, found as Erlang finds its
//! cookie: `WARREN_COOKIE` in the environment, else a file named on the command line, else
//! `~/.warren.cookie`, created at first start with random content and mode 0400. A cookie file
//! that others can read is refused: anyone who can read it can join the cluster.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that, when set, is the cookie.
pub const ENV: &str = "WARREN_COOKIE";
/// The cookie file's name in the home directory.
pub const FILE_NAME: &str = ".warren.cookie";

/// A cluster cookie. Never printed: its `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie(Vec<u8>);

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cookie({} bytes)", self.0.len())
    }
}

impl Cookie {
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Cookie, String> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err("the cookie is empty".to_owned());
        }
        Ok(Cookie(secret))
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.0
    }

    /// The cookie as a node or warrenctl finds it: `WARREN_COOKIE`, else `file`, else
    /// `~/.warren.cookie` (created if missing, and only then).
    pub fn find(file: Option<&Path>) -> Result<Cookie, String> {
        if let Ok(v) = std::env::var(ENV) {
            return Cookie::new(v.trim().as_bytes().to_vec()).map_err(|e| format!("{ENV}: {e}"));
        }
        match file {
            Some(path) => read(path),
            None => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .ok_or("HOME is not set: name the cookie file with --cookie-file")?;
                made_or_read(&home.join(FILE_NAME))
            }
        }
    }
}

/// The cookie at `path`, made first if there is none. A node and warrenctl started together
/// may both find none: the one that does not make it reads the other's.
fn made_or_read(path: &Path) -> Result<Cookie, String> {
    if let Err(e) = create(path) {
        if !path.exists() {
            return Err(e);
        }
    }
    read(path)
}

/// Reads a cookie file, refusing one that its owner is not the only one able to read.
pub fn read(path: &Path) -> Result<Cookie, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the cookie file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "cookie file {} must be accessible by owner only (chmod 400 it)",
            path.display()
        ));
    }
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read the cookie file {}: {e}", path.display()))?;
    let trimmed = text.trim_ascii().to_vec();
    Cookie::new(trimmed).map_err(|e| format!("cookie file {}: {e}", path.display()))
}

/// Writes a new cookie file: 20 random capital letters (the shape of an Erlang cookie),
/// readable by its owner only. It appears whole or not at all (written aside, then linked into
/// place), so that another process never reads it half written; an existing one is never
/// replaced (an error).
pub fn create(path: &Path) -> Result<(), String> {
    let mut random = [0u8; 20];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness for a cookie: {e}"))?;
    let letters: Vec<u8> = random.iter().map(|b| b'A' + b % 26).collect();
    let mut aside = path.as_os_str().to_owned();
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    aside.push(format!(".{}.{n}.new", std::process::id()));
    let aside = PathBuf::from(aside);
    let _ = std::fs::remove_file(&aside);
    let made = write_private(&aside, &letters)
        .and_then(|()| std::fs::hard_link(&aside, path))
        .map_err(|e| format!("cannot create the cookie file {}: {e}", path.display()));
    let _ = std::fs::remove_file(&aside);
    made
}

/// Writes `bytes` to a new file at `path` that only its owner can read, durably.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    // The mode given at creation is masked by the umask; say it again.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warren-cookie-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_created_cookie_is_private_random_and_read_back() {
        let dir = scratch("create");
        let path = dir.join(FILE_NAME);
        create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        let c = read(&path).unwrap();
        assert_eq!(c.secret().len(), 20);
        assert!(c.secret().iter().all(u8::is_ascii_uppercase));
        let other = dir.join("other");
        create(&other).unwrap();
        assert_ne!(read(&other).unwrap(), c, "two cookies differ");
        assert!(
            create(&path).is_err(),
            "an existing cookie is never overwritten"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A node and warrenctl that both find no cookie at once: one makes it, and every one of
    /// them reads that one, whole.
    #[test]
    fn processes_that_make_the_cookie_at_once_all_read_the_same() {
        let dir = scratch("race");
        let path = dir.join(FILE_NAME);
        for _ in 0..20 {
            let _ = std::fs::remove_file(&path);
            let found: Vec<Result<Cookie, String>> = std::thread::scope(|s| {
                let racers: Vec<_> = (0..4).map(|_| s.spawn(|| made_or_read(&path))).collect();
                racers.into_iter().map(|r| r.join().unwrap()).collect()
            });
            let first = found[0].clone().unwrap();
            assert!(found.iter().all(|c| c.as_ref() == Ok(&first)), "{found:?}");
        }
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "nothing left aside");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cookie_file_others_can_read_is_refused() {
        let dir = scratch("open");
        let path = dir.join("cookie");
        std::fs::write(&path, "SECRET\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("must be accessible by owner only"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&path).unwrap(), Cookie::new("SECRET").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_cookie_is_refused_and_a_cookie_is_never_printed() {
        assert!(Cookie::new("").is_err());
        let c = Cookie::new("SECRET").unwrap();
        assert_eq!(format!("{c:?}"), "Cookie(6 bytes)");
    }
}
