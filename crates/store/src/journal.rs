//! An index-addressed log of opaque entries: what the node's metadata is written to as it
//! changes (one short record per change, fsynced in groups), instead of rewriting the whole
//! definitions file each time. It is the shape a Raft log needs too: entries numbered from 1,
//! appended at the end, and dropped from the front once a snapshot covers them.
//!
//! One file of framed, checksummed records (`record`), each `index (u64) | entry`. Opening it
//! reads every entry back; a torn tail (a crash mid-write) is cut off, and so is anything
//! after a damaged record, since a log must not skip. Dropping a prefix rewrites the file
//! (to a temporary one, fsync, rename), which is rare: once per snapshot.

use crate::record::{FRAME, Framed, seal, unframe};
use bytes::{BufMut, Bytes, BytesMut};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct Journal {
    path: PathBuf,
    file: File,
    /// The index the next entry gets.
    next: u64,
    /// Encoded entries not yet written.
    pending: BytesMut,
}

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub struct Replay {
    pub entries: Vec<(u64, Bytes)>,
    /// Bytes cut off the end (a torn or damaged tail).
    pub cut: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads back what it holds. `after`: the
    /// index of the last entry a snapshot already covers; a new journal starts after it.
    pub fn open(path: &Path, after: u64) -> std::io::Result<(Journal, Replay)> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let bytes = Bytes::from(std::fs::read(path)?);
        let mut replay = Replay::default();
        let mut at = 0;
        while at < bytes.len() {
            match unframe(&bytes.slice(at..)) {
                Framed::Ok(payload) if payload.len() >= 8 => {
                    let index = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
                    replay.entries.push((index, payload.slice(8..)));
                    at += FRAME + payload.len();
                }
                _ => break,
            }
        }
        if at < bytes.len() {
            replay.cut = (bytes.len() - at) as u64;
            file.set_len(at as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        let last = replay.entries.last().map_or(after, |(i, _)| *i);
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                next: last.max(after) + 1,
                pending: BytesMut::new(),
            },
            replay,
        ))
    }

    /// Adds an entry (written at the next [`Journal::write`]); returns its index.
    pub fn append(&mut self, entry: &[u8]) -> u64 {
        let index = self.next;
        self.next += 1;
        let start = self.pending.len();
        self.pending.put_bytes(0, FRAME);
        self.pending.put_u64(index);
        self.pending.extend_from_slice(entry);
        seal(&mut self.pending, start);
        index
    }

    /// The index of the last entry appended (0: none yet).
    pub fn last_index(&self) -> u64 {
        self.next - 1
    }

    /// Takes the appended entries out, to be written with [`write_out`] (possibly on another
    /// thread, while more are appended).
    pub fn take_pending(&mut self) -> Bytes {
        self.pending.split().freeze()
    }

    /// Puts back entries taken but not written (a write failed), ahead of newer ones.
    pub fn restore_pending(&mut self, entries: Bytes) {
        let newer = self.pending.split();
        self.pending.extend_from_slice(&entries);
        self.pending.extend_from_slice(&newer);
    }

    /// A handle on the file for [`write_out`].
    pub fn file(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    /// Drops every entry up to `index` (a snapshot covers them), keeping the rest in order.
    /// Entries taken but not yet written must be written first.
    pub fn drop_through(&mut self, index: u64) -> std::io::Result<()> {
        let (_, replay) = Journal::open(&self.path, 0)?;
        let tmp = self.path.with_extension("tmp");
        {
            let mut out = BytesMut::new();
            for (i, entry) in replay.entries.iter().filter(|(i, _)| *i > index) {
                let start = out.len();
                out.put_bytes(0, FRAME);
                out.put_u64(*i);
                out.extend_from_slice(entry);
                seal(&mut out, start);
            }
            let mut f = File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The handle of the file now in place, so that no later write can go to the
            // replaced one, whatever fails below.
            self.file = f;
        }
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Writes taken entries at the end of the journal's file and fsyncs them. On failure the
/// file is cut back to where it was, so that a retry does not follow a torn record.
pub fn write_out(file: &mut File, entries: &[u8]) -> std::io::Result<()> {
    let before = file.seek(SeekFrom::End(0))?;
    let written = file.write_all(entries).and_then(|()| file.sync_data());
    if written.is_err() {
        let _ = file.set_len(before);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("warren-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(j: &mut Journal) {
        let pending = j.take_pending();
        write_out(&mut j.file().unwrap(), &pending).unwrap();
    }

    fn entries(r: &Replay) -> Vec<(u64, &[u8])> {
        r.entries.iter().map(|(i, e)| (*i, e.as_ref())).collect()
    }

    #[test]
    fn entries_come_back_in_order_with_their_indexes() {
        let dir = scratch("order");
        let path = dir.join("journal");
        let (mut j, r) = Journal::open(&path, 0).unwrap();
        assert!(r.entries.is_empty());
        assert_eq!((j.append(b"one"), j.append(b"two")), (1, 2));
        write(&mut j);
        assert_eq!(j.append(b"three"), 3);
        write(&mut j);
        drop(j);
        let (mut j, r) = Journal::open(&path, 0).unwrap();
        assert_eq!(entries(&r), [(1, &b"one"[..]), (2, b"two"), (3, b"three")]);
        assert_eq!(j.append(b"four"), 4, "numbering goes on");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_never_returned() {
        let dir = scratch("torn");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path, 0).unwrap();
        j.append(b"kept");
        j.append(b"torn by a crash");
        write(&mut j);
        drop(j);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut j, r) = Journal::open(&path, 0).unwrap();
        assert_eq!(entries(&r), [(1, &b"kept"[..])]);
        assert!(r.cut > 0);
        assert_eq!(j.append(b"after"), 2, "the lost entry's index is reused");
        write(&mut j);
        drop(j);
        let (_, r) = Journal::open(&path, 0).unwrap();
        assert_eq!(entries(&r), [(1, &b"kept"[..]), (2, b"after")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_drops_the_prefix_it_covers() {
        let dir = scratch("drop");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path, 0).unwrap();
        for e in [b"a", b"b", b"c", b"d"] {
            j.append(e);
        }
        write(&mut j);
        j.drop_through(2).unwrap();
        j.append(b"e");
        write(&mut j);
        drop(j);
        let (_, r) = Journal::open(&path, 2).unwrap();
        assert_eq!(entries(&r), [(3, &b"c"[..]), (4, b"d"), (5, b"e")]);
        // Everything dropped: a reopened journal numbers on from the snapshot.
        let (mut j, _) = Journal::open(&path, 0).unwrap();
        j.drop_through(5).unwrap();
        drop(j);
        let (mut j, r) = Journal::open(&path, 5).unwrap();
        assert!(r.entries.is_empty());
        assert_eq!(j.append(b"f"), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
