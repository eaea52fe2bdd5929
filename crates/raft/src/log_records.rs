//! The records a log's journal holds (every change to the log is one), and what is read from
//! or written to the log of a node whose group is not running: the membership it last knew,
//! and an operator's unsafe recovery.

use openraft::entry::RaftPayload;
use openraft::{CommittedLeaderId, LogId, RaftLogId, RaftTypeConfig, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;
use warren_store::Journal;
use warren_store::journal::write_records;

const ENTRY: u8 = 1;
const VOTE: u8 = 2;
const COMMITTED: u8 = 3;
const TRUNCATE: u8 = 4;
const PURGED: u8 = 5;

/// One change to the log, as written.
pub(crate) enum Record<C: RaftTypeConfig> {
    Entry(C::Entry),
    Vote(Vote<C::NodeId>),
    Committed(Option<LogId<C::NodeId>>),
    /// Entries from this index on are gone.
    Truncate(u64),
    /// Entries up to this one are gone (a snapshot covers them).
    Purged(LogId<C::NodeId>),
}

fn encode_into<T: Serialize>(
    kind: u8,
    value: &T,
    out: &mut bytes::BytesMut,
) -> Result<(), postcard::Error> {
    use bytes::BufMut;
    // Room made first: an entry may be a megabyte, which a buffer grown as it is written
    // would copy again at every doubling.
    out.reserve(1 + postcard::experimental::serialized_size(value)?);
    out.put_u8(kind);
    postcard::to_io(value, out.writer()).map(drop)
}

impl<C: RaftTypeConfig> Record<C> {
    /// Writes the record at the end of `out`.
    pub(crate) fn encode_into(&self, out: &mut bytes::BytesMut) -> Result<(), postcard::Error> {
        match self {
            Record::Entry(e) => encode_into(ENTRY, e, out),
            Record::Vote(v) => encode_into(VOTE, v, out),
            Record::Committed(c) => encode_into(COMMITTED, c, out),
            Record::Truncate(i) => encode_into(TRUNCATE, i, out),
            Record::Purged(l) => encode_into(PURGED, l, out),
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = bytes::BytesMut::new();
        self.encode_into(&mut out)?;
        Ok(out.to_vec())
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Record<C>, String> {
        fn de<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
            postcard::from_bytes(b).map_err(|e| e.to_string())
        }
        let (kind, body) = raw.split_first().ok_or("an empty record")?;
        Ok(match *kind {
            ENTRY => Record::Entry(de(body)?),
            VOTE => Record::Vote(de(body)?),
            COMMITTED => Record::Committed(de(body)?),
            TRUNCATE => Record::Truncate(de(body)?),
            PURGED => Record::Purged(de(body)?),
            other => return Err(format!("unknown record kind {other}")),
        })
    }
}

/// A membership as the log stores it.
pub type Members<C> =
    openraft::StoredMembership<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>;

/// The last membership a log holds (read without opening it for writing): how a stopped
/// node finds the cluster it belongs to.
pub fn last_membership<C: RaftTypeConfig>(path: &Path) -> Result<Option<Members<C>>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let (_, replay) =
        Journal::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut entries: BTreeMap<u64, C::Entry> = BTreeMap::new();
    for raw in &replay.records {
        match Record::<C>::decode(raw)? {
            Record::Entry(e) => {
                entries.insert(e.get_log_id().index, e);
            }
            Record::Truncate(i) => {
                entries.split_off(&i);
            }
            _ => {}
        }
    }
    Ok(entries.values().rev().find_map(|e| {
        e.get_membership()
            .map(|m| openraft::StoredMembership::new(Some(e.get_log_id().clone()), m.clone()))
    }))
}

/// Appends one entry to the log at `path` of a node (`me`) whose group is not running, after
/// both the log's last entry and `after` (the snapshot's last entry): an operator's unsafe
/// recovery (`forget_cluster_node --offline`), which openraft reads at the next start like
/// any appended entry. The entry is written in a term of its own, above any the node has seen
/// or voted in (with a vote for itself in that term), so that it can never pass for another
/// node's entry at the same index: where logs differ, Raft keeps the higher term's. `make`
/// builds the entry for the log id it will have.
pub fn append_offline<C: RaftTypeConfig>(
    path: &Path,
    me: C::NodeId,
    after: Option<LogId<C::NodeId>>,
    make: impl FnOnce(LogId<C::NodeId>) -> C::Entry,
) -> Result<LogId<C::NodeId>, String> {
    let (mut journal, replay) =
        Journal::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut last = after;
    let mut vote_term = 0;
    let mut entries: BTreeMap<u64, LogId<C::NodeId>> = BTreeMap::new();
    for raw in &replay.records {
        match Record::<C>::decode(raw)? {
            Record::Entry(e) => {
                entries.insert(e.get_log_id().index, e.get_log_id().clone());
            }
            Record::Truncate(i) => {
                entries.split_off(&i);
            }
            Record::Purged(l) => last = last.max(Some(l)),
            Record::Vote(v) => vote_term = v.leader_id().term,
            Record::Committed(_) => {}
        }
    }
    let last = last
        .max(entries.values().next_back().cloned())
        .ok_or("the metadata log is empty: this node has no cluster")?;
    let term = last.leader_id.term.max(vote_term) + 1;
    let id = LogId::new(CommittedLeaderId::new(term, me.clone()), last.index + 1);
    for record in [
        Record::<C>::Vote(Vote::new(term, me)),
        Record::<C>::Entry(make(id.clone())),
    ] {
        journal.append(&record.encode().map_err(|e| e.to_string())?);
    }
    let mut file = journal.file().map_err(|e| e.to_string())?;
    write_records(&mut file, &journal.take_pending(), true)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}
