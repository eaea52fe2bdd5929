//! The data that crosses the queue seam: consumers, publish tickets and settlements are
//! addresses and numbers, never objects shared with the caller, so that the same values can
//! travel to a queue on another node.

use crate::mail::ConnMsg;
use crate::message::Message;
use std::sync::Arc;
use warren_amqp::ShortStr;
use warren_meta::ConnId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Settle {
    Ack,
    Requeue,
    /// Rejected without requeue: the message is dropped.
    Discard,
    /// Sent to a channel that never wrote it to its client (it was held back under a shared
    /// prefetch when its consumer went): back in its place, not marked redelivered.
    Unsent,
}

/// A consumer, as its queue knows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConsumerSpec {
    pub tag: ShortStr,
    pub conn: ConnId,
    pub channel: u16,
    /// Distinguishes this opening of the channel from an earlier one with the same number.
    pub channel_key: u64,
    pub no_ack: bool,
    /// Unacknowledged deliveries the queue may have out to this consumer (0: unlimited).
    pub prefetch: u32,
    pub exclusive: bool,
    pub priority: i64,
    /// Credit the consumer starts with (see [`credit_cost`]); the connection grants more as
    /// it takes deliveries in.
    pub credit: u32,
}

/// What one delivery costs a consumer's credit: one, and one more per 64 kB of body, so that
/// the credit a connection grants bounds the bytes waiting for it as well as the messages.
pub fn credit_cost(body_len: u64) -> i64 {
    1 + (body_len >> 16) as i64
}

#[derive(Debug)]
pub struct GetReply {
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Messages left ready after this one.
    pub remaining: u32,
}

/// Who waits for a message to be safe in a queue (on disk, or accepted under a length
/// limit): a publisher confirm or a transaction's commit, owed on a channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ticket {
    pub conn: ConnId,
    pub channel: u16,
    pub channel_key: u64,
    /// The publish's confirm sequence number, or the commit's number.
    pub seq: u64,
    pub commit: bool,
}

/// Answers for waiting publishers and transactions: one mail per channel and kind.
pub fn ticket_mail(tickets: Vec<Ticket>, ok: bool) -> Vec<(ConnId, ConnMsg)> {
    let mut groups: Vec<(Ticket, Vec<u64>)> = Vec::new();
    for t in tickets {
        let same = |(g, _): &&mut (Ticket, Vec<u64>)| {
            g.conn == t.conn
                && g.channel == t.channel
                && g.channel_key == t.channel_key
                && g.commit == t.commit
        };
        match groups.iter_mut().find(same) {
            Some((_, seqs)) => seqs.push(t.seq),
            None => {
                let seq = t.seq;
                groups.push((t, vec![seq]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(t, seqs)| {
            let (channel, channel_key) = (t.channel, t.channel_key);
            let msg = if t.commit {
                ConnMsg::Committed {
                    channel,
                    channel_key,
                    seqs,
                    ok,
                }
            } else {
                ConnMsg::Confirmed {
                    channel,
                    channel_key,
                    seqs,
                    ok,
                }
            };
            (t.conn, msg)
        })
        .collect()
}
