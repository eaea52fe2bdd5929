//! A replica's whole state as data: what a quorum queue's snapshot holds, so that a member
//! that fell behind (or lost its log) takes it from another and goes on from there. Messages a
//! replica paged out are imaged as runs of its page file's records: the snapshot takes those
//! segment files along (see `quorum::snapshot`), so an image stays as small as the replica's
//! memory however deep the queue is.

use super::consumers::Consumers;
use super::held::Held;
use super::{QueueState, Unacked};
use crate::queue::ready::{Entry, Part, Ready};
use crate::queue::storage::Storage;
use crate::queue::wire::WireMessage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warren_meta::ConnId;
use warren_store::{QueueLog, Run};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Image {
    /// Each priority level's ready messages, in the order they go out.
    levels: Vec<Vec<ImagedPart>>,
    /// Deliveries out, in delivery order.
    unacked: Vec<ImagedUnacked>,
    consumers: Consumers,
    next_seq: u64,
    had_consumers: bool,
    deleted: bool,
    last_used: u64,
    refusing: bool,
    /// Dead letters held until confirmed, by number, and the next number.
    held: Vec<(u64, WireMessage)>,
    held_next: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ImagedEntry {
    seq: u64,
    message: WireMessage,
    redelivered: bool,
    delivery_count: u32,
    expires_at: u64,
}

/// Ready messages: one in memory, or a run of them in the page file.
#[derive(Debug, Serialize, Deserialize)]
enum ImagedPart {
    Mem(ImagedEntry),
    Paged(ImagedRun),
}

/// A [`Run`] of the page file.
#[derive(Debug, Serialize, Deserialize)]
struct ImagedRun {
    segment: u64,
    offset: u64,
    end: u64,
    count: u64,
    bytes: u64,
    level: u8,
}

impl ImagedRun {
    fn of(r: &Run) -> ImagedRun {
        ImagedRun {
            segment: r.segment,
            offset: r.offset,
            end: r.end,
            count: r.count,
            bytes: r.bytes,
            level: r.level,
        }
    }

    fn run(self) -> Run {
        Run {
            segment: self.segment,
            offset: self.offset,
            end: self.end,
            count: self.count,
            bytes: self.bytes,
            level: self.level,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ImagedUnacked {
    entry: ImagedEntry,
    owner: (ConnId, u64),
    consumer: Option<u64>,
}

impl ImagedEntry {
    fn of(e: &Entry) -> ImagedEntry {
        ImagedEntry {
            seq: e.seq,
            message: WireMessage::of(&e.message),
            redelivered: e.redelivered,
            delivery_count: e.delivery_count,
            expires_at: e.expires_at,
        }
    }

    /// The entry again; none if its properties cannot be read (they were read once already,
    /// so only a damaged snapshot gets here).
    fn entry(self) -> Option<Entry> {
        Some(Entry {
            seq: self.seq,
            message: self.message.into_message()?,
            redelivered: self.redelivered,
            delivery_count: self.delivery_count,
            pos: None,
            expires_at: self.expires_at,
        })
    }
}

impl QueueState {
    /// The state as data (a replica's: its messages are all in memory).
    pub fn image(&self) -> Image {
        let mut unacked: Vec<ImagedUnacked> = self
            .unacked
            .values()
            .map(|u| ImagedUnacked {
                entry: ImagedEntry::of(&u.entry),
                owner: u.owner,
                consumer: u.consumer,
            })
            .collect();
        unacked.sort_by_key(|u| u.entry.seq);
        let (held, held_next) = self.held.entries();
        let held = held.map(|(id, m)| (id, WireMessage::of(m))).collect();
        Image {
            levels: self
                .levels
                .iter()
                .map(|l| {
                    l.parts()
                        .map(|p| match p {
                            Part::Mem(e) => ImagedPart::Mem(ImagedEntry::of(e)),
                            Part::Disk(r) => ImagedPart::Paged(ImagedRun::of(r)),
                        })
                        .collect()
                })
                .collect(),
            unacked,
            consumers: self.consumers.clone(),
            next_seq: self.next_seq,
            had_consumers: self.had_consumers,
            deleted: self.deleted,
            last_used: self.last_used,
            refusing: self.refusing,
            held,
            held_next,
        }
    }

    /// Takes on the state an image holds, in place of its own, with `pages` (a page file
    /// holding the image's paged runs) in place of its page file. Effects and tickets not yet
    /// taken are dropped: they were this replica's, and the image's history replaces it.
    pub fn restore(&mut self, image: Image, pages: Option<QueueLog>) {
        let n = self.levels.len();
        self.levels = image
            .levels
            .into_iter()
            .map(|parts: Vec<ImagedPart>| {
                let mut ready = Ready::default();
                for part in parts {
                    match part {
                        ImagedPart::Mem(e) => ready.give_back(e.entry().into_iter().collect()),
                        ImagedPart::Paged(r) => ready.push_run(r.run()),
                    }
                }
                ready
            })
            .collect();
        self.storage = pages.map(Storage::new);
        self.levels.resize_with(n.max(1), Ready::default);
        self.unacked = image
            .unacked
            .into_iter()
            .filter_map(|u| {
                let entry = u.entry.entry()?;
                let unacked = Unacked {
                    entry,
                    owner: u.owner,
                    consumer: u.consumer,
                };
                Some((unacked.entry.seq, unacked))
            })
            .collect();
        self.consumers = image.consumers;
        self.next_seq = image.next_seq;
        self.had_consumers = image.had_consumers;
        self.deleted = image.deleted;
        self.last_used = image.last_used;
        self.refusing = image.refusing;
        self.held = Held::of(
            image
                .held
                .into_iter()
                .filter_map(|(id, m)| Some((id, m.into_message()?))),
            image.held_next,
        );
        self.settled_ok.clear();
        self.settled_failed.clear();
        self.effects.clear();
    }
}

impl Image {
    /// The page file's segments the image's runs are in, with how many of their records are
    /// still to be read: what a page file taking the image on must adopt.
    pub fn pages(&self) -> BTreeMap<u64, u64> {
        let mut live = BTreeMap::new();
        for part in self.levels.iter().flatten() {
            if let ImagedPart::Paged(r) = part {
                *live.entry(r.segment).or_insert(0) += r.count;
            }
        }
        live
    }
}
