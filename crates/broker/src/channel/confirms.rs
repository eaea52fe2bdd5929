//! Publisher confirms: numbering publishes after confirm.select and announcing them as
//! settled, collapsing runs into one `multiple` ack where that says the same thing.

use super::{Channel, Ctx};
use crate::connection::outbuf::OutBuf;
use foldhash::HashMap;
use std::collections::BTreeSet;
use warren_amqp::methods::{BasicAck, BasicNack, ConfirmSelect, ConfirmSelectOk};
use warren_amqp::{AmqpError, AmqpResult};

#[derive(Debug, Default)]
pub struct Confirms {
    next_seq: u64,
    /// Published and not yet settled.
    outstanding: BTreeSet<u64>,
    /// Publishes waiting for queues to write them to disk: how many queues, and whether all
    /// that answered so far succeeded.
    on_disk: HashMap<u64, (u32, bool)>,
    /// Settled and not yet announced.
    acked: Vec<u64>,
    nacked: Vec<u64>,
}

impl Confirms {
    pub fn new() -> Self {
        Confirms {
            next_seq: 1,
            ..Default::default()
        }
    }

    /// Publishes not yet settled.
    pub fn unconfirmed(&self) -> u32 {
        self.outstanding.len() as u32
    }

    /// Numbers the next publish.
    pub fn publish(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding.insert(seq);
        seq
    }

    /// A publish was handed to its queues, `waiting` of which will report when it is on disk
    /// (none: it is settled now).
    pub fn wait_for(&mut self, seq: u64, waiting: u32) {
        if waiting == 0 {
            self.ack(seq);
        } else {
            self.on_disk.insert(seq, (waiting, true));
        }
    }

    /// One queue reports on publishes it was waiting to write.
    pub fn written(&mut self, seqs: &[u64], ok: bool) {
        for seq in seqs {
            let Some((left, all_ok)) = self.on_disk.get_mut(seq) else {
                continue;
            };
            *left -= 1;
            *all_ok &= ok;
            if *left == 0 {
                let ok = *all_ok;
                self.on_disk.remove(seq);
                if ok {
                    self.ack(*seq);
                } else {
                    self.nack(*seq);
                }
            }
        }
    }

    pub fn ack(&mut self, seq: u64) {
        if self.outstanding.remove(&seq) {
            self.acked.push(seq);
        }
    }

    pub fn nack(&mut self, seq: u64) {
        if self.outstanding.remove(&seq) {
            self.nacked.push(seq);
        }
    }

    /// Announces what was settled. Acks below every unsettled or nacked publish collapse
    /// into one `multiple` ack; the rest go one by one.
    pub fn flush(&mut self, channel: u16, out: &mut OutBuf) {
        if self.acked.is_empty() && self.nacked.is_empty() {
            return;
        }
        self.acked.sort_unstable();
        self.nacked.sort_unstable();
        let floor = self
            .outstanding
            .first()
            .copied()
            .into_iter()
            .chain(self.nacked.first().copied())
            .min()
            .unwrap_or(u64::MAX);
        let below = self.acked.partition_point(|s| *s < floor);
        if below > 0 {
            let top = self.acked[below - 1];
            out.method(
                channel,
                &BasicAck {
                    delivery_tag: top,
                    multiple: below > 1,
                }
                .into(),
            );
        }
        for &seq in &self.acked[below..] {
            out.method(
                channel,
                &BasicAck {
                    delivery_tag: seq,
                    multiple: false,
                }
                .into(),
            );
        }
        for &seq in &self.nacked {
            out.method(
                channel,
                &BasicNack {
                    delivery_tag: seq,
                    multiple: false,
                    requeue: false,
                }
                .into(),
            );
        }
        self.acked.clear();
        self.nacked.clear();
    }
}

impl Channel {
    pub(super) fn confirm_select(&mut self, ctx: &mut Ctx<'_>, m: ConfirmSelect) -> AmqpResult<()> {
        if self.tx.is_some() {
            return Err(AmqpError::precondition_failed(
                "cannot switch from tx to confirm mode",
            ));
        }
        if self.confirms.is_none() {
            self.confirms = Some(Confirms::new());
        }
        if !m.nowait {
            ctx.out.method(self.id, &ConfirmSelectOk {}.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use warren_amqp::{Frame, Method, parse_frame};

    fn announced(c: &mut Confirms) -> Vec<Method> {
        let mut out = OutBuf::new();
        c.flush(1, &mut out);
        let mut wire = BytesMut::new();
        for s in out.io_slices() {
            wire.extend_from_slice(&s);
        }
        let mut v = Vec::new();
        while let Some(Frame::Method { method, .. }) = parse_frame(&mut wire, 0).unwrap() {
            v.push(method);
        }
        v
    }

    #[test]
    fn in_order_acks_collapse_into_one_multiple() {
        let mut c = Confirms::new();
        for _ in 0..5 {
            let s = c.publish();
            c.ack(s);
        }
        assert_eq!(
            announced(&mut c),
            vec![Method::BasicAck(BasicAck {
                delivery_tag: 5,
                multiple: true
            })]
        );
        let s = c.publish();
        c.ack(s);
        assert_eq!(
            announced(&mut c),
            vec![Method::BasicAck(BasicAck {
                delivery_tag: 6,
                multiple: false
            })]
        );
    }

    #[test]
    fn acks_above_an_unsettled_publish_go_one_by_one() {
        let mut c = Confirms::new();
        let a = c.publish();
        let b = c.publish();
        let d = c.publish();
        c.ack(a);
        c.ack(d);
        assert_eq!(
            announced(&mut c),
            vec![
                Method::BasicAck(BasicAck {
                    delivery_tag: a,
                    multiple: false
                }),
                Method::BasicAck(BasicAck {
                    delivery_tag: d,
                    multiple: false
                }),
            ]
        );
        c.nack(b);
        assert_eq!(
            announced(&mut c),
            vec![Method::BasicNack(BasicNack {
                delivery_tag: b,
                multiple: false,
                requeue: false
            })]
        );
    }
}
