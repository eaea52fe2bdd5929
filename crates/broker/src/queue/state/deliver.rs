//! Giving messages out: to consumers (one at a time in priority and round-robin order, within
//! their credit and prefetch), by basic.get, and what becomes of them when they are settled.

use super::{Effect, QueueState, Unacked};
use crate::mail::Delivery;
use crate::message::Message;
use crate::queue::command::{GetReply, Settle, credit_cost};
use crate::queue::deadletter::Reason;
use crate::queue::ready::Entry;
use std::sync::Arc;
use warren_amqp::{BasicProperties, FieldValue};
use warren_meta::ConnId;

impl QueueState {
    pub(super) fn dispatch(&mut self) {
        let mut batches: Vec<(ConnId, Vec<Delivery>)> = Vec::new();
        let single_active = self.info.args.single_active_consumer;
        while self.ready_len() > 0 {
            let Some(i) = self.consumers.pick(single_active) else {
                break;
            };
            let Some(entry) = self.pop_live() else {
                break;
            };
            let no_ack = self.consumers.at(i).spec.no_ack;
            if no_ack {
                self.done(&entry);
            } else if let (Some(pos), Some(log)) = (entry.pos, self.log()) {
                log.delivered(&pos);
            }
            let queue = self.info.id;
            let c = self.consumers.at(i);
            c.credit -= credit_cost(entry.message.body_size());
            let delivery = Delivery {
                channel: c.spec.channel,
                channel_key: c.spec.channel_key,
                consumer_tag: c.spec.tag.clone(),
                queue: Some(queue),
                seq: entry.seq,
                message: counted(&entry, false),
                redelivered: entry.redelivered,
                no_ack,
                repeat: false,
            };
            let conn = c.spec.conn;
            if !no_ack {
                c.unacked += 1;
                let (owner, consumer) = ((conn, c.spec.channel_key), Some(c.id));
                self.unacked.insert(
                    entry.seq,
                    Unacked {
                        entry,
                        owner,
                        consumer,
                    },
                );
            }
            match batches.iter_mut().find(|(to, _)| *to == conn) {
                Some((_, b)) => b.push(delivery),
                None => batches.push((conn, vec![delivery])),
            }
            self.consumers.rotate(i);
        }
        self.effects.extend(
            batches
                .into_iter()
                .map(|(conn, deliveries)| Effect::Deliver { conn, deliveries }),
        );
    }

    /// What is out to consumers now, as deliveries to send again: what a quorum queue's new
    /// leader sends when it takes over, since its predecessor may have gone before sending
    /// some of it. They are repeats (a channel that holds one drops it) and redelivered (the
    /// client may have seen them). In the order they went out, so the same on every replica.
    /// Dead letters held until confirmed go again too: the predecessor's confirms for them
    /// went to it.
    pub(crate) fn in_flight(&self) -> Vec<Effect> {
        let mut out: Vec<(&u64, &Unacked)> = self.unacked.iter().collect();
        out.sort_by_key(|(seq, _)| **seq);
        let mut batches: Vec<(ConnId, Vec<Delivery>)> = Vec::new();
        for (seq, u) in out {
            // basic.get's messages went back in the answer, which its asker has.
            let Some(c) = u.consumer.and_then(|id| self.consumers.get(id)) else {
                continue;
            };
            let delivery = Delivery {
                channel: c.spec.channel,
                channel_key: c.spec.channel_key,
                consumer_tag: c.spec.tag.clone(),
                queue: Some(self.info.id),
                seq: *seq,
                message: counted(&u.entry, false),
                redelivered: true,
                no_ack: false,
                repeat: true,
            };
            let conn = c.spec.conn;
            match batches.iter_mut().find(|(to, _)| *to == conn) {
                Some((_, b)) => b.push(delivery),
                None => batches.push((conn, vec![delivery])),
            }
        }
        batches
            .into_iter()
            .map(|(conn, deliveries)| Effect::Deliver { conn, deliveries })
            .chain(self.held_again())
            .collect()
    }

    pub(super) fn get(&mut self, conn: ConnId, channel_key: u64, no_ack: bool) -> Option<GetReply> {
        let entry = self.pop_live()?;
        let reply = GetReply {
            seq: entry.seq,
            message: counted(&entry, self.replicated),
            redelivered: entry.redelivered,
            remaining: self.ready_len() as u32,
        };
        if no_ack {
            self.done(&entry);
        } else {
            if let (Some(pos), Some(log)) = (entry.pos, self.log()) {
                log.delivered(&pos);
            }
            self.unacked.insert(
                entry.seq,
                Unacked {
                    entry,
                    owner: (conn, channel_key),
                    consumer: None,
                },
            );
        }
        Some(reply)
    }

    pub(super) fn settle(&mut self, seqs: Vec<u64>, how: Settle) {
        let mut back: Vec<Vec<Entry>> = (0..self.levels.len()).map(|_| Vec::new()).collect();
        for seq in seqs {
            let Some(u) = self.unacked.remove(&seq) else {
                continue;
            };
            if let Some(c) = u.consumer.and_then(|id| self.consumers.get_mut(id)) {
                c.unacked = c.unacked.saturating_sub(1);
            }
            match how {
                Settle::Requeue | Settle::Unsent => {
                    let mut entry = u.entry;
                    entry.redelivered |= how == Settle::Requeue;
                    if self.replicated && how == Settle::Requeue {
                        entry.delivery_count += 1;
                        let limit = self.info.args.delivery_limit;
                        if limit.is_some_and(|l| u64::from(entry.delivery_count) > l) {
                            self.drop_message(entry, Reason::DeliveryLimit);
                            continue;
                        }
                    }
                    let level = self.level_of(&entry.message);
                    back[level].push(entry);
                }
                Settle::Ack => self.done(&u.entry),
                Settle::Discard => self.drop_message(u.entry, Reason::Rejected),
            }
        }
        for (level, entries) in back.into_iter().enumerate() {
            if self.replicated {
                self.levels[level].give_back(entries);
            } else {
                self.levels[level].requeue(entries);
            }
        }
    }

    /// Puts back every delivery out to an owner (a channel) that `gone` matches.
    pub(super) fn requeue_owned_by(&mut self, gone: impl Fn((ConnId, u64)) -> bool) {
        let mut seqs: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| gone(u.owner))
            .map(|(s, _)| *s)
            .collect();
        // In delivery order whatever the map's: every replica of a quorum queue must take
        // them back in the same order.
        seqs.sort_unstable();
        self.settle(seqs, Settle::Requeue);
    }
}

/// The message as it goes out: with an `x-delivery-count` header once a quorum queue has had
/// it back, as RabbitMQ's quorum queues add it (`always`: even before the first return, as
/// they answer `basic.get`).
fn counted(entry: &Entry, always: bool) -> Arc<Message> {
    if entry.delivery_count == 0 && !always {
        return entry.message.clone();
    }
    let m = &entry.message;
    let mut props = BasicProperties::decode(&m.properties).unwrap_or_default();
    let mut headers = props.headers.take().unwrap_or_default();
    headers.insert(
        "x-delivery-count",
        FieldValue::I64(i64::from(entry.delivery_count)),
    );
    props.headers = Some(headers);
    Arc::new(Message {
        exchange: m.exchange.clone(),
        routing_key: m.routing_key.clone(),
        properties: props.encode(),
        body: m.body.clone(),
    })
}
