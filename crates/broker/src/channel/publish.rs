//! Publishing: assembling basic.publish with its header and body frames into a message,
//! checking it as RabbitMQ's `rabbit_channel` does, routing it, and handing it to queues.

use super::{Channel, Ctx};
use crate::message::{Body, Message};
use crate::queue::{QueueHandle, Ticket};
use crate::reply_to::ReplyConsumers;
use crate::routing::{ExchangeRoute, Snapshot};
use bytes::Bytes;
use std::sync::Arc;
use warren_amqp::constants::class;
use warren_amqp::methods::{BasicPublish, BasicReturn};
use warren_amqp::properties::flag;
use warren_amqp::{AmqpError, AmqpResult};
use warren_amqp::{ContentHeader, Method, RawProperties, ShortStr, reply};

/// The address a channel's direct reply-to consumer is reached at, without its token.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";
const REPLY_TO_PREFIX: &[u8] = b"amq.rabbitmq.reply-to.";

/// What a publisher waits for from the queues that keep a message on disk.
#[derive(Clone, Copy)]
pub enum Want {
    Nothing,
    /// A publisher confirm, by its sequence number.
    Confirm(u64),
    /// A transaction's commit, by its number.
    Commit(u64),
}

/// Where a channel is in receiving a message's frames.
pub enum Content {
    Idle,
    /// basic.publish arrived; its content header is next.
    Header(BasicPublish),
    /// The header arrived; `remaining` body bytes are still to come.
    Body {
        publish: BasicPublish,
        properties: RawProperties,
        remaining: u64,
        body: Body,
    },
}

impl Content {
    pub fn is_idle(&self) -> bool {
        matches!(self, Content::Idle)
    }

    /// The error for a frame that does not fit, as RabbitMQ's command assembler words it.
    pub fn unexpected(&self, _got: &str) -> AmqpError {
        let publish = (BasicPublish::CLASS_ID, BasicPublish::METHOD_ID);
        match self {
            Content::Idle => {
                AmqpError::unexpected_frame("expected method frame, got non method frame instead")
            }
            Content::Header(_) => AmqpError::unexpected_frame(format!(
                "expected content header for class {}, got non content header frame instead",
                class::BASIC
            ))
            .in_method(publish.0, publish.1),
            Content::Body { .. } => AmqpError::unexpected_frame(
                "expected content body, got non content body frame instead",
            )
            .in_method(publish.0, publish.1),
        }
    }
}

impl Channel {
    pub(super) fn content_header(
        &mut self,
        ctx: &mut Ctx<'_>,
        header: ContentHeader,
    ) -> AmqpResult<()> {
        let publish = match std::mem::replace(&mut self.content, Content::Idle) {
            Content::Header(p) => p,
            other => {
                let e = other.unexpected("header");
                self.content = other;
                return Err(e);
            }
        };
        let at = (BasicPublish::CLASS_ID, BasicPublish::METHOD_ID);
        if header.class_id != class::BASIC || header.weight != 0 {
            return Err(AmqpError::unexpected_frame(format!(
                "expected content header for class {}, got one for class {} instead",
                class::BASIC,
                header.class_id
            ))
            .in_method(at.0, at.1));
        }
        let max = ctx.broker.config.amqp.max_message_size;
        if header.body_size > max {
            return Err(AmqpError::precondition_failed(format!(
                "message size {} is larger than configured max size {}",
                header.body_size, max
            ))
            .in_method(at.0, at.1));
        }
        if header.body_size == 0 {
            return self
                .publish(ctx, publish, header.properties, Body::new())
                .map_err(|e| e.in_method(at.0, at.1));
        }
        self.content = Content::Body {
            publish,
            properties: header.properties,
            remaining: header.body_size,
            body: Body::new(),
        };
        Ok(())
    }

    pub(super) fn content_body(&mut self, ctx: &mut Ctx<'_>, payload: Bytes) -> AmqpResult<()> {
        let at = (BasicPublish::CLASS_ID, BasicPublish::METHOD_ID);
        let Content::Body {
            remaining, body, ..
        } = &mut self.content
        else {
            return Err(self.content.unexpected("body"));
        };
        let n = payload.len() as u64;
        if n > *remaining {
            return Err(AmqpError::unexpected_frame(format!(
                "content body frame of {n} bytes exceeds the {remaining} bytes the header announced"
            ))
            .in_method(at.0, at.1));
        }
        *remaining -= n;
        body.push(payload);
        if *remaining > 0 {
            return Ok(());
        }
        let Content::Body {
            publish,
            properties,
            body,
            ..
        } = std::mem::replace(&mut self.content, Content::Idle)
        else {
            return Ok(());
        };
        self.publish(ctx, publish, properties, body)
            .map_err(|e| e.in_method(at.0, at.1))
    }

    /// A whole message has arrived: check it, then route it (or keep it for tx.commit).
    fn publish(
        &mut self,
        ctx: &mut Ctx<'_>,
        p: BasicPublish,
        mut properties: RawProperties,
        body: Body,
    ) -> AmqpResult<()> {
        if p.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        let routes = ctx.vhost.routes();
        let exchange = routes.exchange(&p.exchange).ok_or_else(|| {
            AmqpError::not_found(format!(
                "no exchange '{}' in vhost '{}'",
                p.exchange, ctx.vhost.name
            ))
        })?;
        if exchange.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{}' in vhost '{}'",
                p.exchange, ctx.vhost.name
            )));
        }
        if properties.reply_to().is_some_and(|r| r == REPLY_TO) {
            let Some((_, token)) = &self.reply_to else {
                return Err(AmqpError::precondition_failed(
                    "fast reply consumer does not exist",
                ));
            };
            let address = ShortStr::from(format!("{REPLY_TO}.{token}"));
            properties = properties.with_short_str(flag::REPLY_TO, &address);
        }
        if let Some(e) = properties.expiration() {
            warren_meta::queue_args::expiration(&e)?;
        }
        if let Some(claimed) = properties.user_id() {
            if claimed.as_bytes() != ctx.user.name.as_bytes() {
                return Err(AmqpError::precondition_failed(format!(
                    "user_id property set to '{}' but authenticated user was '{}'",
                    claimed, ctx.user.name
                )));
            }
        }
        let message = Arc::new(Message {
            exchange: p.exchange,
            routing_key: p.routing_key,
            properties,
            body,
        });
        if let Some(tx) = &mut self.tx {
            tx.publishes.push((message, p.mandatory));
            return Ok(());
        }
        let exchange = exchange.clone();
        match self.confirms.as_mut().map(|c| c.publish()) {
            Some(seq) => {
                let waiting = self.route(
                    ctx,
                    &routes,
                    &exchange,
                    message,
                    p.mandatory,
                    Want::Confirm(seq),
                );
                if let Some(c) = &mut self.confirms {
                    c.wait_for(seq, waiting);
                }
            }
            None => {
                self.route(ctx, &routes, &exchange, message, p.mandatory, Want::Nothing);
            }
        }
        Ok(())
    }

    /// Routes a message and hands it to its queues; an unroutable mandatory message goes back
    /// to the publisher with basic.return. Queues that keep the message on disk are asked to
    /// report when it is there, as `want` says; returns how many were asked.
    pub(super) fn route(
        &mut self,
        ctx: &mut Ctx<'_>,
        routes: &Snapshot,
        exchange: &ExchangeRoute,
        message: Arc<Message>,
        mandatory: bool,
        want: Want,
    ) -> u32 {
        let mut queues = Vec::new();
        routes.route(exchange, &message, &mut queues);
        queues.retain(QueueHandle::is_reachable);
        let replied = exchange.name.is_empty()
            && message.routing_key.starts_with(REPLY_TO_PREFIX)
            && self.direct_reply(ctx, &message);
        if queues.is_empty() && !replied && mandatory {
            let m = Method::BasicReturn(BasicReturn {
                reply_code: reply::NO_ROUTE,
                reply_text: ShortStr::from_static("NO_ROUTE"),
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
            });
            ctx.out.content(
                self.id,
                &m,
                &message.properties,
                message.body.chunks(),
                message.body.len(),
                ctx.frame_max,
            );
        }
        let mut asked = 0;
        for q in queues {
            let ticket = match want {
                _ if !q.needs_ticket(&message) => None,
                Want::Nothing => None,
                Want::Confirm(seq) | Want::Commit(seq) => Some(Ticket {
                    conn: ctx.conn.id,
                    channel: self.id,
                    channel_key: self.key,
                    seq,
                    commit: matches!(want, Want::Commit(_)),
                }),
            };
            if ticket.is_some() {
                asked += 1;
            }
            ctx.outgoing.push(&q, message.clone(), ticket);
        }
        asked
    }

    /// Sends a message straight to the direct reply-to consumer its routing key names, on
    /// this node or another; false if there is none (as far as this node can tell).
    fn direct_reply(&self, ctx: &mut Ctx<'_>, message: &Arc<Message>) -> bool {
        let token =
            String::from_utf8_lossy(&message.routing_key.as_bytes()[REPLY_TO_PREFIX.len()..]);
        match ReplyConsumers::node_of(&token) {
            Some(node) if node != ctx.broker.meta.node() => {
                ctx.broker.remote.send_reply(node, &token, message)
            }
            _ => ctx.broker.replies.deliver(&token, message.clone()),
        }
    }

    /// Looks up a publish's exchange again (used at tx.commit) and routes the message;
    /// returns how many queues will answer commit `commit` once it is on disk.
    pub(super) fn route_later(
        &mut self,
        ctx: &mut Ctx<'_>,
        message: Arc<Message>,
        mandatory: bool,
        commit: u64,
    ) -> u32 {
        let routes = ctx.vhost.routes();
        match routes.exchange(&message.exchange).cloned() {
            Some(x) => self.route(ctx, &routes, &x, message, mandatory, Want::Commit(commit)),
            None => 0,
        }
    }
}
