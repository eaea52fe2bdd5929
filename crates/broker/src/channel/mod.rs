//! A channel: the state one AMQP channel keeps inside its connection's task, and the
//! handling of every channel-level method.
//!
//! The pieces live in their own files: assembling and routing published content
//! ([`publish`]), consumers and acknowledgements ([`consume`]), exchange and queue
//! declarations ([`declare`]), publisher confirms ([`confirms`]) and transactions ([`tx`]).

mod confirms;
mod consume;
mod declare;
mod prefetch;
mod publish;
mod tx;

use crate::broker::Broker;
use crate::connection::outbuf::OutBuf;
use crate::connection::outgoing::Outgoing;
use crate::mail::{ConnHandle, ConnMsg};
use crate::queue::QueueHandle;
use crate::vhost::VHost;
use confirms::Confirms;
use consume::{ChannelConsumer, Unacked};
use foldhash::HashMap;
use prefetch::SharedPrefetch;
use publish::Content;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;
use tx::TxBuffer;
use warren_amqp::methods::*;
use warren_amqp::{AmqpError, AmqpResult};
use warren_amqp::{ContentHeader, Method, ShortStr};
use warren_meta::User;

/// What a channel needs from its connection while it handles a method.
pub struct Ctx<'a> {
    pub broker: &'a Arc<Broker>,
    pub vhost: &'a Arc<VHost>,
    pub user: &'a User,
    pub conn: &'a ConnHandle,
    pub out: &'a mut OutBuf,
    pub frame_max: u32,
    pub consumer_cancel_notify: bool,
    /// The connection's mailbox, for draining deliveries that must precede a reply.
    pub mailbox: &'a mut UnboundedReceiver<ConnMsg>,
    /// Mail drained for other channels, handled by the connection next.
    pub stash: &'a mut VecDeque<ConnMsg>,
    /// Publishes routed and not yet handed to their queues.
    pub outgoing: &'a mut Outgoing,
}

/// What `Channel::handle_quick` did with a method.
pub enum QuickMethod {
    Handled(AmqpResult<()>),
    /// Not a message-path method: for `handle_method`.
    Other(Method),
}

pub struct Channel {
    pub id: u16,
    /// Unique within the connection across re-openings of the same channel number.
    pub key: u64,
    content: Content,
    confirms: Option<Confirms>,
    tx: Option<TxBuffer>,
    next_delivery_tag: u64,
    unacked: VecDeque<Unacked>,
    consumers: HashMap<ShortStr, ChannelConsumer>,
    /// Prefetch for consumers created from now on (basic.qos without global).
    consumer_prefetch: u16,
    /// The channel-wide prefetch (basic.qos with global), shared by its consumers.
    shared: SharedPrefetch,
    /// The queue named by an empty queue name, as RabbitMQ remembers it per channel.
    last_queue: Option<ShortStr>,
    /// This channel's direct reply-to consumer: its tag and the token in its address.
    reply_to: Option<(ShortStr, String)>,
}

impl Channel {
    pub fn new(id: u16, key: u64) -> Self {
        Channel {
            id,
            key,
            content: Content::Idle,
            confirms: None,
            tx: None,
            next_delivery_tag: 1,
            unacked: VecDeque::new(),
            consumers: HashMap::default(),
            consumer_prefetch: 0,
            shared: SharedPrefetch::default(),
            last_queue: None,
            reply_to: None,
        }
    }

    /// Handles a method frame (other than channel.open/close, which the connection handles).
    pub async fn handle_method(&mut self, ctx: &mut Ctx<'_>, method: Method) -> AmqpResult<()> {
        let method = match self.handle_quick(ctx, method) {
            QuickMethod::Handled(r) => return r,
            QuickMethod::Other(m) => m,
        };
        let (class_id, method_id) = (method.class_id(), method.method_id());
        if !self.content.is_idle() {
            return Err(self
                .content
                .unexpected("method")
                .in_method(class_id, method_id));
        }
        self.dispatch(ctx, method)
            .await
            .map_err(|e| e.in_method(class_id, method_id))
    }

    /// The methods of the message path (publish and acknowledgements), handled without
    /// waiting on anything; any other method is given back for `handle_method`.
    pub fn handle_quick(&mut self, ctx: &mut Ctx<'_>, method: Method) -> QuickMethod {
        if !matches!(
            method,
            Method::BasicPublish(_)
                | Method::BasicAck(_)
                | Method::BasicNack(_)
                | Method::BasicReject(_)
        ) {
            return QuickMethod::Other(method);
        }
        let (class_id, method_id) = (method.class_id(), method.method_id());
        if !self.content.is_idle() {
            return QuickMethod::Handled(Err(self
                .content
                .unexpected("method")
                .in_method(class_id, method_id)));
        }
        let r = match method {
            Method::BasicPublish(m) => {
                self.content = Content::Header(m);
                Ok(())
            }
            Method::BasicAck(m) => self.ack(ctx, m.delivery_tag, m.multiple),
            Method::BasicNack(m) => self.nack(ctx, m.delivery_tag, m.multiple, m.requeue),
            Method::BasicReject(m) => self.nack(ctx, m.delivery_tag, false, m.requeue),
            other => return QuickMethod::Other(other),
        };
        QuickMethod::Handled(r.map_err(|e| e.in_method(class_id, method_id)))
    }

    /// Every method but those of the message path (see `handle_quick`).
    async fn dispatch(&mut self, ctx: &mut Ctx<'_>, method: Method) -> AmqpResult<()> {
        match method {
            Method::ExchangeDeclare(m) => self.exchange_declare(ctx, m).await,
            Method::ExchangeDelete(m) => self.exchange_delete(ctx, m).await,
            Method::ExchangeBind(m) => self.exchange_bind(ctx, m).await,
            Method::ExchangeUnbind(m) => self.exchange_unbind(ctx, m).await,
            Method::QueueDeclare(m) => self.queue_declare(ctx, m).await,
            Method::QueueBind(m) => self.queue_bind(ctx, m).await,
            Method::QueueUnbind(m) => self.queue_unbind(ctx, m).await,
            Method::QueuePurge(m) => self.queue_purge(ctx, m).await,
            Method::QueueDelete(m) => self.queue_delete(ctx, m).await,
            Method::BasicQos(m) => self.qos(ctx, m),
            Method::BasicConsume(m) => self.consume(ctx, m).await,
            Method::BasicCancel(m) => self.cancel(ctx, m).await,
            Method::BasicGet(m) => self.get(ctx, m).await,
            Method::BasicRecover(m) => {
                self.recover(ctx, m.requeue)?;
                ctx.out.method(self.id, &BasicRecoverOk {}.into());
                Ok(())
            }
            Method::BasicRecoverAsync(m) => self.recover(ctx, m.requeue),
            Method::ConfirmSelect(m) => self.confirm_select(ctx, m),
            Method::TxSelect(_) => self.tx_select(ctx),
            Method::TxCommit(_) => self.tx_commit(ctx).await,
            Method::TxRollback(_) => self.tx_rollback(ctx).await,
            Method::ChannelFlow(m) => {
                if !m.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                ctx.out
                    .method(self.id, &ChannelFlowOk { active: true }.into());
                Ok(())
            }
            Method::ChannelFlowOk(_) => Ok(()),
            Method::AccessRequest(_) => {
                ctx.out
                    .method(self.id, &AccessRequestOk { ticket: 1 }.into());
                Ok(())
            }
            other => Err(AmqpError::command_invalid(format!(
                "unexpected method '{}' on channel {}",
                other.name(),
                self.id
            ))),
        }
    }

    /// Handles a content header frame.
    pub fn handle_header(&mut self, ctx: &mut Ctx<'_>, header: ContentHeader) -> AmqpResult<()> {
        self.content_header(ctx, header)
    }

    /// Handles a content body frame.
    pub fn handle_body(&mut self, ctx: &mut Ctx<'_>, payload: bytes::Bytes) -> AmqpResult<()> {
        self.content_body(ctx, payload)
    }

    /// Queues report publishes now on disk (or not).
    pub fn written(&mut self, seqs: &[u64], ok: bool) {
        if let Some(c) = &mut self.confirms {
            c.written(seqs, ok);
        }
    }

    /// What `list_channels` shows of this channel.
    pub fn row(&self) -> crate::mail::ChannelRow {
        crate::mail::ChannelRow {
            number: self.id,
            consumers: self.consumers.len() as u32,
            unacknowledged: self.unacked.len() as u32,
            unconfirmed: self.confirms.as_ref().map_or(0, |c| c.unconfirmed()),
            uncommitted: self.tx.as_ref().map_or(0, |t| t.publishes.len() as u32),
            prefetch: u32::from(self.consumer_prefetch),
            global_prefetch: self.shared.limit,
            confirm: self.confirms.is_some(),
            transactional: self.tx.is_some(),
        }
    }

    pub fn has_confirms(&self) -> bool {
        self.confirms.is_some()
    }

    /// Writes the confirms gathered while handling a batch of frames.
    pub fn flush_confirms(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(c) = &mut self.confirms {
            c.flush(self.id, ctx.out);
        }
    }

    /// The queues this channel has business with, told once when it closes.
    fn queues(&self) -> Vec<QueueHandle> {
        let mut qs: Vec<QueueHandle> = Vec::new();
        let all = self
            .consumers
            .values()
            .filter_map(|c| c.queue.as_ref())
            .chain(self.unacked.iter().filter_map(|u| u.queue.as_ref()));
        for q in all {
            if !qs.iter().any(|x| x.id() == q.id()) {
                qs.push(q.clone());
            }
        }
        qs
    }

    /// The channel is closing (or its connection is): consumers go and whatever was not
    /// acknowledged goes back to its queue.
    pub async fn close(&mut self, broker: &Broker, conn_id: warren_meta::ConnId) {
        for q in self.queues() {
            q.channel_closed(conn_id, self.key).await;
        }
        if let Some((_, token)) = self.reply_to.take() {
            broker.replies.remove(&token);
        }
        self.consumers.clear();
        self.unacked.clear();
    }
}
