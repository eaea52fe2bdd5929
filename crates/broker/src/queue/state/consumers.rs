//! A queue's consumers, in the order it serves them: highest priority first, round-robin among
//! equals; with single-active-consumer, only the oldest ever receives.

use crate::queue::command::ConsumerSpec;
use warren_meta::ConnId;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Consumer {
    pub id: u64,
    pub spec: ConsumerSpec,
    /// Deliveries out and not yet settled.
    pub unacked: u32,
    /// What the consumer's connection will still take (see `credit_cost`). It may go below
    /// zero: a message bigger than what is left still goes, and its cost is owed.
    pub credit: i64,
}

impl Consumer {
    pub fn owned_by(&self, conn: ConnId, channel_key: u64) -> bool {
        self.spec.conn == conn && self.spec.channel_key == channel_key
    }

    pub fn can_take(&self) -> bool {
        self.credit > 0
            && (self.spec.no_ack || self.spec.prefetch == 0 || self.unacked < self.spec.prefetch)
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Consumers {
    /// Highest priority first; within a priority, the next to serve first.
    list: Vec<Consumer>,
    next_id: u64,
}

impl Default for Consumers {
    fn default() -> Self {
        Consumers {
            list: Vec::new(),
            next_id: 1,
        }
    }
}

impl Consumers {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn has_exclusive(&self) -> bool {
        self.list.iter().any(|c| c.spec.exclusive)
    }

    /// Adds a consumer behind the others of its priority; returns its id.
    pub fn add(&mut self, spec: ConsumerSpec) -> u64 {
        let at = self
            .list
            .iter()
            .position(|c| c.spec.priority < spec.priority)
            .unwrap_or(self.list.len());
        let id = self.next_id;
        self.next_id += 1;
        let credit = i64::from(spec.credit);
        self.list.insert(
            at,
            Consumer {
                id,
                spec,
                unacked: 0,
                credit,
            },
        );
        id
    }

    pub fn get(&self, id: u64) -> Option<&Consumer> {
        self.list.iter().find(|c| c.id == id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Consumer> {
        self.list.iter_mut().find(|c| c.id == id)
    }

    pub fn at(&mut self, i: usize) -> &mut Consumer {
        &mut self.list[i]
    }

    pub fn retain(&mut self, keep: impl FnMut(&Consumer) -> bool) {
        self.list.retain(keep);
    }

    pub fn drain(&mut self) -> impl Iterator<Item = Consumer> + '_ {
        self.list.drain(..)
    }

    /// The consumers as listings show them, oldest first.
    pub fn rows(&self, single_active: bool) -> Vec<super::ConsumerRow> {
        let oldest = self.list.iter().map(|c| c.id).min();
        let mut rows: Vec<(u64, super::ConsumerRow)> = self
            .list
            .iter()
            .map(|c| {
                let row = super::ConsumerRow {
                    tag: c.spec.tag.clone(),
                    conn: c.spec.conn,
                    channel: c.spec.channel,
                    ack_required: !c.spec.no_ack,
                    prefetch: c.spec.prefetch,
                    active: !single_active || Some(c.id) == oldest,
                };
                (c.id, row)
            })
            .collect();
        rows.sort_by_key(|(id, _)| *id);
        rows.into_iter().map(|(_, r)| r).collect()
    }

    /// Whether some consumer could take a message now.
    pub fn can_any_take(&self) -> bool {
        self.list.iter().any(Consumer::can_take)
    }

    /// The first consumer, in priority and round-robin order, that can take a message.
    pub fn pick(&self, single_active: bool) -> Option<usize> {
        if single_active {
            let (i, c) = self.list.iter().enumerate().min_by_key(|(_, c)| c.id)?;
            return c.can_take().then_some(i);
        }
        self.list.iter().position(Consumer::can_take)
    }

    /// Moves the consumer just served behind the others of its priority.
    pub fn rotate(&mut self, i: usize) {
        let p = self.list[i].spec.priority;
        let end = i + self.list[i..]
            .iter()
            .take_while(|c| c.spec.priority == p)
            .count();
        self.list[i..end].rotate_left(1);
    }
}
