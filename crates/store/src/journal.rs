//! An append-only file of checksummed records, written in groups and fsynced: what the
//! Raft logs are kept in (entries, votes, commit points and truncations, each one record),
//! replayed in order when the node starts.
//!
//! One file of framed records (`record`). Opening it reads every record back; a torn tail (a
//! crash mid-write) is cut off, and so is anything after a damaged record, since a log must not
//! skip. The owner compacts it now and then by [`Journal::rewrite`]: the records that still
//! matter are written and fsynced apart, and take the journal's name by a rename.
//!
//! A rewrite recycles a file. An fsync of records written over space a file already has costs
//! about half as much as one that makes it grow, which ext4 must also commit the new size for
//! (0.54-0.66 ms against 1.03 ms for 150 kB here), and a quorum queue fsyncs every entry on
//! every member: with its logs' space recycled, its rate rose by 17 % (`docs/quorum.md`).
//! So the records that still matter go into the file the previous rewrite replaced (the
//! spare, `<name>.spare`), over its old records, and the file they replace becomes the next
//! spare. Each rewrite starts a new generation of the file: a header names it, and every
//! record is sealed for it (`record::seal_for`), so that the old records beyond the new ones
//! never read as current. A journal left idle gives its spare back ([`Journal::trim`]).

use crate::record::{FRAME, Framed, seal_for, seal_in, unframe_for};
use bytes::{BufMut, Bytes, BytesMut};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A file's header: a length no record can have, then the file's generation. A file without
/// one is from before generations, and its records are of generation 0.
const HEADER: usize = 8;
const MAGIC: [u8; 4] = u32::MAX.to_be_bytes();

fn header(generation: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&MAGIC);
    h[4..].copy_from_slice(&generation.to_be_bytes());
    h
}

/// The generation a file's first bytes name, if they are a header.
fn generation_of(first: &[u8]) -> Option<u32> {
    let h = first.get(..HEADER)?;
    (h[..4] == MAGIC).then(|| u32::from_be_bytes([h[4], h[5], h[6], h[7]]))
}

/// A file next to the journal: its spare, or the old file on its way to becoming one.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

pub struct Journal {
    path: PathBuf,
    file: File,
    /// The generation the file's records are sealed for.
    generation: u32,
    /// Framed records not yet written.
    pending: BytesMut,
    /// Where in the file the next records taken are written.
    end: u64,
    /// Bytes of the file's content (written or taken to be written) and pending records.
    len: u64,
    /// A spare may be kept since the last trim.
    untrimmed: bool,
}

/// Records taken to be written, and where they go in the file.
#[derive(Debug)]
pub struct Batch {
    at: u64,
    /// The records' bytes (`records` ends with an end mark past them, see `take_pending`).
    len: usize,
    records: Bytes,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<Bytes>,
    /// Bytes cut off the end: a torn or damaged tail, or old records of a recycled file.
    pub cut: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads back what it holds.
    pub fn open(path: &Path) -> std::io::Result<(Journal, Replay)> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let bytes = Bytes::from(std::fs::read(path)?);
        let (mut generation, mut at) = match generation_of(&bytes) {
            Some(g) => (g, HEADER),
            None => (0, 0),
        };
        let mut replay = Replay::default();
        while at < bytes.len() {
            match unframe_for(&bytes.slice(at..), generation) {
                Framed::Ok(payload) => {
                    at += FRAME + payload.len();
                    replay.records.push(payload);
                }
                _ => break,
            }
        }
        if at < bytes.len() {
            // Whatever follows the last whole record goes, records of this generation
            // written after a torn one included: a record written here next must be the
            // last one read back. Only what follows no end mark counts as cut: past one is
            // the recycled space's old records.
            let tail = &bytes[at..];
            if tail[..tail.len().min(FRAME)].iter().any(|&b| b != 0) {
                replay.cut = tail.len() as u64;
            }
            file.set_len(at as u64)?;
            file.sync_all()?;
        }
        if at == 0 {
            // A new file (or one with nothing whole in it) starts with a header.
            generation = 1;
            file.write_all_at(&header(generation), 0)?;
            file.sync_all()?;
            at = HEADER;
        }
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                generation,
                pending: BytesMut::new(),
                end: at as u64,
                len: at as u64,
                untrimmed: true,
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
        self.len += seal_for(&mut self.pending, start, self.generation) as u64;
        Ok(())
    }

    /// Bytes of records in the file, counting those appended and not yet written: how the
    /// owner tells when to compact.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= HEADER as u64
    }

    /// Takes the appended records out, to be written with [`write_out`] (possibly on another
    /// thread, while more are appended).
    pub fn take_pending(&mut self) -> Batch {
        let at = self.end;
        let len = self.pending.len();
        self.end += len as u64;
        if len > 0 && self.generation > 0 {
            // An end mark after the records (the next ones write over it): a frame of zeros,
            // which no record of a generation above 0 can be.
            self.pending.put_bytes(0, FRAME);
        }
        Batch {
            at,
            len,
            records: self.pending.split().freeze(),
        }
    }

    /// Puts back records taken but not written (a write failed), ahead of newer ones.
    pub fn restore_pending(&mut self, batch: Batch) {
        let newer = self.pending.split();
        self.pending.extend_from_slice(&batch.records[..batch.len]);
        self.pending.extend_from_slice(&newer);
        self.end = batch.at;
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
        let spare_path = beside(&self.path, ".spare");
        let spare = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&spare_path)?;
        let mut first = [0u8; HEADER];
        let recycled = spare
            .read_exact_at(&mut first, 0)
            .ok()
            .and_then(|()| generation_of(&first));
        // Above every generation either file was ever written in (a file's header names the
        // newest of its records): no old record can read as one of the new generation. A
        // spare of unknown content (or with generations run out) is emptied instead.
        let newest = self.generation.max(recycled.unwrap_or(0));
        let generation = match (recycled, newest.checked_add(1)) {
            (Some(_), Some(g)) => g,
            _ => {
                spare.set_len(0)?;
                self.generation.checked_add(1).unwrap_or(1)
            }
        };
        let mut out = BytesMut::new();
        out.extend_from_slice(&header(generation));
        for r in records {
            let start = out.len();
            out.put_bytes(0, FRAME);
            out.extend_from_slice(r);
            seal_for(&mut out, start, generation);
        }
        let content = out.len() as u64;
        out.put_bytes(0, FRAME);
        // The header first, on disk before any record of its generation: then no crash can
        // leave records of a generation above the one the file's header names, which the
        // next rewrite would choose again.
        spare.write_all_at(&out[..HEADER], 0)?;
        spare.sync_data()?;
        spare.write_all_at(&out[HEADER..], HEADER as u64)?;
        spare.sync_data()?;
        // The spare takes the journal's name; the file it replaces is kept as the next spare.
        let old = beside(&self.path, ".old");
        let _ = std::fs::remove_file(&old);
        std::fs::hard_link(&self.path, &old)?;
        std::fs::rename(&spare_path, &self.path)?;
        // The handle of the file now in place, so that no later write can go to the replaced
        // one, whatever fails below.
        self.file = spare;
        self.generation = generation;
        self.end = content;
        // Pending records were sealed for the old generation.
        let mut at = 0;
        while at + FRAME <= self.pending.len() {
            let len = u32::from_be_bytes([
                self.pending[at],
                self.pending[at + 1],
                self.pending[at + 2],
                self.pending[at + 3],
            ]) as usize;
            let next = (at + FRAME + len).min(self.pending.len());
            seal_in(&mut self.pending[at..next], generation);
            at = next;
        }
        self.len = self.end + self.pending.len() as u64;
        self.untrimmed = true;
        let _ = std::fs::rename(&old, &spare_path);
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Drops the records appended and not yet taken (the owner holds them elsewhere, and
    /// writes them again).
    pub fn discard_pending(&mut self) {
        self.len -= self.pending.len() as u64;
        self.pending.clear();
    }

    /// Gives back the spare kept for recycling: for a journal that went idle. The file's own
    /// space past its records is given back at the next start or rewrite, not here: a
    /// journal still open in a stopping group must not cut what a new one appended.
    pub fn trim(&mut self) -> std::io::Result<()> {
        if !self.untrimmed {
            return Ok(());
        }
        for leftover in [".spare", ".old"] {
            match std::fs::remove_file(beside(&self.path, leftover)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.untrimmed = false;
        Ok(())
    }
}

/// Writes taken records where they go in the journal's file and fsyncs them. On failure the
/// file is cut back to where they began, so that a retry does not follow a torn record.
pub fn write_out(file: &mut File, batch: &Batch) -> std::io::Result<()> {
    write_records(file, batch, true)
}

/// [`write_out`], with the fsync left out when `sync` is false: for records that may be lost
/// in a crash without harm (the next fsync carries them).
pub fn write_records(file: &mut File, batch: &Batch, sync: bool) -> std::io::Result<()> {
    let written = file
        .write_all_at(&batch.records, batch.at)
        .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
    if written.is_err() {
        let _ = file.set_len(batch.at);
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

    /// Opens a damaged journal whose one whole record is "kept", appends one, and checks that
    /// it is read back right after "kept"; returns the bytes cut at the first opening.
    fn only_kept_then_appended(path: &Path) -> u64 {
        let (mut j, r) = Journal::open(path).unwrap();
        assert_eq!(records(&r), [&b"kept"[..]]);
        j.append(b"after");
        write(&mut j);
        drop(j);
        let (_, again) = Journal::open(path).unwrap();
        assert_eq!(records(&again), [&b"kept"[..], b"after"]);
        r.cut
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
            .set_len(len - FRAME as u64 - 3)
            .unwrap();
        assert!(only_kept_then_appended(&path) > 0, "the cut is told");
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

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn a_rewrite_recycles_the_spare_and_its_old_records_never_come_back() {
        let dir = scratch("recycle");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        let big = |c: u8| vec![c; 1000];
        for c in b"abcd" {
            j.append(&big(*c));
        }
        write(&mut j);
        // No spare yet: the first rewrite makes one; the file it replaces is kept as the next.
        j.rewrite([&big(b'c')[..]]).unwrap();
        let spare = dir.join("journal.spare");
        assert_eq!(size(&spare), (HEADER + 4 * (FRAME + 1000) + FRAME) as u64);
        j.append(&big(b'e'));
        write(&mut j);
        j.rewrite([&big(b'e')[..]]).unwrap();
        // The new content went over the old records of the spare, which kept its size.
        let recycled = size(&path);
        assert_eq!(recycled, (HEADER + 4 * (FRAME + 1000) + FRAME) as u64);
        j.append(b"f");
        write(&mut j);
        assert_eq!(size(&path), recycled, "written over space the file had");
        drop(j);
        let (j, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&big(b'e')[..], b"f"]);
        assert_eq!(r.cut, 0, "old records past an end mark are not damage");
        assert_eq!(j.len(), size(&path), "the old records are cut at the start");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_spare_of_a_newer_generation_or_of_unknown_content_is_never_read_from() {
        let dir = scratch("spare-generations");
        let path = dir.join("journal");
        let spare = dir.join("journal.spare");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(b"one");
        write(&mut j);
        // A spare left from files of generations up to 9 (the journal itself is of 1), with
        // a whole record of generation 2 in it: the rewrite's generation is above 9.
        let mut old = BytesMut::new();
        old.extend_from_slice(&header(9));
        for g in [9, 2] {
            let start = old.len();
            old.put_bytes(0, FRAME);
            old.extend_from_slice(b"stale record");
            seal_for(&mut old, start, g);
        }
        std::fs::write(&spare, &old).unwrap();
        j.rewrite([&b"two"[..]]).unwrap();
        assert_eq!(j.generation, 10, "above the spare's newest");
        drop(j);
        let (mut j, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"two"[..]]);
        // A spare that is not a journal (no header) is emptied before it is used.
        std::fs::write(&spare, vec![0xabu8; 300]).unwrap();
        j.rewrite([&b"three"[..]]).unwrap();
        assert_eq!(size(&path), (HEADER + FRAME + 5 + FRAME) as u64);
        drop(j);
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"three"[..]]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_written_after_a_torn_one_never_comes_back() {
        let dir = scratch("after-torn");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        for r in [&b"kept"[..], b"torn", b"whole but after"] {
            j.append(r);
        }
        write(&mut j);
        drop(j);
        // The second record's payload never reached the disk; the third did.
        let torn_at = (HEADER + FRAME + 4 + FRAME) as u64;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"\0\0\0\0", torn_at).unwrap();
        drop(f);
        only_kept_then_appended(&path);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_journal_from_before_generations_is_read_and_goes_on() {
        let dir = scratch("legacy");
        let path = dir.join("journal");
        let mut old = BytesMut::new();
        for r in [&b"first"[..], b"second"] {
            let start = old.len();
            old.put_bytes(0, FRAME);
            old.extend_from_slice(r);
            crate::record::seal(&mut old, start);
        }
        std::fs::write(&path, &old).unwrap();
        let (mut j, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"first"[..], b"second"]);
        j.append(b"third");
        write(&mut j);
        drop(j);
        let (mut j, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"first"[..], b"second", b"third"]);
        j.rewrite([&b"third"[..]]).unwrap();
        drop(j);
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"third"[..]]);
        assert_eq!(generation_of(&std::fs::read(&path).unwrap()), Some(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_idle_journal_gives_back_its_spare() {
        let dir = scratch("trim");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&[1u8; 2000]);
        write(&mut j);
        j.rewrite([&b"x"[..]]).unwrap();
        j.append(&[2u8; 2000]);
        write(&mut j);
        j.rewrite([&b"y"[..]]).unwrap();
        assert!(size(&path) > (HEADER + 2 * FRAME + 1) as u64, "recycled");
        assert!(dir.join("journal.spare").exists());
        j.trim().unwrap();
        assert!(!dir.join("journal.spare").exists());
        j.append(b"z");
        write(&mut j);
        drop(j);
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"y"[..], b"z"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A record sealed for `generation`, framed.
    fn sealed(payload: &[u8], generation: u32) -> BytesMut {
        let mut out = BytesMut::new();
        out.put_bytes(0, FRAME);
        out.extend_from_slice(payload);
        seal_for(&mut out, 0, generation);
        out
    }

    #[test]
    fn an_old_record_where_the_end_mark_was_lost_is_never_read_back() {
        let dir = scratch("lost-mark");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(b"old");
        write(&mut j);
        j.rewrite([&b"new"[..]]).unwrap();
        let generation = j.generation;
        drop(j);
        // A crash tore the write of the end mark, and an old record lies where it was: one
        // of any earlier generation is not read back; one of this generation would be.
        let mark_at = (HEADER + FRAME + 3) as u64;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        for (old, read_back) in [(generation - 1, false), (0, false), (generation, true)] {
            f.write_all_at(&sealed(b"resurrected", old), mark_at)
                .unwrap();
            let (_, r) = Journal::open(&path).unwrap();
            let want: &[&[u8]] = if read_back {
                &[b"new", b"resurrected"]
            } else {
                &[b"new"]
            };
            assert_eq!(records(&r), want, "a record of generation {old}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rewrite_that_fails_leaves_the_journal_as_it_was() {
        let dir = scratch("failed-rewrite");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(b"kept");
        write(&mut j);
        j.append(b"held elsewhere");
        // A spare that cannot be opened as a file.
        std::fs::create_dir(dir.join("journal.spare")).unwrap();
        j.discard_pending();
        assert!(j.rewrite([&b"compacted"[..]]).is_err());
        j.append(b"after");
        write(&mut j);
        assert_eq!(
            j.len(),
            size(&path) - FRAME as u64,
            "records and their end mark"
        );
        drop(j);
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(records(&r), [&b"kept"[..], b"after"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
