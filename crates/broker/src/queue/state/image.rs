//! A replica's whole state as data: what a quorum queue's snapshot holds, so that a member
//! that fell behind (or lost its log) takes it from another and goes on from there. Only a
//! replica's state is ever imaged: it holds every message in memory (its log is the group's),
//! so nothing here refers to a file.

use super::consumers::Consumers;
use super::held::Held;
use super::{QueueState, Unacked};
use crate::queue::ready::{Entry, Ready};
use crate::queue::wire::WireMessage;
use serde::{Deserialize, Serialize};
use warren_meta::ConnId;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Image {
    /// Each priority level's ready messages, in the order they go out.
    levels: Vec<Vec<ImagedEntry>>,
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
                .map(|l| l.in_memory().map(ImagedEntry::of).collect())
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

    /// Takes on the state an image holds, in place of its own. Effects and tickets not yet
    /// taken are dropped: they were this replica's, and the image's history replaces it.
    pub fn restore(&mut self, image: Image) {
        let n = self.levels.len();
        self.levels = image
            .levels
            .into_iter()
            .map(|entries: Vec<ImagedEntry>| {
                Ready::of_entries(entries.into_iter().filter_map(ImagedEntry::entry))
            })
            .collect();
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
