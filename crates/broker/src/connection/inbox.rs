//! What a connection does with its mail from queues (see `mail`): deliveries written to their
//! channels, consumers whose queue went away, publishes now on disk, and an order to close.

use super::close::close_method;
use super::{Connection, Slot};
use crate::mail::{ChannelRow, ConnMsg};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use warren_amqp::AmqpError;

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(super) async fn handle_mail(&mut self, m: ConnMsg) {
        match m {
            ConnMsg::Deliver(batch) => {
                let (mut ctx, channels) = self.parts();
                for d in batch {
                    if let Some(Slot::Open(ch)) = channels.get_mut(&d.channel) {
                        if ch.key == d.channel_key {
                            ch.deliver(&mut ctx, d);
                        }
                    }
                    // Otherwise the channel closed; the queue takes the message back when it
                    // learns of the close.
                }
            }
            ConnMsg::ConsumerGone {
                channel,
                channel_key,
                consumer_tag,
            } => {
                let (mut ctx, channels) = self.parts();
                if let Some(Slot::Open(ch)) = channels.get_mut(&channel) {
                    if ch.key == channel_key {
                        ch.consumer_gone(&mut ctx, consumer_tag);
                    }
                }
            }
            ConnMsg::NodeDown { node } => {
                let (mut ctx, channels) = self.parts();
                for slot in channels.values_mut() {
                    if let Slot::Open(ch) = slot {
                        ch.node_down(&mut ctx, node);
                    }
                }
            }
            ConnMsg::Confirmed {
                channel,
                channel_key,
                seqs,
                ok,
            } => {
                if let Some(Slot::Open(ch)) = self.channels.get_mut(&channel) {
                    if ch.key == channel_key {
                        ch.written(&seqs, ok);
                        if !self.confirm_channels.contains(&channel) {
                            self.confirm_channels.push(channel);
                        }
                    }
                }
            }
            // A transaction's commit reads its answers itself (see `Channel::tx_commit`);
            // one that arrives here belongs to a commit that already failed.
            ConnMsg::Committed { .. } => {}
            ConnMsg::Describe(answer) => {
                let mut rows: Vec<ChannelRow> = self
                    .channels
                    .values()
                    .filter_map(|slot| match slot {
                        Slot::Open(ch) => Some(ch.row()),
                        _ => None,
                    })
                    .collect();
                rows.sort_by_key(|r| r.number);
                let _ = answer.send(rows);
            }
            ConnMsg::Close { code, text } => {
                if self.closing_since.is_none() {
                    self.out
                        .method(0, &close_method(&AmqpError::new(code, text)));
                    self.closing_since = Some(Instant::now());
                    self.close_channels().await;
                }
            }
        }
    }
}
