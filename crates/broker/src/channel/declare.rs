//! Exchange and queue methods: declare, delete, bind, unbind, purge. Names from the client
//! are cleaned of CR and LF here, once, before anything looks them up.

use super::{Channel, Ctx};
use crate::names;
use crate::vhost;
use warren_amqp::methods::*;
use warren_amqp::{AmqpError, AmqpResult, FieldTable, Method, ShortStr};
use warren_meta::rules::{check_queue_name, strip_cr_lf};
use warren_meta::{Binding, Destination};

/// Whether a method binds or unbinds.
#[derive(Clone, Copy)]
enum Link {
    Bind,
    Unbind,
}

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
                name: strip_cr_lf(&m.exchange),
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
        ctx.vhost
            .delete_exchange(strip_cr_lf(&m.exchange), m.if_unused)
            .await?;
        self.reply(ctx, m.nowait, ExchangeDeleteOk {});
        Ok(())
    }

    /// Binds or unbinds, with every name cleaned.
    async fn link(
        &mut self,
        ctx: &mut Ctx<'_>,
        link: Link,
        source: &ShortStr,
        destination: Destination,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> AmqpResult<()> {
        let binding = Binding {
            source: strip_cr_lf(source),
            destination: match destination {
                Destination::Queue(q) => Destination::Queue(strip_cr_lf(&q)),
                Destination::Exchange(x) => Destination::Exchange(strip_cr_lf(&x)),
            },
            routing_key,
            arguments,
        };
        match link {
            Link::Bind => ctx.vhost.bind(binding, ctx.conn.id).await,
            Link::Unbind => ctx.vhost.unbind(binding, ctx.conn.id).await,
        }
    }

    pub(super) async fn exchange_bind(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ExchangeBind,
    ) -> AmqpResult<()> {
        let destination = Destination::Exchange(m.destination);
        self.link(
            ctx,
            Link::Bind,
            &m.source,
            destination,
            m.routing_key,
            m.arguments,
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
        let destination = Destination::Exchange(m.destination);
        self.link(
            ctx,
            Link::Unbind,
            &m.source,
            destination,
            m.routing_key,
            m.arguments,
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
            // The vhost's default type goes into the arguments first: everything after,
            // the server-named refusal included, sees the type the queue will have.
            let arguments = warren_meta::default_type::apply(
                m.arguments,
                ctx.vhost.default_queue_type(),
                m.durable,
                m.exclusive,
                m.auto_delete,
            );
            let name = if name.is_empty() {
                if is_quorum(&arguments) {
                    return Err(AmqpError::precondition_failed(
                        "Cannot declare a server-named queue for type rabbit_quorum_queue",
                    ));
                }
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
                    arguments,
                    conn: ctx.conn.id,
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
    fn binding_for(&self, queue: &ShortStr, key: ShortStr) -> AmqpResult<(ShortStr, ShortStr)> {
        let resolved = self.resolve_queue(queue)?;
        let key = if queue.is_empty() && key.is_empty() {
            resolved.clone()
        } else {
            key
        };
        Ok((resolved, key))
    }

    pub(super) async fn queue_bind(&mut self, ctx: &mut Ctx<'_>, m: QueueBind) -> AmqpResult<()> {
        let (queue, routing_key) = self.binding_for(&m.queue, m.routing_key)?;
        let destination = Destination::Queue(queue);
        self.link(
            ctx,
            Link::Bind,
            &m.exchange,
            destination,
            routing_key,
            m.arguments,
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
        let (queue, routing_key) = self.binding_for(&m.queue, m.routing_key)?;
        let destination = Destination::Queue(queue);
        self.link(
            ctx,
            Link::Unbind,
            &m.exchange,
            destination,
            routing_key,
            m.arguments,
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

/// Whether a declaration asks for a quorum queue.
fn is_quorum(arguments: &FieldTable) -> bool {
    arguments
        .get("x-queue-type")
        .and_then(warren_amqp::FieldValue::as_bytes)
        .is_some_and(|t| t.as_ref() == b"quorum")
}
