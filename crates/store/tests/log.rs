//! The queue log across reopenings: what was appended comes back in order, acknowledged and
//! transient messages do not, and torn or damaged files are repaired without ever returning a
//! damaged message.

use bytes::Bytes;
use std::path::PathBuf;
use warren_store::{QueueLog, Recovered, StoredMessage};

/// A test's log directory, removed when the test ends (even if it fails).
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("warren-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    TempDir(d)
}

fn msg(seq: u64, persistent: bool) -> StoredMessage {
    StoredMessage {
        seq,
        persistent,
        expires_at_ms: 0,
        priority: 0,
        exchange: Bytes::from_static(b"x"),
        routing_key: Bytes::from(format!("key-{seq}")),
        properties: Bytes::from_static(&[0, 0]),
        body: Bytes::from(format!("body of message {seq} ").repeat(1 + (seq % 7) as usize)),
    }
}

/// Every message the runs hold, read back in order.
fn read_all(log: &mut QueueLog, rec: &Recovered) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    for run in &rec.runs {
        let mut offset = run.offset;
        let mut n = 0;
        while offset < run.end {
            let (m, next) = log.read(run.segment, offset).unwrap();
            out.extend(m);
            offset = next;
            n += 1;
        }
        assert_eq!(n, run.count, "run count matches its records");
    }
    out
}

fn sync(log: &mut QueueLog) {
    for f in log.dirty_files().unwrap() {
        f.sync_all().unwrap();
    }
}

#[test]
fn appended_messages_come_back_in_order() {
    let d = dir("order");
    let (mut log, rec) = QueueLog::open(&d, 64 * 1024, 1).unwrap();
    assert!(rec.runs.is_empty());
    for seq in 1..=1000 {
        log.append(&msg(seq, true)).unwrap();
    }
    sync(&mut log);
    assert!(log.segment_count() > 1, "small segments roll over");
    drop(log);
    let (mut log, rec) = QueueLog::open(&d, 64 * 1024, 1).unwrap();
    assert!(rec.repairs.is_empty(), "{:?}", rec.repairs);
    assert_eq!(rec.next_seq, 1001);
    let back = read_all(&mut log, &rec);
    assert_eq!(back, (1..=1000).map(|s| msg(s, true)).collect::<Vec<_>>());
}

#[test]
fn acknowledged_and_transient_messages_do_not_come_back() {
    let d = dir("acks");
    let (mut log, _) = QueueLog::open(&d, 1 << 20, 1).unwrap();
    let mut pos = Vec::new();
    for seq in 1..=100 {
        pos.push(log.append(&msg(seq, seq % 10 != 0)).unwrap());
    }
    for seq in [3u64, 4, 50] {
        log.ack(&pos[(seq - 1) as usize]);
    }
    log.delivered(&pos[5]);
    log.write_marks().unwrap();
    sync(&mut log);
    drop(log);
    let (mut log, rec) = QueueLog::open(&d, 1 << 20, 1).unwrap();
    let seqs: Vec<u64> = read_all(&mut log, &rec).iter().map(|m| m.seq).collect();
    let want: Vec<u64> = (1..=100)
        .filter(|s| s % 10 != 0 && ![3, 4, 50].contains(s))
        .collect();
    assert_eq!(seqs, want);
    assert_eq!(
        rec.delivered.iter().copied().collect::<Vec<_>>(),
        vec![(pos[5].segment, pos[5].offset)]
    );
    assert!(rec.runs.len() > 1, "acked and transient records break runs");
}

#[test]
fn fully_acknowledged_segments_are_deleted() {
    let d = dir("gc");
    let (mut log, _) = QueueLog::open(&d, 16 * 1024, 1).unwrap();
    let pos: Vec<_> = (1..=500)
        .map(|s| log.append(&msg(s, true)).unwrap())
        .collect();
    log.flush().unwrap();
    let before = log.segment_count();
    assert!(before > 3);
    for p in &pos {
        log.ack(p);
    }
    log.write_marks().unwrap();
    assert_eq!(
        log.segment_count(),
        1,
        "only the segment being written stays"
    );
    let files = std::fs::read_dir(&d).unwrap().count();
    assert!(files <= 2, "{files} files left");
    drop(log);
    let (_, rec) = QueueLog::open(&d, 16 * 1024, 1).unwrap();
    assert!(rec.runs.is_empty());
}

#[test]
fn a_dropped_run_does_not_come_back() {
    let d = dir("run-drop");
    let (mut log, _) = QueueLog::open(&d, 1 << 30, 1).unwrap();
    for seq in 1..=30 {
        log.append(&msg(seq, true)).unwrap();
    }
    sync(&mut log);
    drop(log);
    let (mut log, rec) = QueueLog::open(&d, 1 << 30, 1).unwrap();
    assert_eq!(rec.runs.len(), 1);
    let run = rec.runs[0].clone();
    // Read the first 10, then drop the rest of the run unread, as a purge does.
    let mut rest = run.clone();
    for _ in 0..10 {
        let (m, next) = log.read(rest.segment, rest.offset).unwrap();
        log.ack(&warren_store::Position {
            segment: rest.segment,
            offset: rest.offset,
            len: (next - rest.offset) as u32,
        });
        assert!(m.is_some());
        rest.offset = next;
        rest.count -= 1;
    }
    log.ack_run(&rest);
    log.write_marks().unwrap();
    drop(log);
    let (_, rec) = QueueLog::open(&d, 1 << 30, 1).unwrap();
    assert!(rec.runs.is_empty(), "{:?}", rec.runs);
}

#[test]
fn a_torn_tail_is_cut_and_nothing_damaged_is_returned() {
    let d = dir("torn");
    let (mut log, _) = QueueLog::open(&d, 1 << 30, 1).unwrap();
    for seq in 1..=50 {
        log.append(&msg(seq, true)).unwrap();
    }
    sync(&mut log);
    drop(log);
    let seg = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let full = std::fs::read(&seg).unwrap();
    // Cut the file at many places, as a crash mid-write would.
    for cut in (1..full.len()).step_by(97) {
        std::fs::write(&seg, &full[..cut]).unwrap();
        let (mut log, rec) = QueueLog::open(&d, 1 << 30, 1).unwrap();
        let back = read_all(&mut log, &rec);
        let n = back.len() as u64;
        assert_eq!(
            back,
            (1..=n).map(|s| msg(s, true)).collect::<Vec<_>>(),
            "a prefix, intact"
        );
        // A segment left with nothing live is removed altogether.
        let len = std::fs::metadata(&seg).map(|m| m.len()).unwrap_or(0);
        assert!(len <= cut as u64);
        if len < cut as u64 {
            assert!(!rec.repairs.is_empty(), "the repair is reported");
        }
        // The log takes new messages after the repair.
        drop(log);
        std::fs::write(&seg, &full).unwrap();
    }
}

#[test]
fn a_flipped_bit_loses_that_message_only() {
    let d = dir("flip");
    let (mut log, _) = QueueLog::open(&d, 1 << 30, 1).unwrap();
    let pos: Vec<_> = (1..=20)
        .map(|s| log.append(&msg(s, true)).unwrap())
        .collect();
    sync(&mut log);
    drop(log);
    let seg = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // A bit in the body of message 7.
    let p = pos[6];
    bytes[(p.offset + p.len as u64 - 3) as usize] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let (mut log, rec) = QueueLog::open(&d, 1 << 30, 1).unwrap();
    let seqs: Vec<u64> = read_all(&mut log, &rec).iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=20).filter(|s| *s != 7).collect::<Vec<_>>());
    assert_eq!(rec.repairs.len(), 1, "{:?}", rec.repairs);
}

#[test]
fn a_damaged_record_found_at_read_time_is_skipped() {
    let d = dir("late-flip");
    let (mut log, _) = QueueLog::open(&d, 1 << 30, 1).unwrap();
    let pos: Vec<_> = (1..=3)
        .map(|s| log.append(&msg(s, true)).unwrap())
        .collect();
    log.flush().unwrap();
    let seg = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(pos[1].offset + 20) as usize] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let (first, next) = log.read(pos[0].segment, pos[0].offset).unwrap();
    assert_eq!(first.map(|m| m.seq), Some(1));
    let (second, next) = log.read(pos[1].segment, next).unwrap();
    assert!(second.is_none(), "damaged message not returned");
    let (third, _) = log.read(pos[2].segment, next).unwrap();
    assert_eq!(third.map(|m| m.seq), Some(3));
}

fn big(seq: u64, persistent: bool) -> StoredMessage {
    StoredMessage {
        body: Bytes::from(vec![b'x'; 1000]),
        ..msg(seq, persistent)
    }
}

fn on_disk(d: &std::path::Path) -> u64 {
    std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// A long transient backlog reaches the OS as it is appended, a megabyte at a time, instead of
/// waiting in memory for an fsync that transient data never gets.
#[test]
fn appended_records_reach_the_os_a_megabyte_at_a_time() {
    let d = dir("pending");
    let (mut log, _) = QueueLog::open(&d, 64 << 20, 1).unwrap();
    for seq in 1..=3000 {
        log.append(&big(seq, false)).unwrap();
    }
    let written = on_disk(&d);
    assert!(
        written >= 2 << 20,
        "about 3 MB appended, {written} bytes handed to the OS without a flush"
    );
    assert!(
        written < 3_000 * 1000 + 3_000 * 100,
        "not more than was appended"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Segments of transient pages are closed when the log moves on, not kept open for an fsync:
/// only segments holding persistent records are handed out to be synced.
#[test]
fn only_segments_with_persistent_records_wait_for_an_fsync() {
    let d = dir("unsynced");
    let (mut log, _) = QueueLog::open(&d, 64 * 1024, 1).unwrap();
    for seq in 1..=1000 {
        log.append(&big(seq, false)).unwrap();
    }
    let files = log.dirty_files().unwrap();
    // The open segment and the directory (new segments were created), nothing closed.
    assert_eq!(files.len(), 2, "transient pages: {} files", files.len());
    for seq in 1001..=1200 {
        log.append(&big(seq, seq == 1001)).unwrap();
    }
    let files = log.dirty_files().unwrap();
    assert!(
        files.len() > 2,
        "a closed segment with a persistent record is synced: {} files",
        files.len()
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A replica's page file: it starts empty whatever its directory held, writes no sidecars,
/// and can take on segments linked from a snapshot, appending only to new ones.
#[test]
fn a_page_file_starts_empty_and_adopts_segments_without_writing_to_them() {
    use std::collections::BTreeMap;
    use warren_store::log::seg_path;
    let d = dir("pages");
    std::fs::create_dir_all(&*d).unwrap();
    std::fs::write(seg_path(&d, 7), b"left over").unwrap();
    let mut log = QueueLog::pages(&d, 1 << 20).unwrap();
    assert!(!seg_path(&d, 7).exists(), "what the directory held is gone");
    let at: Vec<_> = (0..3)
        .map(|i| log.append(&msg(i, false)).unwrap())
        .collect();
    log.flush().unwrap();
    log.ack(&at[0]);
    log.write_marks().unwrap();
    let names: Vec<String> = std::fs::read_dir(&*d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["0000000000000001.seg"], "no sidecar");

    // Another page file takes segment 1 on (as a snapshot links it), two records still live.
    let other = dir("adopted");
    std::fs::create_dir_all(&*other).unwrap();
    std::fs::hard_link(seg_path(&d, 1), seg_path(&other, 1)).unwrap();
    let size = std::fs::metadata(seg_path(&other, 1)).unwrap().len();
    let mut adopted = QueueLog::adopt_pages(&other, 1 << 20, BTreeMap::from([(1, 2)])).unwrap();
    let (m, _) = adopted.read(1, at[1].offset).unwrap();
    assert_eq!(m.unwrap().seq, 1);
    let new = adopted.append(&msg(3, false)).unwrap();
    adopted.flush().unwrap();
    assert_eq!(new.segment, 2, "new records go to a new segment");
    assert_eq!(std::fs::metadata(seg_path(&other, 1)).unwrap().len(), size);
    // Its two records read, the adopted segment goes (the link in `d` stays).
    adopted.ack(&at[1]);
    adopted.ack(&at[2]);
    assert!(!seg_path(&other, 1).exists());
    assert!(seg_path(&d, 1).exists());
}
