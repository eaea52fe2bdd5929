//! An append-only file of checksummed records, written in groups and fsynced: what the
//! metadata's Raft log is kept in (entries, votes, commit points and truncations, each one
//! record), replayed in order when the node starts.
//!
//! One file of framed records (`record`). Opening it reads every record back; a torn tail (a
//! crash mid-write) is cut off, and so is anything after a damaged record, since a log must not
//! skip. The owner compacts it now and then by [`Journal::rewrite`]: the records that still
//! matter go to a temporary file, which is fsynced and renamed over the old one.

use crate::record::{FRAME, Framed, seal, unframe};
use bytes::{BufMut, Bytes, BytesMut};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Framed records not yet written.
    pending: BytesMut,
    /// Bytes of records in the file (written or taken to be written).
    len: u64,
}

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<Bytes>,
    /// Bytes cut off the end (a torn or damaged tail).
    pub cut: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads back what it holds.
    pub fn open(path: &Path) -> std::io::Result<(Journal, Replay)> {
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
                Framed::Ok(payload) => {
                    at += FRAME + payload.len();
                    replay.records.push(payload);
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
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                pending: BytesMut::new(),
                len: at as u64,
            },
            replay,
        ))
    }

    /// Adds a record, written at the next [`write_out`].
    pub fn append(&mut self, record: &[u8]) {
        let _ = self.append_with(|out| {
            out.extend_from_slice(record);
            Ok::<(), ()>(())
        });
    }

    /// Appends the record `write` puts into the journal's buffer, without building it apart
    /// first (a raft entry is copied once, not twice). A `write` that fails leaves nothing.
    pub fn append_with<E>(
        &mut self,
        write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.pending.len();
        self.pending.put_bytes(0, FRAME);
        if let Err(e) = write(&mut self.pending) {
            self.pending.truncate(start);
            return Err(e);
        }
        self.len += seal(&mut self.pending, start) as u64;
        Ok(())
    }

    /// Bytes of records in the file, counting those appended and not yet written: how the
    /// owner tells when to compact.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the appended records out, to be written with [`write_out`] (possibly on another
    /// thread, while more are appended).
    pub fn take_pending(&mut self) -> Bytes {
        self.pending.split().freeze()
    }

    /// Puts back records taken but not written (a write failed), ahead of newer ones.
    pub fn restore_pending(&mut self, records: Bytes) {
        let newer = self.pending.split();
        self.pending.extend_from_slice(&records);
        self.pending.extend_from_slice(&newer);
    }

    /// A handle on the file for [`write_out`].
    pub fn file(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    /// Replaces the whole file by `records` (what still matters, in order), durably: a crash
    /// leaves the old file or the new one. Records taken but not yet written must be written
    /// first; records appended and not yet taken stay pending, to follow the new ones.
    pub fn rewrite<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut out = BytesMut::new();
        for r in records {
            let start = out.len();
            out.put_bytes(0, FRAME);
            out.extend_from_slice(r);
            seal(&mut out, start);
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        // The handle of the file now in place, so that no later write can go to the replaced
        // one, whatever fails below.
        self.file = f;
        self.len = (out.len() + self.pending.len()) as u64;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Writes taken records at the end of the journal's file and fsyncs them. On failure the file
/// is cut back to where it was, so that a retry does not follow a torn record.
pub fn write_out(file: &mut File, records: &[u8]) -> std::io::Result<()> {
    write_records(file, records, true)
}

/// [`write_out`], with the fsync left out when `sync` is false: for records that may be lost
/// in a crash without harm (the next fsync carries them).
pub fn write_records(file: &mut File, records: &[u8], sync: bool) -> std::io::Result<()> {
    let before = file.seek(SeekFrom::End(0))?;
    let written = file
        .write_all(records)
        .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
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

    fn records(r: &Replay) -> Vec<&[u8]> {
        r.records.iter().map(|e| e.as_ref()).collect()
    }

    #[test]
    fn records_come_back_in_order() {
        let dir = scratch("order");
        let path = dir.join("journal");
        let (mut j, r) = Journal::open(&path).unwrap();
        assert!(r.records.is_empty());
        j.append(b"one");
        j.append(b"two");
        write(&mut j);
        j.append(b"three");
        write(&mut j);
        drop(j);
        let (j, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"one"[..], b"two", b"three"]);
        assert_eq!(j.len(), std::fs::metadata(&path).unwrap().len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_never_returned() {
        let dir = scratch("torn");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
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
        let (mut j, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"kept"[..]]);
        assert!(r.cut > 0);
        j.append(b"after");
        write(&mut j);
        drop(j);
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"kept"[..], b"after"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rewrite_keeps_what_it_is_given_and_what_is_still_pending() {
        let dir = scratch("rewrite");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        for e in [b"a", b"b", b"c", b"d"] {
            j.append(e);
        }
        write(&mut j);
        j.append(b"pending");
        j.rewrite([&b"c"[..], b"d"]).unwrap();
        write(&mut j);
        j.append(b"e");
        write(&mut j);
        drop(j);
        let (j, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"c"[..], b"d", b"pending", b"e"]);
        assert_eq!(j.len(), std::fs::metadata(&path).unwrap().len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
