//! Consuming: basic.qos, consume, cancel, get, deliveries, and the acknowledgements that settle
//! them (ack, nack, reject, recover), with RabbitMQ's rules for delivery tags.

use super::prefetch::{CREDIT, effective};
use super::publish::REPLY_TO;
use super::{Channel, Ctx};
use crate::mail::{ConnMsg, Delivery};
use crate::message::Message;
use crate::names;
use crate::queue::{ConsumerSpec, QueueHandle, Settle};
use crate::reply_to::{ReplyConsumer, ReplyConsumers};
use std::sync::Arc;
use warren_amqp::methods::*;
use warren_amqp::{AmqpError, AmqpResult};
use warren_amqp::{Method, ShortStr};
use warren_meta::QueueType;
use warren_meta::rules::{describe, strip_cr_lf};

/// A delivery the client has yet to acknowledge.
#[derive(Debug)]
pub struct Unacked {
    pub tag: u64,
    pub queue: Option<QueueHandle>,
    pub seq: u64,
    /// Whether it counts against the channel's global prefetch.
    pub charged: bool,
}

#[derive(Debug)]
pub struct ChannelConsumer {
    /// None for the direct reply-to consumer, which has no queue.
    pub queue: Option<QueueHandle>,
    /// The consumer's id in its queue, by which it is granted credit.
    pub id: u64,
    /// Its own prefetch (basic.qos without global when it was created; 0: none).
    pub prefetch: u32,
    /// Credit taken in and not yet granted back to the queue.
    pub owed: i64,
}

impl Channel {
    /// The queue an empty name stands for: the one this channel declared last.
    pub(super) fn resolve_queue(&self, name: &ShortStr) -> AmqpResult<ShortStr> {
        let name = strip_cr_lf(name);
        if !name.is_empty() {
            return Ok(name);
        }
        self.last_queue
            .clone()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    pub(super) fn qos(&mut self, ctx: &mut Ctx<'_>, m: BasicQos) -> AmqpResult<()> {
        if m.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format!(
                "prefetch_size!=0 ({})",
                m.prefetch_size
            )));
        }
        if m.global {
            self.set_shared_prefetch(ctx, u32::from(m.prefetch_count));
        } else {
            self.consumer_prefetch = m.prefetch_count;
        }
        ctx.out.method(self.id, &BasicQosOk {}.into());
        Ok(())
    }

    pub(super) async fn consume(&mut self, ctx: &mut Ctx<'_>, m: BasicConsume) -> AmqpResult<()> {
        if self.consumers.contains_key(&m.consumer_tag) && !m.consumer_tag.is_empty() {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{}'",
                m.consumer_tag
            )));
        }
        // From now on this connection holds deliveries that queues wait on: it must never
        // wait on a queue's flow control.
        ctx.outgoing.consumes = true;
        let tag = if m.consumer_tag.is_empty() {
            ShortStr::from(names::consumer_tag())
        } else {
            m.consumer_tag.clone()
        };
        if m.queue == REPLY_TO {
            return self.consume_reply_to(ctx, m, tag);
        }
        let queue_name = self.resolve_queue(&m.queue)?;
        let queue = ctx.vhost.queue_for(&queue_name, ctx.conn.id)?;
        if queue.queue().kind == QueueType::Quorum && self.shared.limit > 0 {
            return Err(AmqpError::not_implemented(format!(
                "{} does not support global qos",
                describe("queue", &queue_name, &ctx.vhost.name)
            )));
        }
        let priority = match m.arguments.get("x-priority") {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                AmqpError::precondition_failed(format!(
                    "invalid arg 'x-priority' for {}: \"expected integer, got {}\"",
                    describe("queue", &queue_name, &ctx.vhost.name),
                    v.type_name()
                ))
            })?,
        };
        let own = u32::from(self.consumer_prefetch);
        let id = queue
            .consume(ConsumerSpec {
                tag: tag.clone(),
                conn: ctx.conn.id,
                channel: self.id,
                channel_key: self.key,
                no_ack: m.no_ack,
                prefetch: effective(own, self.shared.limit),
                exclusive: m.exclusive,
                priority,
                credit: CREDIT,
            })
            .await?;
        self.consumers.insert(
            tag.clone(),
            ChannelConsumer {
                queue: Some(queue),
                id,
                prefetch: own,
                owed: 0,
            },
        );
        if !m.nowait {
            ctx.out
                .method(self.id, &BasicConsumeOk { consumer_tag: tag }.into());
        }
        Ok(())
    }

    fn consume_reply_to(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: BasicConsume,
        tag: ShortStr,
    ) -> AmqpResult<()> {
        if !m.no_ack {
            return Err(AmqpError::precondition_failed(
                "reply consumer cannot acknowledge",
            ));
        }
        if self.reply_to.is_some() {
            return Err(AmqpError::precondition_failed("reply consumer already set"));
        }
        let token = ReplyConsumers::token(ctx.broker.meta.node());
        ctx.broker.replies.register(
            token.clone(),
            ReplyConsumer {
                conn: ctx.conn.clone(),
                channel: self.id,
                channel_key: self.key,
                consumer_tag: tag.clone(),
            },
        );
        self.reply_to = Some((tag.clone(), token));
        self.consumers.insert(
            tag.clone(),
            ChannelConsumer {
                queue: None,
                id: 0,
                prefetch: 0,
                owed: 0,
            },
        );
        if !m.nowait {
            ctx.out
                .method(self.id, &BasicConsumeOk { consumer_tag: tag }.into());
        }
        Ok(())
    }

    pub(super) async fn cancel(&mut self, ctx: &mut Ctx<'_>, m: BasicCancel) -> AmqpResult<()> {
        if let Some(c) = self.consumers.get(&m.consumer_tag) {
            match c.queue.clone() {
                Some(q) => {
                    q.cancel(ctx.conn.id, self.key, m.consumer_tag.clone())
                        .await;
                    // Deliveries the queue made before it let go of the consumer must reach
                    // the client before cancel-ok does; those held back under the shared
                    // prefetch go back to the queue.
                    self.drain_own_deliveries(ctx).await;
                    self.requeue_held(ctx, &m.consumer_tag);
                }
                None => {
                    if let Some((_, token)) = self.reply_to.take() {
                        ctx.broker.replies.remove(&token);
                    }
                }
            }
            self.consumers.remove(&m.consumer_tag);
        }
        if !m.nowait {
            ctx.out.method(
                self.id,
                &BasicCancelOk {
                    consumer_tag: m.consumer_tag,
                }
                .into(),
            );
        }
        Ok(())
    }

    /// Takes everything already in the connection's mailbox (and what other channels set
    /// aside from it), delivers what is for this channel now and leaves the rest for the
    /// connection.
    async fn drain_own_deliveries(&mut self, ctx: &mut Ctx<'_>) {
        let mut mine = Vec::new();
        let stashed: Vec<ConnMsg> = ctx.stash.drain(..).collect();
        let fresh = std::iter::from_fn(|| ctx.mailbox.try_recv().ok()).collect::<Vec<_>>();
        for msg in stashed.into_iter().chain(fresh) {
            match msg {
                ConnMsg::Deliver(batch) => {
                    let (own, other): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .partition(|d| d.channel == self.id && d.channel_key == self.key);
                    mine.extend(own);
                    if !other.is_empty() {
                        ctx.stash.push_back(ConnMsg::Deliver(other));
                    }
                }
                other => ctx.stash.push_back(other),
            }
        }
        for d in mine {
            self.deliver(ctx, d);
        }
    }

    pub(super) async fn get(&mut self, ctx: &mut Ctx<'_>, m: BasicGet) -> AmqpResult<()> {
        let name = self.resolve_queue(&m.queue)?;
        let queue = ctx.vhost.queue_for(&name, ctx.conn.id)?;
        match queue.get(ctx.conn.id, self.key, m.no_ack).await? {
            None => ctx.out.method(
                self.id,
                &BasicGetEmpty {
                    cluster_id: ShortStr::empty(),
                }
                .into(),
            ),
            Some(got) => {
                let tag = self.next_tag();
                if !m.no_ack {
                    self.unacked.push_back(Unacked {
                        tag,
                        queue: Some(queue),
                        seq: got.seq,
                        charged: false,
                    });
                }
                let method = Method::BasicGetOk(BasicGetOk {
                    delivery_tag: tag,
                    redelivered: got.redelivered,
                    exchange: got.message.exchange.clone(),
                    routing_key: got.message.routing_key.clone(),
                    message_count: got.remaining,
                });
                write_content(ctx, self.id, &method, &got.message);
            }
        }
        Ok(())
    }

    pub(super) fn next_tag(&mut self) -> u64 {
        let t = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        t
    }

    /// The queue of a consumer was deleted.
    pub fn consumer_gone(&mut self, ctx: &mut Ctx<'_>, tag: ShortStr) {
        if self.consumers.remove(&tag).is_some() && ctx.consumer_cancel_notify {
            ctx.out.method(
                self.id,
                &BasicCancel {
                    consumer_tag: tag,
                    nowait: true,
                }
                .into(),
            );
        }
    }

    /// Node `node` went down: consumers of its queues are cancelled, as for a deleted queue.
    /// What they had not acknowledged stays in the unacknowledged list, so that the
    /// client's acks still find their tags (the queue's node has them back already).
    pub fn node_down(&mut self, ctx: &mut Ctx<'_>, node: warren_meta::NodeId) {
        let tags: Vec<ShortStr> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.queue.as_ref().and_then(QueueHandle::remote_node) == Some(node))
            .map(|(tag, _)| tag.clone())
            .collect();
        for tag in tags {
            self.consumer_gone(ctx, tag);
        }
    }

    /// Takes the deliveries an ack, nack or reject names out of the unacknowledged list.
    fn collect(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        if multiple && tag == 0 {
            return Ok(self.unacked.drain(..).collect());
        }
        let at = self
            .unacked
            .binary_search_by_key(&tag, |u| u.tag)
            .map_err(|_| AmqpError::precondition_failed(format!("unknown delivery tag {tag}")))?;
        if multiple {
            Ok(self.unacked.drain(..=at).collect())
        } else {
            Ok(self.unacked.remove(at).into_iter().collect())
        }
    }

    pub(super) fn ack(&mut self, ctx: &mut Ctx<'_>, tag: u64, multiple: bool) -> AmqpResult<()> {
        let done = self.collect(tag, multiple)?;
        self.settle_or_hold(ctx, done, Settle::Ack);
        Ok(())
    }

    pub(super) fn nack(
        &mut self,
        ctx: &mut Ctx<'_>,
        tag: u64,
        multiple: bool,
        requeue: bool,
    ) -> AmqpResult<()> {
        let done = self.collect(tag, multiple)?;
        let how = if requeue {
            Settle::Requeue
        } else {
            Settle::Discard
        };
        self.settle_or_hold(ctx, done, how);
        Ok(())
    }

    fn settle_or_hold(&mut self, ctx: &mut Ctx<'_>, done: Vec<Unacked>, how: Settle) {
        match &mut self.tx {
            Some(tx) => tx.settles.push((done, how)),
            None => self.settle(ctx, done, how),
        }
    }

    /// Tells each queue what became of its deliveries (at the connection's next flush) and
    /// gives back prefetch credit.
    pub(super) fn settle(&mut self, ctx: &mut Ctx<'_>, done: Vec<Unacked>, how: Settle) {
        let mut charged = 0;
        for u in done {
            charged += u32::from(u.charged);
            if let Some(q) = &u.queue {
                ctx.outgoing.settle(q, how, u.seq);
            }
        }
        self.shared.used = self.shared.used.saturating_sub(charged);
        self.write_held(ctx);
    }

    pub(super) fn recover(&mut self, ctx: &mut Ctx<'_>, requeue: bool) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let all: Vec<Unacked> = self.unacked.drain(..).collect();
        self.settle(ctx, all, Settle::Requeue);
        Ok(())
    }
}

/// Writes basic.deliver and the message under delivery tag `tag`.
pub(super) fn write_deliver(ctx: &mut Ctx<'_>, channel: u16, tag: u64, d: Delivery) {
    let method = Method::BasicDeliver(BasicDeliver {
        consumer_tag: d.consumer_tag,
        delivery_tag: tag,
        redelivered: d.redelivered,
        exchange: d.message.exchange.clone(),
        routing_key: d.message.routing_key.clone(),
    });
    write_content(ctx, channel, &method, &d.message);
}

fn write_content(ctx: &mut Ctx<'_>, channel: u16, method: &Method, message: &Arc<Message>) {
    ctx.out.content(
        channel,
        method,
        &message.properties,
        message.body.chunks(),
        message.body.len(),
        ctx.frame_max,
    );
}
