//! openraft's log, kept in a [`Journal`]: every change to the log (an entry appended, the
//! vote, the commit point, a truncation, a purge) is one record, replayed in order at start.
//! Appends are fsynced in groups by one writer task, which tells openraft when its entries
//! are on disk; the whole log since the last purge is also held in memory, since it is short
//! (the snapshot covers the rest). After a purge the writer rewrites the file with only what
//! still matters (its records: `log_records`). A RAM node's log is memory only ([`LogStore::in_memory`]): as RabbitMQ's
//! RAM nodes, it does not vote, and takes the metadata from the disc nodes each time it starts.

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{LogId, RaftLogId, RaftTypeConfig, StorageError, StorageIOError, Vote};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use warren_store::Journal;
use warren_store::journal::{Batch, write_records};

use crate::log_records::Record;
pub use crate::log_records::{Members, append_offline, last_membership};

/// How long a log's writer waits with nothing to write before the log counts as idle: its
/// journal gives back the space it keeps for recycling (see `Journal::trim`), and a writer whose
/// log no one else holds ends.
const IDLE: Duration = if cfg!(test) {
    Duration::from_millis(100)
} else {
    Duration::from_secs(30)
};

/// The log as it stands.
struct State<C: RaftTypeConfig> {
    /// None: the log is kept in memory only.
    journal: Option<Journal>,
    entries: BTreeMap<u64, C::Entry>,
    vote: Option<Vote<C::NodeId>>,
    committed: Option<LogId<C::NodeId>>,
    last_purged: Option<LogId<C::NodeId>>,
    /// Records appended so far (the writer reports how many are on disk).
    appended: u64,
    /// openraft's callbacks, each waiting for the records appended before it.
    flush_waiters: Vec<(u64, LogFlushed<C>)>,
    /// A purge happened: the file holds records that no longer matter.
    compact: bool,
    /// Something pending must be fsynced before it counts (anything but a commit point).
    sync: bool,
}

impl<C: RaftTypeConfig> State<C>
where
    C::Entry: Clone,
{
    fn replay(&mut self, r: Record<C>) {
        match r {
            Record::Entry(e) => {
                self.entries.insert(e.get_log_id().index, e);
            }
            Record::Vote(v) => self.vote = Some(v),
            Record::Committed(c) => self.committed = c,
            Record::Truncate(i) => {
                self.entries.split_off(&i);
            }
            Record::Purged(l) => {
                self.entries = self.entries.split_off(&(l.index + 1));
                self.last_purged = Some(l);
            }
        }
    }

    fn write(&mut self, r: &Record<C>) -> Result<u64, StorageError<C::NodeId>> {
        if let Some(journal) = &mut self.journal {
            journal
                .append_with(|out| r.encode_into(out))
                .map_err(|e| StorageIOError::write_logs(&e))?;
            self.sync |= !matches!(r, Record::Committed(_));
        }
        self.appended += 1;
        Ok(self.appended)
    }

    /// What the file must hold for the log to come back as it is now.
    fn essentials(&self) -> Vec<Record<C>> {
        let mut out = Vec::with_capacity(self.entries.len() + 3);
        if let Some(l) = &self.last_purged {
            out.push(Record::Purged(l.clone()));
        }
        if let Some(v) = &self.vote {
            out.push(Record::Vote(v.clone()));
        }
        out.push(Record::Committed(self.committed.clone()));
        out.extend(self.entries.values().cloned().map(Record::Entry));
        out
    }
}

/// What the writer takes from the log's state in one turn.
enum Taken {
    /// Records to write (up to this count appended), the file, and whether to fsync.
    Write(Batch, u64, std::io::Result<std::fs::File>, bool),
    /// The file was rewritten with all records up to this count.
    Compacted(u64),
    /// A log in memory: records up to this count appended.
    InMemory(u64),
}

impl<C: RaftTypeConfig> State<C>
where
    C::Entry: Clone,
{
    fn take_for_writer(&mut self) -> Taken {
        let Some(mut journal) = self.journal.take() else {
            self.compact = false;
            return Taken::InMemory(self.appended);
        };
        let taken = self.take_from(&mut journal);
        self.journal = Some(journal);
        taken
    }

    /// The records appended to `journal` (this state's, taken out meanwhile), after
    /// compacting the file if a purge left records there that no longer matter.
    fn take_from(&mut self, journal: &mut Journal) -> Taken {
        if self.compact {
            self.compact = false;
            let records: Vec<Vec<u8>> = self
                .essentials()
                .iter()
                .filter_map(|r| r.encode().ok())
                .collect();
            // What is pending is in the state already: the rewrite holds it.
            journal.discard_pending();
            match journal.rewrite(records.iter().map(Vec::as_slice)) {
                Ok(()) => return Taken::Compacted(self.appended),
                Err(e) => {
                    tracing::error!(error = %e, "cannot compact the metadata log");
                    // Everything is written again, to a file in a known state.
                    for r in &records {
                        journal.append(r);
                    }
                }
            }
        }
        let sync = std::mem::take(&mut self.sync);
        Taken::Write(journal.take_pending(), self.appended, journal.file(), sync)
    }
}

struct Shared<C: RaftTypeConfig> {
    state: Mutex<State<C>>,
    wake: Notify,
    /// How many records are on disk.
    flushed: watch::Sender<u64>,
}

/// openraft's log storage (and, cloned, its log reader).
pub struct LogStore<C: RaftTypeConfig> {
    shared: Arc<Shared<C>>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            shared: self.shared.clone(),
        }
    }
}

/// What opening the log found.
#[derive(Debug, Default)]
pub struct Opened {
    /// Bytes cut off a torn or damaged end.
    pub cut: u64,
}

impl<C: RaftTypeConfig> LogStore<C>
where
    C::Entry: Clone,
{
    /// Opens the log at `path` and starts its writer on the current runtime.
    pub fn open(path: &Path) -> Result<(LogStore<C>, Opened), String> {
        let (journal, replay) =
            Journal::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut state = State::new(Some(journal));
        for (n, raw) in replay.records.iter().enumerate() {
            let r = Record::decode(raw)
                .map_err(|e| format!("{}: record {n} is unreadable: {e}", path.display()))?;
            state.replay(r);
        }
        Ok((LogStore::run(state), Opened { cut: replay.cut }))
    }

    /// A log kept in memory only, which answers openraft as soon as it is appended to (a RAM
    /// node's: it never votes, so nothing it holds counts towards a majority).
    pub fn in_memory() -> LogStore<C> {
        LogStore::run(State::new(None))
    }

    /// Starts the writer of a log that holds `state`, on the current runtime.
    fn run(state: State<C>) -> LogStore<C> {
        let store = LogStore {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                wake: Notify::new(),
                flushed: watch::Sender::new(0),
            }),
        };
        tokio::spawn(store.clone().run_writer());
        store
    }
}

impl<C: RaftTypeConfig> State<C> {
    fn new(journal: Option<Journal>) -> State<C> {
        State {
            journal,
            entries: BTreeMap::new(),
            vote: None,
            committed: None,
            last_purged: None,
            appended: 0,
            flush_waiters: Vec::new(),
            compact: false,
            sync: false,
        }
    }
}

impl<C: RaftTypeConfig> LogStore<C>
where
    C::Entry: Clone,
{
    fn state(&self) -> MutexGuard<'_, State<C>> {
        // The state is changed only in whole steps; a panic elsewhere leaves it consistent.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the log has never held anything: a node's first start.
    pub fn is_empty(&self) -> bool {
        let s = self.state();
        s.entries.is_empty() && s.vote.is_none() && s.last_purged.is_none()
    }

    /// The index of the last entry the log holds (or purged), 0 if none.
    pub fn last_index(&self) -> u64 {
        let s = self.state();
        s.entries
            .keys()
            .next_back()
            .copied()
            .or(s.last_purged.as_ref().map(|l| l.index))
            .unwrap_or(0)
    }

    /// Whether the vote written last is `me`'s own, committed: this node was the leader when
    /// it stopped, and openraft will restore that leadership without an election.
    pub fn led(&self, me: &C::NodeId) -> bool {
        self.state()
            .vote
            .as_ref()
            .is_some_and(|v| v.is_committed() && v.leader_id().voted_for().as_ref() == Some(me))
    }

    /// The last commit point written (it may lag the real one: entries after it are applied
    /// again once a leader commits them).
    pub fn committed(&self) -> Option<LogId<C::NodeId>> {
        self.state().committed.clone()
    }

    /// The entries in `range` that the log holds.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Vec<C::Entry> {
        self.state()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Writes down where a snapshot put the log, when a node's log starts from one (its
    /// first start, or an imported topology): everything up to `at` counts as purged.
    pub async fn start_after(&self, at: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let n = {
            let mut s = self.state();
            s.entries = s.entries.split_off(&(at.index + 1));
            s.last_purged = Some(at.clone());
            s.committed = Some(at.clone());
            s.write(&Record::Purged(at.clone()))?;
            s.write(&Record::Committed(Some(at)))?
        };
        self.flushed_to(n).await
    }

    /// Waits until everything appended so far is written (a clean stop).
    pub async fn flush(&self) -> Result<(), StorageError<C::NodeId>> {
        let n = {
            let mut s = self.state();
            s.sync = true;
            s.appended
        };
        self.flushed_to(n).await
    }

    async fn flushed_to(&self, n: u64) -> Result<(), StorageError<C::NodeId>> {
        self.shared.wake.notify_one();
        let mut rx = self.shared.flushed.subscribe();
        rx.wait_for(|f| *f >= n)
            .await
            .map(drop)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    /// Writes what was appended, many records to one fsync, and answers openraft's callbacks;
    /// compacts the file after a purge (in place, on this task: purges come once per
    /// snapshot, and the log is short then). Runs until no one else holds the log.
    async fn run_writer(self) {
        loop {
            let taken = self.state().take_for_writer();
            let (pending, upto, file, sync) = match taken {
                Taken::Write(pending, upto, file, sync) => (pending, upto, file, sync),
                Taken::Compacted(upto) => {
                    self.done(upto);
                    continue;
                }
                // Memory only: appended is as good as written.
                Taken::InMemory(upto) => {
                    if upto > *self.shared.flushed.borrow() {
                        self.done(upto);
                    } else if !self.idle().await {
                        return;
                    }
                    continue;
                }
            };
            if pending.is_empty() {
                if !self.idle().await {
                    return;
                }
                continue;
            }
            let done = tokio::task::spawn_blocking(move || {
                let r = file.and_then(|mut f| write_records(&mut f, &pending, sync));
                (r, pending)
            })
            .await;
            match done {
                Ok((Ok(()), _)) => self.done(upto),
                Ok((Err(e), pending)) => {
                    // A full or failing disk: nothing is acknowledged until it writes again,
                    // and what could not be written is tried again first.
                    tracing::error!(error = %e, "cannot write the metadata log");
                    {
                        let mut s = self.state();
                        if let Some(journal) = &mut s.journal {
                            journal.restore_pending(pending);
                        }
                        s.sync |= sync;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Waits for something to write; gives back the space kept for recycling if nothing
    /// comes for [`IDLE`]. False: no one else holds the log any more (its group stopped, or
    /// its queue went), and the writer ends.
    async fn idle(&self) -> bool {
        let woken = tokio::time::timeout(IDLE, self.shared.wake.notified()).await;
        if woken.is_err() {
            if Arc::strong_count(&self.shared) == 1 {
                return false;
            }
            self.trim();
        }
        true
    }

    /// The log went idle: the space its journal keeps for recycling is given back.
    fn trim(&self) {
        let mut s = self.state();
        if let Some(Err(e)) = s.journal.as_mut().map(Journal::trim) {
            tracing::warn!(error = %e, "cannot give back a log's spare space");
        }
    }

    /// Records up to `upto` are on disk.
    fn done(&self, upto: u64) {
        let ready: Vec<LogFlushed<C>> = {
            let mut s = self.state();
            let (ready, waiting) = s.flush_waiters.drain(..).partition(|(n, _)| *n <= upto);
            s.flush_waiters = waiting;
            ready.into_iter().map(|(_, cb)| cb).collect()
        };
        self.shared.flushed.send_replace(upto);
        for cb in ready {
            cb.log_io_completed(Ok(()));
        }
    }
}

impl<C: RaftTypeConfig> RaftLogReader<C> for LogStore<C>
where
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        Ok(self.entries(range))
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for LogStore<C>
where
    C::Entry: Clone,
{
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let s = self.state();
        let last = s
            .entries
            .values()
            .next_back()
            .map(|e| e.get_log_id().clone())
            .or_else(|| s.last_purged.clone());
        Ok(LogState {
            last_purged_log_id: s.last_purged.clone(),
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let n = {
            let mut s = self.state();
            s.vote = Some(vote.clone());
            s.write(&Record::Vote(vote.clone()))?
        };
        self.flushed_to(n).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.state().vote.clone())
    }

    /// Written with the next group of records, not waited for: a commit point that lags only
    /// means entries are applied again after a restart, which applying tolerates.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let mut s = self.state();
        s.committed = committed.clone();
        s.write(&Record::Committed(committed))?;
        drop(s);
        self.shared.wake.notify_one();
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.state().committed.clone())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + Send,
        I::IntoIter: Send,
    {
        {
            let mut s = self.state();
            let mut n = s.appended;
            for e in entries {
                n = s.write(&Record::Entry(e.clone()))?;
                s.entries.insert(e.get_log_id().index, e);
            }
            s.flush_waiters.push((n, callback));
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut s = self.state();
        s.entries.split_off(&log_id.index);
        // In order before whatever is appended next, so it need not be waited for here.
        s.write(&Record::Truncate(log_id.index))?;
        drop(s);
        self.shared.wake.notify_one();
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut s = self.state();
        s.entries = s.entries.split_off(&(log_id.index + 1));
        s.last_purged = Some(log_id.clone());
        s.write(&Record::Purged(log_id))?;
        s.compact = true;
        drop(s);
        self.shared.wake.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Replica;

    /// Waits (at most ten seconds) for `done`.
    async fn until(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn an_idle_log_gives_back_its_spare_and_its_writer_ends_with_it() {
        let dir = std::env::temp_dir().join(format!("warren-idle-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let spare = dir.join("log.spare");
        std::fs::write(&spare, vec![7u8; 4096]).unwrap();
        let (store, _) = LogStore::<Replica>::open(&path).unwrap();
        let weak = Arc::downgrade(&store.shared);
        assert!(until(|| !spare.exists()).await, "the spare was given back");
        drop(store);
        assert!(
            until(|| weak.upgrade().is_none()).await,
            "the writer let its log go"
        );
        let in_memory = LogStore::<Replica>::in_memory();
        let weak = Arc::downgrade(&in_memory.shared);
        drop(in_memory);
        assert!(
            until(|| weak.upgrade().is_none()).await,
            "the writer let a log in memory go"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
