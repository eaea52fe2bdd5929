//! A quorum queue's replica as openraft's state machine: a thin shell around the queue's own
//! deterministic [`QueueState`], the same core a classic queue runs. Each log entry is an
//! [`Op`]: queue commands with the leader's clock reading, so that every replica expires
//! messages at the same moments. Applying it answers the queue's reply (for whoever proposed
//! it) and leaves effects (deliveries, confirms, dead letters), which only the leader's shell
//! carries out. A snapshot is the queue's [`Image`] and the pages it names (see
//! [`snapshot`](super::snapshot)), kept in the group's directory, so that a member that fell
//! behind, or lost its log, starts again from another's.

use super::snapshot::{self, Proposers, SnapshotFile, Stored};
use crate::queue::Ticket;
use crate::queue::state::{Effect, QueueState};
use crate::queue::wire::{Answer, Cmd};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use warren_raft::Replica;
use warren_raft::openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use warren_raft::openraft::{
    BasicNode, Entry, EntryPayload, LogId, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use warren_raft::snapshot_data::{Pieces, SnapshotData};

/// One entry of a quorum queue's log: the commands a member gathered while its previous
/// entry was being committed (so that one round to a majority carries many, in order).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Op {
    /// The leader's clock when it proposed the commands, in ms since the Unix epoch.
    pub now: u64,
    /// The member that proposed it (its raft id), and its number among that member's
    /// entries: a member whose proposal got no answer proposes the same entry again, and
    /// the replicas apply it once.
    pub from: u64,
    pub seq: u64,
    pub cmds: Vec<Cmd>,
}

impl Op {
    /// Entry `seq` of member `from` for `cmds` at `now` (see [`Cmd::logged`] for what is left
    /// out).
    pub(crate) fn of(
        now: u64,
        (from, seq): (u64, u64),
        cmds: Vec<crate::queue::state::Command>,
    ) -> Op {
        Op {
            now,
            from,
            seq,
            cmds: cmds.into_iter().filter_map(Cmd::logged).collect(),
        }
    }

    /// Whether a restored leader takes over with this entry.
    fn resends(&self) -> bool {
        self.cmds
            .iter()
            .any(|c| matches!(c, Cmd::Other(crate::queue::state::Command::Resend)))
    }

    pub(crate) fn encode(&self) -> Bytes {
        warren_raft::messages::encode(self)
    }
}

/// What applying an entry answered: each command's reply, in order, and the publishers whose
/// messages it took (or refused).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Outcome {
    pub answers: Vec<Answer>,
    pub settled: Vec<(Vec<Ticket>, bool)>,
}

/// What applying a run of entries left for the shell to carry out (if it leads).
#[derive(Debug)]
pub(crate) struct Applied {
    pub effects: Vec<Effect>,
    /// The term of the oldest entry in the run. Deliveries decided under an earlier leader
    /// are not carried out again by the next: its takeover covers them.
    pub term: u64,
    /// A leader's first entry of term `term` was applied, and `effects` are what was out to
    /// consumers then (`QueueState::in_flight`): that leader sends them again, since its
    /// predecessor may have gone before sending some.
    pub takeover: bool,
    /// The index of the last entry applied (for a takeover, the new leader's first entry).
    pub index: u64,
    /// When the queue must next look at itself without a command (a message's TTL, its own
    /// `x-expires`), in ms since the Unix epoch: the leader proposes a tick then.
    pub deadline: Option<u64>,
    /// The queue went unused for its `x-expires`: the leader takes it out of the topology.
    pub remove: bool,
    /// The log has grown enough since the last snapshot that this member should take one
    /// (see [`SNAPSHOT_AFTER`]).
    pub snapshot: bool,
}

/// A member takes a snapshot once the entries it applied since its last one hold more bytes
/// than that snapshot's image does, and at least this many. Taking one costs as much as the
/// replica holds in memory (its paged messages are linked, not copied), so the log must grow
/// by as much before the next: the cost per byte logged stays bounded, and so does the log,
/// in memory and on disk, however deep the queue. A count of entries would not do: under load
/// one entry holds hundreds of messages, and the log grew to gigabytes between snapshots.
pub(crate) const SNAPSHOT_AFTER: u64 = 32 << 20;

/// Entries remembered per member: more than a member's newest entry is ever ahead of its
/// oldest one still in flight (`shell::WINDOW`). Each is an entry's whole outcome (a `get`'s
/// message included), kept in memory and in snapshots: no more than that.
pub(crate) const REMEMBERED: usize = 16;

fn io_error(e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

/// The last snapshot: built here or installed from the leader.
type Current = Arc<Mutex<Option<Stored>>>;

pub(crate) struct QuorumMachine {
    state: QueueState,
    /// Effects of the entries being applied, for the leader.
    pending: Vec<Effect>,
    proposers: Proposers,
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    dir: PathBuf,
    current: Current,
    effects: mpsc::UnboundedSender<Applied>,
    /// The deadline last told to the shell.
    told: Option<u64>,
    /// Bytes of entries applied since the last snapshot was begun, and whether the shell was
    /// asked for one since.
    logged: u64,
    asked: bool,
    /// The least growth of the log that calls for a snapshot ([`SNAPSHOT_AFTER`]).
    snapshot_after: u64,
}

impl QuorumMachine {
    /// The replica, from the snapshot kept in `dir` if there is one (the log holds only what
    /// came after it). Effects go to `effects`.
    pub fn open(
        mut state: QueueState,
        dir: PathBuf,
        effects: mpsc::UnboundedSender<Applied>,
    ) -> Result<QuorumMachine, String> {
        let mut machine = QuorumMachine {
            pending: Vec::new(),
            proposers: Proposers::new(),
            applied: None,
            membership: StoredMembership::default(),
            current: Arc::new(Mutex::new(None)),
            dir,
            effects,
            told: None,
            logged: 0,
            asked: false,
            snapshot_after: SNAPSHOT_AFTER,
            state: {
                state.take_effects();
                state
            },
        };
        if let Some((stored, file)) = snapshot::open(&machine.dir)? {
            machine
                .take_snapshot(stored, file)
                .map_err(|e| format!("cannot take the queue's snapshot on: {e}"))?;
        }
        Ok(machine)
    }

    /// Takes on the state a snapshot holds, and the pages it names.
    fn take_snapshot(&mut self, stored: Stored, file: SnapshotFile) -> std::io::Result<()> {
        let (pages, segment_bytes) = self.state.page_file();
        let log = snapshot::adopt(&stored, &file.image, &pages, segment_bytes)?;
        self.state.restore(file.image, log);
        self.proposers = file.proposers;
        self.applied = file.meta.last_log_id;
        self.membership = file.meta.last_membership.clone();
        if let Ok(mut c) = self.current.lock() {
            *c = Some(stored);
        }
        Ok(())
    }

    /// Applies an entry's commands in order; returns their answers, encoded as one list. An
    /// entry its member proposed again is answered as it was the first time.
    fn apply_op(&mut self, op: Op) -> Bytes {
        if let Some(recent) = self.proposers.get(&op.from) {
            if let Some(answers) = recent.get(&op.seq) {
                return answers.clone();
            }
            // Older than any remembered: applied long ago (a member proposes no entry a
            // `shell::WINDOW` ahead of one still in flight).
            if recent.len() >= REMEMBERED && recent.keys().next().is_some_and(|&low| op.seq < low) {
                return Bytes::new();
            }
        }
        let (from, seq) = (op.from, op.seq);
        let answers: Vec<Answer> = op
            .cmds
            .into_iter()
            .map(|cmd| Answer::of(self.state.apply(cmd.into_command(), op.now)))
            .collect();
        self.state.run(op.now);
        // Publishers are answered by the member that proposed their entry, from this outcome
        // (given again if it proposes the entry again): not by the leader's effects, which a
        // leader that dies, or is replaced, may carry out twice or never.
        let mut settled = Vec::new();
        for e in self.state.take_effects() {
            match e {
                Effect::Settled { tickets, ok } => settled.push((tickets, ok)),
                other => self.pending.push(other),
            }
        }
        let outcome = postcard::to_stdvec(&Outcome { answers, settled })
            .map(Bytes::from)
            .unwrap_or_default();
        let recent = self.proposers.entry(from).or_default();
        recent.insert(seq, outcome.clone());
        while recent.len() > REMEMBERED {
            recent.pop_first();
        }
        outcome
    }

    /// Hands the effects applying left so far to the shell, for the leader to carry out.
    fn send_pending(&mut self, at: (u64, u64), takeover: bool) {
        let mut effects = std::mem::take(&mut self.pending);
        effects.extend(self.state.take_effects());
        self.send(effects, at, takeover);
    }

    /// Sends effects to the shell with the queue's next deadline; nothing if there is nothing
    /// new to say.
    fn send(&mut self, effects: Vec<Effect>, (term, index): (u64, u64), takeover: bool) {
        let deadline = self.state.next_deadline();
        let remove = self.state.should_remove(self.state.now());
        // The last snapshot's size is looked up (under a lock) only past the floor.
        let snapshot =
            !self.asked && self.logged > self.snapshot_after && self.logged > self.snapshot_bytes();
        if effects.is_empty() && !takeover && !remove && !snapshot && deadline == self.told {
            return;
        }
        self.told = deadline;
        self.asked |= snapshot;
        let _ = self.effects.send(Applied {
            effects,
            term,
            takeover,
            index,
            deadline,
            remove,
            snapshot,
        });
    }

    /// The size of the last snapshot's image, built here or installed.
    fn snapshot_bytes(&self) -> u64 {
        self.current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|s| s.image_bytes))
            .unwrap_or(0)
    }

    /// Begins a snapshot of the replica as it is now: its image, and links to the pages the
    /// image names.
    fn stage(&mut self) -> std::io::Result<(PathBuf, SnapshotFile)> {
        let image = self.state.image();
        self.state.flush_pages()?;
        let index = self.applied.map_or(0, |l| l.index);
        let (pages, _) = self.state.page_file();
        let staged = snapshot::stage(&self.dir, index, &pages, image.pages().into_keys())?;
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: self.applied.map_or_else(
                || "empty".to_owned(),
                |l| format!("{}-{}", l.leader_id, l.index),
            ),
        };
        let file = SnapshotFile {
            meta,
            image,
            proposers: self.proposers.clone(),
        };
        Ok((staged, file))
    }

    /// The same replica, taking snapshots after `bytes` of log at least.
    #[cfg(test)]
    pub fn snapshot_after(mut self, bytes: u64) -> QuorumMachine {
        self.snapshot_after = bytes;
        self
    }

    /// The queue's state as this replica has it.
    #[cfg(test)]
    pub fn state(&self) -> &QueueState {
        &self.state
    }
}

/// Builds a snapshot from the state as it was when openraft asked for a builder: its image,
/// and the page segments linked then (see [`snapshot::stage`]).
pub(crate) struct Builder {
    taken: Option<std::io::Result<(PathBuf, SnapshotFile)>>,
    dir: PathBuf,
    current: Current,
}

impl RaftSnapshotBuilder<Replica> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Replica>, StorageError<u64>> {
        let (staged, file) = self
            .taken
            .take()
            .ok_or_else(|| io_error("a snapshot built twice"))?
            .map_err(io_error)?;
        let group = self.dir.clone();
        let stored = tokio::task::spawn_blocking(move || snapshot::finish(&group, &staged, &file))
            .await
            .map_err(io_error)?
            .map_err(io_error)?;
        let image = tokio::fs::File::open(stored.dir.join("image"))
            .await
            .map_err(io_error)?;
        let image = SnapshotData::File(image);
        let meta = stored.meta.clone();
        if let Ok(mut c) = self.current.lock() {
            *c = Some(stored);
        }
        // openraft keeps only the meta of a snapshot it built; the image stands for the data.
        Ok(Snapshot {
            meta,
            snapshot: Box::new(image),
        })
    }
}

impl RaftStateMachine<Replica> for QuorumMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Bytes>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Replica>> + Send,
        I::IntoIter: Send,
    {
        let mut answers = Vec::new();
        let mut term = u64::MAX;
        let mut last = self.applied.map_or(0, |l| l.index);
        for entry in entries {
            let entry_term = entry.log_id.leader_id.term;
            self.applied = Some(entry.log_id);
            let index = entry.log_id.index;
            if matches!(entry.payload, EntryPayload::Blank) {
                // A new leader's first entry: what came before is the old terms' business.
                self.send_pending((term, last), false);
                term = u64::MAX;
                let effects = self.state.in_flight();
                self.send(effects, (entry_term, index), true);
            }
            term = term.min(entry_term);
            last = index;
            let answer = match entry.payload {
                EntryPayload::Blank => Bytes::new(),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Bytes::new()
                }
                EntryPayload::Normal(raw) => {
                    self.logged += raw.len() as u64;
                    match postcard::from_bytes::<Op>(&raw) {
                        Ok(op) if op.resends() => {
                            let answer = self.apply_op(op);
                            self.send_pending((term, last), false);
                            term = u64::MAX;
                            let effects = self.state.in_flight();
                            self.send(effects, (entry_term, index), true);
                            answer
                        }
                        Ok(op) => self.apply_op(op),
                        Err(e) => {
                            // Every replica skips it alike: the log is the same everywhere.
                            tracing::error!(error = %e, index, "skipped an unreadable queue command");
                            Bytes::new()
                        }
                    }
                }
            };
            answers.push(answer);
        }
        self.send_pending((term, last), false);
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Builder {
        self.logged = 0;
        self.asked = false;
        Builder {
            taken: Some(self.stage()),
            dir: self.dir.clone(),
            current: self.current.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError<u64>> {
        let f = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(self.dir.join(snapshot::RECEIVING))
            .await
            .map_err(io_error)?;
        Ok(Box::new(SnapshotData::File(f)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        received: Box<SnapshotData>,
    ) -> Result<(), StorageError<u64>> {
        let received = match *received {
            SnapshotData::File(f) => f,
            // Handed over whole (openraft's storage suite does): written out as if received.
            mut pieces @ SnapshotData::Pieces(_) => {
                let mut f = match *self.begin_receiving_snapshot().await? {
                    SnapshotData::File(f) => f,
                    SnapshotData::Pieces(_) => return Err(io_error("a receiving file")),
                };
                tokio::io::copy(&mut pieces, &mut f)
                    .await
                    .map_err(io_error)?;
                f
            }
        };
        // Writes to a tokio file may still be on their way: this waits for them.
        let received = received.into_std().await;
        let group = self.dir.clone();
        let (stored, file) =
            tokio::task::spawn_blocking(move || snapshot::unpack(&group, received))
                .await
                .map_err(io_error)?
                .map_err(io_error)?;
        self.take_snapshot(stored, file).map_err(io_error)?;
        // What the snapshot's sender called it, whatever this node would.
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<Replica>>, StorageError<u64>> {
        let Some(stored) = self.current.lock().ok().and_then(|c| c.clone()) else {
            return Ok(None);
        };
        let meta = stored.meta.clone();
        // Opens the snapshot's files, nothing more: they are read as they are sent.
        let pieces = tokio::task::spawn_blocking(move || snapshot::pieces(&stored))
            .await
            .map_err(io_error)?
            .map_err(io_error)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::Pieces(Pieces::new(pieces))),
        }))
    }
}
