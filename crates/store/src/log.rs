//! A queue's log: numbered segment files of message records, each with an `.ack` sidecar that
//! records which of its messages were acknowledged (and which were delivered). A segment is
//! deleted once every message in it is acknowledged.
//!
//! Writes are buffered and handed to the OS with `flush`; `dirty_files` gives the handles a
//! caller fsyncs off the async runtime, so one fsync covers every message appended meanwhile
//! (group commit). Acknowledgements are never fsynced: losing one in a crash only makes its
//! message come back, which at-least-once delivery allows.

use crate::record::{FRAME, Framed, StoredMessage, unframe};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
    /// Length of the whole framed record.
    pub len: u32,
}

/// A stretch of consecutive live records in one segment: how a long queue is kept without a
/// per-message index in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub segment: u64,
    /// Where the next record to read starts.
    pub offset: u64,
    /// Where the run ends (exclusive).
    pub end: u64,
    /// Records left in the run.
    pub count: u64,
    /// Their total body bytes, for x-max-length-bytes and statistics.
    pub bytes: u64,
    /// The priority level its messages belong to (a run never mixes levels).
    pub level: u8,
}

/// What a log held when it was opened.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Live persistent messages, in order.
    pub runs: Vec<Run>,
    /// Messages (segment, offset) that had been delivered before: they come back marked
    /// redelivered.
    pub delivered: HashSet<(u64, u64)>,
    /// The next sequence number to use.
    pub next_seq: u64,
    /// Problems found and repaired, for the log.
    pub repairs: Vec<String>,
}

/// Sidecar marks name records by their offset in the segment, so a whole run can be dropped
/// with one mark, without reading it.
const ACK: u8 = 1;
const DELIVERED: u8 = 2;
const ACK_RANGE: u8 = 3;

struct Segment {
    /// Records not yet acknowledged.
    live: u64,
}

pub struct QueueLog {
    dir: PathBuf,
    segment_bytes: u64,
    segments: BTreeMap<u64, Segment>,
    /// The segment being appended to, its file, and how much of it is written to the OS.
    current: u64,
    file: Option<File>,
    written: u64,
    /// Appended records not yet handed to the OS.
    pending: BytesMut,
    /// Files with data the OS has but that are not yet fsynced (and the directory, if a
    /// segment was created).
    unsynced: Vec<File>,
    dir_unsynced: bool,
    /// Whether a persistent record was appended since the last `dirty_files`: only then must
    /// a segment closed meanwhile be fsynced.
    needs_sync: bool,
    /// Acknowledgement and delivery records waiting to be written, by segment.
    marks: BTreeMap<u64, BytesMut>,
    /// Read-ahead: a chunk of one segment.
    cache: Option<(u64, u64, Bytes)>,
    /// Whether acknowledgements are recorded in sidecars. A page file (see [`QueueLog::pages`])
    /// has none: it never outlives the process, so marks would only pile up in memory.
    sidecars: bool,
}

/// The numbers of the segment files in `dir`, in order.
pub fn segment_numbers(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            u64::from_str_radix(name.strip_suffix(".seg")?, 16).ok()
        })
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// The file of segment `n` of the log in `dir`.
pub fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.seg"))
}

fn ack_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.ack"))
}

/// Appended records held before they are handed to the OS.
const PENDING_MAX: usize = 1 << 20;

/// Read-ahead size: sequential reads of a long queue come in chunks this large.
const READ_AHEAD: usize = 1 << 20;

impl QueueLog {
    /// Opens (creating if needed) the log in `dir`, recovering what it holds. Recovered runs
    /// are split by priority level, for a queue with `levels` of them (1: no priorities).
    pub fn open(dir: &Path, segment_bytes: u64, levels: u16) -> io::Result<(QueueLog, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let numbers = segment_numbers(dir)?;
        let mut rec = Recovered::default();
        let mut segments = BTreeMap::new();
        let last = numbers.last().copied();
        for n in &numbers {
            let live = recover_segment(dir, *n, Some(*n) == last, levels.max(1), &mut rec)?;
            if live == 0 {
                let _ = std::fs::remove_file(seg_path(dir, *n));
                let _ = std::fs::remove_file(ack_path(dir, *n));
            } else {
                segments.insert(*n, Segment { live });
            }
        }
        // After the last segment found, even one just removed as empty: numbers never repeat.
        let current = last.map_or(1, |n| n + 1);
        Ok((
            QueueLog::with(dir, segment_bytes, segments, current, true),
            rec,
        ))
    }

    /// A log of `segments` in `dir`, appending to segment `current` on.
    fn with(
        dir: &Path,
        segment_bytes: u64,
        segments: BTreeMap<u64, Segment>,
        current: u64,
        sidecars: bool,
    ) -> QueueLog {
        QueueLog {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(4096),
            current,
            segments,
            file: None,
            written: 0,
            pending: BytesMut::new(),
            unsynced: Vec::new(),
            needs_sync: false,
            dir_unsynced: false,
            marks: BTreeMap::new(),
            cache: None,
            sidecars,
        }
    }

    /// A page file: where a replicated queue keeps the messages its memory does not hold. Its
    /// state is the group's log and snapshot, so whatever `dir` held is thrown away.
    pub fn pages(dir: &Path, segment_bytes: u64) -> io::Result<QueueLog> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        QueueLog::adopt_pages(dir, segment_bytes, BTreeMap::new())
    }

    /// A page file made of the segments already in `dir` (taken from a snapshot), with `live`
    /// records still to be read in each; new records go to new segments, so the files taken
    /// (which a snapshot may share) are never written again.
    pub fn adopt_pages(
        dir: &Path,
        segment_bytes: u64,
        live: BTreeMap<u64, u64>,
    ) -> io::Result<QueueLog> {
        std::fs::create_dir_all(dir)?;
        let current = live.keys().next_back().map_or(1, |n| n + 1);
        let segments = live
            .into_iter()
            .map(|(n, live)| (n, Segment { live }))
            .collect();
        Ok(QueueLog::with(dir, segment_bytes, segments, current, false))
    }

    /// Where the log's files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a message; returns where it will be. Records reach the OS at `flush`, or as soon
    /// as a megabyte of them is waiting, so that a queue paging out a long backlog never holds
    /// more than that in memory.
    pub fn append(&mut self, m: &StoredMessage) -> io::Result<Position> {
        if self.file.is_none() || self.written + self.pending.len() as u64 >= self.segment_bytes {
            self.roll()?;
        }
        let offset = self.written + self.pending.len() as u64;
        let len = m.encode(&mut self.pending) as u32;
        self.segments
            .entry(self.current)
            .or_insert(Segment { live: 0 })
            .live += 1;
        self.needs_sync |= m.persistent;
        if self.pending.len() >= PENDING_MAX {
            self.flush()?;
        }
        Ok(Position {
            segment: self.current,
            offset,
            len,
        })
    }

    /// Starts a new segment file.
    fn roll(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Some(old) = self.file.take() {
            // Persistent data in it still needs an fsync before its messages are confirmed;
            // a segment of pages only (transient messages) is never fsynced, so it is not kept.
            if self.needs_sync {
                self.unsynced.push(old);
            }
            let done = self.current;
            self.current += 1;
            self.maybe_delete(done);
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(seg_path(&self.dir, self.current))?;
        self.file = Some(f);
        self.written = 0;
        self.dir_unsynced = true;
        Ok(())
    }

    /// Hands appended records to the OS (not yet durable). If the write fails (a full disk),
    /// the segment is cut back to its last whole write, so no partial record is left where
    /// the next one goes, and the records stay pending for a later attempt.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        if let Err(e) = f.write_all(&self.pending) {
            let _ = f.set_len(self.written);
            let _ = f.seek(SeekFrom::Start(self.written));
            return Err(e);
        }
        self.written += self.pending.len() as u64;
        self.pending.clear();
        if self.pending.capacity() > 2 * PENDING_MAX {
            // A burst made it large: give the memory back.
            self.pending = BytesMut::new();
        }
        Ok(())
    }

    /// Flushes and returns what must be fsynced to make everything appended so far durable:
    /// run `sync_all` on them (off the async runtime), then confirm.
    pub fn dirty_files(&mut self) -> io::Result<Vec<File>> {
        self.flush()?;
        self.needs_sync = false;
        let mut files = std::mem::take(&mut self.unsynced);
        if let Some(f) = &self.file {
            files.push(f.try_clone()?);
        }
        if std::mem::take(&mut self.dir_unsynced) {
            files.push(File::open(&self.dir)?);
        }
        Ok(files)
    }

    /// Reads the record at `offset` of `segment`. Returns it (or None if it is damaged, which
    /// the caller logs and skips) and the offset of the next record.
    pub fn read(&mut self, segment: u64, offset: u64) -> io::Result<(Option<StoredMessage>, u64)> {
        if segment == self.current && offset + FRAME as u64 > self.written {
            self.flush()?;
        }
        let head = self.bytes_at(segment, offset, FRAME)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let whole = self.bytes_at(segment, offset, FRAME + len)?;
        match unframe(&whole) {
            Framed::Ok(p) => Ok((StoredMessage::decode(p), offset + (FRAME + len) as u64)),
            Framed::Damaged { len } => Ok((None, offset + len as u64)),
            Framed::Torn => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("record at {segment:x}:{offset} is cut short"),
            )),
        }
    }

    /// `len` bytes at `offset` of a segment, through the read-ahead cache.
    fn bytes_at(&mut self, segment: u64, offset: u64, len: usize) -> io::Result<Bytes> {
        if let Some((s, start, buf)) = &self.cache {
            if *s == segment && offset >= *start && offset + len as u64 <= start + buf.len() as u64
            {
                let at = (offset - start) as usize;
                return Ok(buf.slice(at..at + len));
            }
        }
        let want = len.max(READ_AHEAD);
        let mut buf = vec![0u8; want];
        let n = if segment == self.current {
            let f = self
                .file
                .as_ref()
                .ok_or_else(|| io::Error::other("no segment open"))?;
            read_up_to(f, &mut buf, offset)?
        } else {
            let f = File::open(seg_path(&self.dir, segment))?;
            read_up_to(&f, &mut buf, offset)?
        };
        if n < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "segment {segment:x} ends before offset {}",
                    offset + len as u64
                ),
            ));
        }
        buf.truncate(n);
        let buf = Bytes::from(buf);
        let out = buf.slice(..len);
        self.cache = Some((segment, offset, buf));
        Ok(out)
    }

    /// Notes that a message is acknowledged (or dropped); its segment goes when all are.
    pub fn ack(&mut self, pos: &Position) {
        self.mark(pos.segment, ACK, pos.offset, None);
        self.forget(pos.segment, 1);
    }

    /// Drops every record of a run that was never read (a purge or a queue overflow).
    pub fn ack_run(&mut self, run: &Run) {
        self.mark(run.segment, ACK_RANGE, run.offset, Some(run.end));
        self.forget(run.segment, run.count);
    }

    /// Notes that a message was handed to a consumer, so it comes back marked redelivered.
    pub fn delivered(&mut self, pos: &Position) {
        self.mark(pos.segment, DELIVERED, pos.offset, None);
    }

    fn forget(&mut self, segment: u64, n: u64) {
        if let Some(s) = self.segments.get_mut(&segment) {
            s.live = s.live.saturating_sub(n);
        }
        self.maybe_delete(segment);
    }

    fn mark(&mut self, segment: u64, kind: u8, offset: u64, end: Option<u64>) {
        if !self.sidecars {
            return;
        }
        let buf = self.marks.entry(segment).or_default();
        let start = buf.len();
        buf.put_u64(0);
        buf.put_u8(kind);
        buf.put_u64(offset);
        if let Some(end) = end {
            buf.put_u64(end);
        }
        crate::record::seal(buf, start);
    }

    fn maybe_delete(&mut self, segment: u64) {
        if segment == self.current {
            return;
        }
        if self.segments.get(&segment).is_some_and(|s| s.live == 0) {
            self.segments.remove(&segment);
            self.marks.remove(&segment);
            if matches!(&self.cache, Some((s, _, _)) if *s == segment) {
                self.cache = None;
            }
            let _ = std::fs::remove_file(seg_path(&self.dir, segment));
            let _ = std::fs::remove_file(ack_path(&self.dir, segment));
        }
    }

    /// Writes buffered acknowledgement and delivery marks to their sidecars (no fsync).
    pub fn write_marks(&mut self) -> io::Result<()> {
        for (segment, buf) in std::mem::take(&mut self.marks) {
            if !self.segments.contains_key(&segment) {
                continue;
            }
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(ack_path(&self.dir, segment))?;
            f.write_all(&buf)?;
        }
        Ok(())
    }

    /// Segments still on disk (for tests and statistics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Removes the whole log (the queue was deleted).
    pub fn destroy(self) -> io::Result<()> {
        let dir = self.dir.clone();
        drop(self);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn read_up_to(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// What a segment's sidecar says: offsets of acknowledged records (singly and in ranges) and
/// of delivered ones.
#[derive(Default)]
struct Marks {
    acked: HashSet<u64>,
    ranges: Vec<(u64, u64)>,
    delivered: Vec<u64>,
}

impl Marks {
    fn is_acked(&self, offset: u64) -> bool {
        self.acked.contains(&offset) || self.ranges.iter().any(|(a, b)| (*a..*b).contains(&offset))
    }
}

/// Reads a sidecar. A torn tail (a crash mid-write) just ends it.
fn read_marks(path: &Path) -> io::Result<Marks> {
    let mut marks = Marks::default();
    let bytes = match std::fs::read(path) {
        Ok(b) => Bytes::from(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(marks),
        Err(e) => return Err(e),
    };
    let word = |p: &Bytes, at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&p[at..at + 8]);
        u64::from_be_bytes(w)
    };
    let mut at = 0;
    while at < bytes.len() {
        match unframe(&bytes.slice(at..)) {
            Framed::Ok(p) => {
                match (p.first(), p.len()) {
                    (Some(&ACK), 9) => {
                        marks.acked.insert(word(&p, 1));
                    }
                    (Some(&DELIVERED), 9) => marks.delivered.push(word(&p, 1)),
                    (Some(&ACK_RANGE), 17) => marks.ranges.push((word(&p, 1), word(&p, 9))),
                    _ => {}
                }
                at += FRAME + p.len();
            }
            Framed::Damaged { len } => at += len,
            Framed::Torn => break,
        }
    }
    Ok(marks)
}

/// Scans one segment, adding its live persistent messages to `rec`. A torn or damaged tail is
/// cut off (and reported); a damaged record in the middle is skipped. Returns how many live
/// records the segment holds.
fn recover_segment(
    dir: &Path,
    n: u64,
    is_last: bool,
    levels: u16,
    rec: &mut Recovered,
) -> io::Result<u64> {
    let marks = read_marks(&ack_path(dir, n))?;
    let path = seg_path(dir, n);
    let mut f = OpenOptions::new().read(true).write(true).open(&path)?;
    let size = f.metadata()?.len();
    let mut live = 0;
    let mut offset = 0u64;
    let mut run: Option<Run> = None;
    let mut chunk = vec![0u8; 4 << 20];
    f.seek(SeekFrom::Start(0))?;
    let mut eof = false;
    // `data[pos..]` is what has been read and not yet parsed.
    let mut data = Bytes::new();
    let mut pos = 0usize;
    loop {
        if !eof && needs_more(&data[pos..]) {
            let mut more = BytesMut::with_capacity(data.len() - pos + chunk.len());
            more.extend_from_slice(&data[pos..]);
            while !eof && needs_more(&more) {
                let k = f.read(&mut chunk)?;
                if k == 0 {
                    eof = true;
                } else {
                    more.extend_from_slice(&chunk[..k]);
                }
            }
            data = more.freeze();
            pos = 0;
            continue;
        }
        if pos >= data.len() {
            break;
        }
        match unframe(&data.slice(pos..)) {
            Framed::Ok(p) => {
                let len = (FRAME + p.len()) as u64;
                match StoredMessage::decode(p) {
                    Some(m) => {
                        rec.next_seq = rec.next_seq.max(m.seq + 1);
                        if m.persistent && !marks.is_acked(offset) {
                            live += 1;
                            let body = m.body.len() as u64;
                            let level = (m.priority as u16).min(levels - 1) as u8;
                            match &mut run {
                                Some(r) if r.end == offset && r.level == level => {
                                    r.end += len;
                                    r.count += 1;
                                    r.bytes += body;
                                }
                                _ => {
                                    rec.runs.extend(run.take());
                                    run = Some(Run {
                                        segment: n,
                                        offset,
                                        end: offset + len,
                                        count: 1,
                                        bytes: body,
                                        level,
                                    });
                                }
                            }
                        } else {
                            rec.runs.extend(run.take());
                        }
                    }
                    None => rec.runs.extend(run.take()),
                }
                offset += len;
                pos += len as usize;
            }
            Framed::Damaged { len } => {
                rec.repairs.push(format!(
                    "segment {}: skipped a damaged record of {len} bytes at offset {offset}",
                    path.display()
                ));
                rec.runs.extend(run.take());
                offset += len as u64;
                pos += len;
            }
            Framed::Torn => {
                rec.repairs.push(format!(
                    "segment {}: cut {} bytes of torn or unreadable data at offset {offset}{}",
                    path.display(),
                    size - offset,
                    if is_last {
                        ""
                    } else {
                        " (not the last segment)"
                    }
                ));
                f.set_len(offset)?;
                f.sync_all()?;
                break;
            }
        }
    }
    rec.runs.extend(run.take());
    for &d in &marks.delivered {
        if !marks.is_acked(d) {
            rec.delivered.insert((n, d));
        }
    }
    Ok(live)
}

/// Whether `buf` lacks the rest of the record that starts it.
fn needs_more(buf: &[u8]) -> bool {
    if buf.len() < FRAME {
        return true;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    len <= crate::record::MAX_RECORD as usize && buf.len() < FRAME + len
}
