//! A quorum queue member's snapshot on disk. A snapshot is a directory, `snap-<index>-<n>`,
//! holding `image` (the replica's state: its messages in memory, and runs of the ones it paged
//! out) and hard links to the page file's segments those runs are in; the small file
//! `snapshot` names the current one. Taking a snapshot thus costs what the replica holds in
//! memory, not what the queue holds: a deep queue's paged messages are linked, never copied,
//! and the page file never writes to a segment again once it is past it.
//!
//! Another member gets a snapshot as one stream: the image, then each segment (number, length,
//! bytes), read where they lie (`warren_raft::snapshot_data::Pieces`), never copied into one
//! file first, and unpacked into a directory of the same shape on the other side.

use crate::persist::write_atomically;
use crate::queue::state::Image;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use warren_raft::openraft::{BasicNode, SnapshotMeta};
use warren_raft::snapshot_data::Piece;
use warren_store::QueueLog;
use warren_store::log::{seg_path, segment_numbers};

/// Names the current snapshot's directory.
const POINTER: &str = "snapshot";
const IMAGE: &str = "image";
/// A pack being received from another member.
pub(crate) const RECEIVING: &str = "receiving";
/// Where a replica pages messages out (see `QueueLog::pages`).
pub(crate) const PAGES: &str = "pages";

/// Each member's latest entries applied (their numbers and the answers they got), so that an
/// entry proposed again is answered without being applied twice. A member has a few entries
/// in flight at once (see `shell`), which may be applied in another order than it numbered
/// them: so the last `machine::REMEMBERED` of each member are kept, not only the highest.
/// Part of a snapshot, since the log it replaces held those entries.
pub(crate) type Proposers = BTreeMap<u64, BTreeMap<u64, Bytes>>;

/// What a snapshot's `image` holds.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub meta: SnapshotMeta<u64, BasicNode>,
    pub image: Image,
    pub proposers: Proposers,
}

/// A snapshot kept on disk.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub meta: SnapshotMeta<u64, BasicNode>,
    pub dir: PathBuf,
    /// The image's size: what the snapshot costs to take, as its pages are linked.
    pub image_bytes: u64,
}

fn other(e: impl ToString) -> io::Error {
    io::Error::other(e.to_string())
}

/// The current snapshot in `group`, if there is one; leftovers of snapshots taken or received
/// but never finished are removed.
pub(crate) fn open(group: &Path) -> Result<Option<(Stored, SnapshotFile)>, String> {
    let name = match std::fs::read_to_string(group.join(POINTER)) {
        Ok(name) => name,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the queue's snapshot: {e}")),
    };
    let dir = group.join(name.trim());
    if !name.starts_with("snap-") || !dir.is_dir() {
        return Err(format!(
            "the queue's snapshot file names no snapshot ({})",
            name.trim()
        ));
    }
    clean(group, &dir);
    let _ = std::fs::remove_file(group.join(RECEIVING));
    read(&dir)
        .map(Some)
        .map_err(|e| format!("an unreadable queue snapshot: {e}"))
}

/// Reads a snapshot directory's image.
fn read(dir: &Path) -> io::Result<(Stored, SnapshotFile)> {
    let bytes = std::fs::read(dir.join(IMAGE))?;
    let file: SnapshotFile = postcard::from_bytes(&bytes).map_err(other)?;
    let stored = Stored {
        meta: file.meta.clone(),
        dir: dir.to_path_buf(),
        image_bytes: bytes.len() as u64,
    };
    Ok((stored, file))
}

/// Removes every snapshot directory in `group` but `keep`.
fn clean(group: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(group) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_snap = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("snap-"));
        if is_snap && path != keep {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A new snapshot directory's path (not yet created).
fn fresh(group: &Path, index: u64) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    group.join(format!("snap-{index}-{}-{n}", std::process::id()))
}

/// Begins a snapshot: a new directory with links to the page file's `segments` (in `pages`,
/// which the caller flushed). Done while the replica is not changing, so the links hold the
/// records its image's runs name; the rest is [`finish`]ed later.
pub(crate) fn stage(
    group: &Path,
    index: u64,
    pages: &Path,
    segments: impl Iterator<Item = u64>,
) -> io::Result<PathBuf> {
    let dir = fresh(group, index);
    std::fs::create_dir_all(&dir)?;
    for n in segments {
        std::fs::hard_link(seg_path(pages, n), seg_path(&dir, n))?;
    }
    Ok(dir)
}

/// Completes a staged snapshot: writes its image, makes it and the linked segments durable,
/// and makes it the current one (older ones go).
pub(crate) fn finish(group: &Path, dir: &Path, file: &SnapshotFile) -> io::Result<Stored> {
    let bytes = postcard::to_stdvec(file).map_err(other)?;
    for e in std::fs::read_dir(dir)? {
        File::open(e?.path())?.sync_all()?;
    }
    write_atomically(&dir.join(IMAGE), &bytes)?;
    commit(group, dir)?;
    Ok(Stored {
        meta: file.meta.clone(),
        dir: dir.to_path_buf(),
        image_bytes: bytes.len() as u64,
    })
}

/// Points `group`'s snapshot at `dir` (complete and durable) and removes the others.
fn commit(group: &Path, dir: &Path) -> io::Result<()> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| other("a snapshot directory without a name"))?;
    write_atomically(&group.join(POINTER), name.as_bytes())?;
    clean(group, dir);
    Ok(())
}

/// The snapshot as the pieces of one stream, for another member: the image's length and the
/// image, then each segment's number and length and the segment. A segment the page file
/// still appends to grows meanwhile: only what it held when opened is sent, which covers
/// every record the image names.
pub(crate) fn pieces(stored: &Stored) -> io::Result<Vec<Piece>> {
    let file = |path: PathBuf| -> io::Result<(tokio::fs::File, u64)> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        Ok((tokio::fs::File::from_std(f), len))
    };
    let mut out = Vec::new();
    let (image, len) = file(stored.dir.join(IMAGE))?;
    out.push(Piece::Bytes(Bytes::copy_from_slice(&len.to_be_bytes())));
    out.push(Piece::File { file: image, len });
    for n in segment_numbers(&stored.dir)? {
        let (segment, len) = file(seg_path(&stored.dir, n))?;
        let mut head = Vec::with_capacity(16);
        head.extend_from_slice(&n.to_be_bytes());
        head.extend_from_slice(&len.to_be_bytes());
        out.push(Piece::Bytes(Bytes::from(head)));
        out.push(Piece::File { file: segment, len });
    }
    Ok(out)
}

/// Unpacks a pack received from another member into a snapshot directory of `group` and makes
/// it the current one.
pub(crate) fn unpack(group: &Path, mut received: File) -> io::Result<(Stored, SnapshotFile)> {
    use std::io::Seek;
    received.rewind()?;
    let mut input = BufReader::new(received);
    let word = |input: &mut BufReader<File>| -> io::Result<Option<u64>> {
        let mut w = [0u8; 8];
        match input.read_exact(&mut w) {
            Ok(()) => Ok(Some(u64::from_be_bytes(w))),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    };
    let len = word(&mut input)?.ok_or_else(|| other("an empty snapshot"))?;
    let mut image = Vec::new();
    (&mut input).take(len).read_to_end(&mut image)?;
    let file: SnapshotFile = postcard::from_bytes(&image).map_err(other)?;
    let index = file.meta.last_log_id.map_or(0, |l| l.index);
    let dir = fresh(group, index);
    std::fs::create_dir_all(&dir)?;
    while let Some(n) = word(&mut input)? {
        let len = word(&mut input)?.ok_or_else(|| other("a snapshot cut short"))?;
        let mut out = File::create(seg_path(&dir, n))?;
        if io::copy(&mut (&mut input).take(len), &mut out)? != len {
            return Err(other("a snapshot cut short"));
        }
        out.sync_all()?;
    }
    write_atomically(&dir.join(IMAGE), &image)?;
    commit(group, &dir)?;
    let _ = std::fs::remove_file(group.join(RECEIVING));
    let stored = Stored {
        meta: file.meta.clone(),
        dir,
        image_bytes: image.len() as u64,
    };
    Ok((stored, file))
}

/// A page file holding what `image` paged out: the snapshot's segments linked into `pages`
/// (emptied first). None if the image paged nothing out.
pub(crate) fn adopt(
    stored: &Stored,
    image: &Image,
    pages: &Path,
    segment_bytes: u64,
) -> io::Result<Option<QueueLog>> {
    let live = image.pages();
    if live.is_empty() {
        return Ok(None);
    }
    match std::fs::remove_dir_all(pages) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(pages)?;
    for n in live.keys() {
        std::fs::hard_link(seg_path(&stored.dir, *n), seg_path(pages, *n))?;
    }
    QueueLog::adopt_pages(pages, segment_bytes, live).map(Some)
}
