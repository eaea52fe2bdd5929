//! Exchange and queue methods: declare, delete, bind, unbind, purge.

use super::{Channel, Ctx};
use crate::error::AmqpResult;
use crate::names;
use crate::routing::{Binding, Destination};
use crate::vhost::{self, check_queue_name, strip_cr_lf};
use warren_amqp::methods::*;
use warren_amqp::{Method, ShortStr};

impl Channel {
    fn reply(&self, ctx: &mut Ctx<'_>, nowait: bool, m: impl Into<Method>) {
        if !nowait {
            ctx.out.method(self.id, &m.into());
        }
    }

    pub(super) async fn exchange_declare(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ExchangeDeclare,
    ) -> AmqpResult<()> {
        ctx.vhost
            .declare_exchange(vhost::ExchangeDeclare {
                name: m.exchange,
                kind: m.kind,
                passive: m.passive,
                durable: m.durable,
                auto_delete: m.auto_delete,
                internal: m.internal,
                arguments: m.arguments,
            })
            .await?;
        self.reply(ctx, m.nowait, ExchangeDeclareOk {});
        Ok(())
    }

    pub(super) async fn exchange_delete(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ExchangeDelete,
    ) -> AmqpResult<()> {
        ctx.vhost.delete_exchange(&m.exchange, m.if_unused).await?;
        self.reply(ctx, m.nowait, ExchangeDeleteOk {});
        Ok(())
    }

    pub(super) async fn exchange_bind(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ExchangeBind,
    ) -> AmqpResult<()> {
        ctx.vhost
            .bind(
                Binding {
                    source: m.source,
                    destination: Destination::Exchange(m.destination),
                    routing_key: m.routing_key,
                    arguments: m.arguments,
                },
                ctx.conn.id,
            )
            .await?;
        self.reply(ctx, m.nowait, ExchangeBindOk {});
        Ok(())
    }

    pub(super) async fn exchange_unbind(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ExchangeUnbind,
    ) -> AmqpResult<()> {
        ctx.vhost
            .unbind(
                Binding {
                    source: strip_cr_lf(&m.source),
                    destination: Destination::Exchange(strip_cr_lf(&m.destination)),
                    routing_key: m.routing_key,
                    arguments: m.arguments,
                },
                ctx.conn.id,
            )
            .await?;
        self.reply(ctx, m.nowait, ExchangeUnbindOk {});
        Ok(())
    }

    pub(super) async fn queue_declare(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: QueueDeclare,
    ) -> AmqpResult<()> {
        let name = strip_cr_lf(&m.queue);
        let (queue, counts) = if m.passive {
            let q = ctx.vhost.queue_for(&name, ctx.conn.id)?;
            let counts = q.counts().await?;
            (name, counts)
        } else {
            let name = if name.is_empty() {
                ShortStr::from(names::queue_name())
            } else {
                check_queue_name(&name)?;
                name
            };
            let (q, created) = ctx
                .vhost
                .declare_queue(vhost::QueueDeclare {
                    name: name.clone(),
                    durable: m.durable,
                    exclusive: m.exclusive,
                    auto_delete: m.auto_delete,
                    arguments: m.arguments,
                    conn_id: ctx.conn.id,
                })
                .await?;
            let counts = if created { (0, 0) } else { q.counts().await? };
            (name, counts)
        };
        self.last_queue = Some(queue.clone());
        self.reply(
            ctx,
            m.nowait,
            QueueDeclareOk {
                queue,
                message_count: counts.0,
                consumer_count: counts.1,
            },
        );
        Ok(())
    }

    /// RabbitMQ's shortcuts: an empty queue name is the last declared queue, and if the
    /// routing key is empty too, it is that queue's name.
    fn binding_for(
        &self,
        queue: &ShortStr,
        exchange: ShortStr,
        key: ShortStr,
    ) -> AmqpResult<(ShortStr, ShortStr, ShortStr)> {
        let resolved = self.resolve_queue(queue)?;
        let key = if queue.is_empty() && key.is_empty() {
            resolved.clone()
        } else {
            key
        };
        Ok((resolved, strip_cr_lf(&exchange), key))
    }

    pub(super) async fn queue_bind(&mut self, ctx: &mut Ctx<'_>, m: QueueBind) -> AmqpResult<()> {
        let (queue, source, routing_key) = self.binding_for(&m.queue, m.exchange, m.routing_key)?;
        ctx.vhost
            .bind(
                Binding {
                    source,
                    destination: Destination::Queue(queue),
                    routing_key,
                    arguments: m.arguments,
                },
                ctx.conn.id,
            )
            .await?;
        self.reply(ctx, m.nowait, QueueBindOk {});
        Ok(())
    }

    pub(super) async fn queue_unbind(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: QueueUnbind,
    ) -> AmqpResult<()> {
        let (queue, source, routing_key) = self.binding_for(&m.queue, m.exchange, m.routing_key)?;
        ctx.vhost
            .unbind(
                Binding {
                    source,
                    destination: Destination::Queue(queue),
                    routing_key,
                    arguments: m.arguments,
                },
                ctx.conn.id,
            )
            .await?;
        self.reply(ctx, false, QueueUnbindOk {});
        Ok(())
    }

    pub(super) async fn queue_purge(&mut self, ctx: &mut Ctx<'_>, m: QueuePurge) -> AmqpResult<()> {
        let name = self.resolve_queue(&m.queue)?;
        let q = ctx.vhost.queue_for(&name, ctx.conn.id)?;
        let message_count = q.purge().await?;
        self.reply(ctx, m.nowait, QueuePurgeOk { message_count });
        Ok(())
    }

    pub(super) async fn queue_delete(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: QueueDelete,
    ) -> AmqpResult<()> {
        let name = self.resolve_queue(&m.queue)?;
        let message_count = ctx
            .vhost
            .delete_queue(&name, m.if_unused, m.if_empty, ctx.conn.id)
            .await?;
        self.reply(ctx, m.nowait, QueueDeleteOk { message_count });
        Ok(())
    }
}
