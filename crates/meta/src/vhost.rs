//! One vhost's part of the topology: its exchanges, queues, bindings and policies, and the
//! checks a declaration, a binding or a deletion must pass against them (RabbitMQ's
//! `rabbit_exchange`, `rabbit_amqqueue` and `rabbit_binding`). Checks that change nothing
//! (`check_*`) are public, so that a node answers what exists from its local copy without a
//! round trip through the log; changes come only through [`crate::Topology::apply`].

use crate::bindings::Bindings;
use crate::command::{Applied, Effect, QueueDeclaration};
use crate::equivalence;
use crate::headers::HeadersBinding;
use crate::ids::ConnId;
use crate::model::{Binding, Destination, Exchange, ExchangeKind, Policy, Queue, QueueType};
use crate::rules::{default_exchange_refused, describe, locked};
use std::collections::BTreeMap;
use warren_amqp::{AmqpError, AmqpResult, FieldTable, ShortStr};

/// One vhost's part of the topology.
#[derive(Debug, Clone)]
pub struct Vhost {
    pub name: String,
    pub(crate) exchanges: BTreeMap<ShortStr, Exchange>,
    pub(crate) queues: BTreeMap<ShortStr, Queue>,
    pub(crate) bindings: Bindings,
    pub(crate) policies: BTreeMap<String, Policy>,
    /// What declarations that name no queue type get (RabbitMQ's vhost metadata); `None` is
    /// RabbitMQ's `undefined`.
    pub(crate) default_queue_type: Option<QueueType>,
}

/// The exchanges every vhost has from its creation.
const BUILTIN: [(&str, ExchangeKind, bool); 7] = [
    ("", ExchangeKind::Direct, false),
    ("amq.direct", ExchangeKind::Direct, false),
    ("amq.fanout", ExchangeKind::Fanout, false),
    ("amq.topic", ExchangeKind::Topic, false),
    ("amq.headers", ExchangeKind::Headers, false),
    ("amq.match", ExchangeKind::Headers, false),
    ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
];

impl Vhost {
    pub(crate) fn new(name: &str, default_queue_type: Option<QueueType>) -> Vhost {
        let mut exchanges = BTreeMap::new();
        for (n, kind, internal) in BUILTIN {
            let name = ShortStr::from(n);
            exchanges.insert(
                name.clone(),
                Exchange {
                    name,
                    kind,
                    durable: true,
                    auto_delete: false,
                    internal,
                    arguments: FieldTable::new(),
                },
            );
        }
        Vhost {
            name: name.to_owned(),
            exchanges,
            queues: BTreeMap::new(),
            bindings: Bindings::default(),
            policies: BTreeMap::new(),
            default_queue_type,
        }
    }

    pub fn default_queue_type(&self) -> Option<QueueType> {
        self.default_queue_type
    }

    pub fn exchange(&self, name: &ShortStr) -> Option<&Exchange> {
        self.exchanges.get(name)
    }

    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.values()
    }

    pub fn queue(&self, name: &ShortStr) -> Option<&Queue> {
        self.queues.get(name)
    }

    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.values()
    }

    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.policies.values()
    }

    pub(crate) fn rs(&self, kind: &str, name: &ShortStr) -> String {
        describe(kind, name, &self.name)
    }

    fn no_exchange(&self, name: &ShortStr) -> AmqpError {
        AmqpError::not_found(format!("no {}", self.rs("exchange", name)))
    }

    fn no_queue(&self, name: &ShortStr) -> AmqpError {
        AmqpError::not_found(format!("no {}", self.rs("queue", name)))
    }

    /// Whether a binding outlives a restart: both of its ends must.
    pub fn is_durable(&self, b: &Binding) -> bool {
        let source = self.exchanges.get(&b.source).is_some_and(|x| x.durable);
        let dest = match &b.destination {
            Destination::Queue(q) => self.queues.get(q).is_some_and(|q| q.durable),
            Destination::Exchange(x) => self.exchanges.get(x).is_some_and(|x| x.durable),
        };
        source && dest && !b.source.is_empty()
    }

    /// Checks a declaration against what exists, without changing anything: `Ok(Some(q))` if
    /// an equivalent queue exists (the declaration is answered without a change), `Ok(None)`
    /// if it must be created.
    pub fn check_queue_declaration(&self, d: &QueueDeclaration) -> AmqpResult<Option<&Queue>> {
        let Some(q) = self.queues.get(&d.name) else {
            return Ok(None);
        };
        let rs = self.rs("queue", &d.name);
        if q.exclusive_owner != d.exclusive_owner {
            return Err(locked(&rs));
        }
        // Exclusive queues are never durable, whatever the client asked.
        let durable = d.durable && d.exclusive_owner.is_none();
        equivalence::field("durable", durable, q.durable, &rs)?;
        equivalence::field("auto_delete", d.auto_delete, q.auto_delete, &rs)?;
        equivalence::args(&q.arguments, &d.arguments, equivalence::QUEUE_ARGS, &rs)?;
        Ok(Some(q))
    }

    /// Checks an exchange declaration against what exists: `Ok(true)` if an equivalent
    /// exchange exists, `Ok(false)` if it must be created.
    pub fn check_exchange_declaration(&self, x: &Exchange) -> AmqpResult<bool> {
        if x.name.is_empty() {
            return Err(default_exchange_refused());
        }
        let Some(current) = self.exchanges.get(&x.name) else {
            return Ok(false);
        };
        let rs = self.rs("exchange", &x.name);
        equivalence::field("type", x.kind.as_str(), current.kind.as_str(), &rs)?;
        equivalence::field("durable", x.durable, current.durable, &rs)?;
        equivalence::field("auto_delete", x.auto_delete, current.auto_delete, &rs)?;
        equivalence::field("internal", x.internal, current.internal, &rs)?;
        equivalence::args(
            &current.arguments,
            &x.arguments,
            equivalence::EXCHANGE_ARGS,
            &rs,
        )?;
        Ok(true)
    }

    /// Checks a binding against what exists, without changing anything: `Ok(true)` if it
    /// exists already (the bind is answered without a change, so that an application that
    /// binds again on every connect keeps working while the cluster has no majority),
    /// `Ok(false)` if it must be added.
    pub fn check_rebinding(&self, b: &Binding, by: Option<ConnId>) -> AmqpResult<bool> {
        self.check_binding(b, by)?;
        Ok(self.bindings.contains(b))
    }

    pub(crate) fn check_binding(&self, b: &Binding, by: Option<ConnId>) -> AmqpResult<()> {
        if b.source.is_empty() || matches!(&b.destination, Destination::Exchange(x) if x.is_empty())
        {
            return Err(default_exchange_refused());
        }
        let source = self
            .exchanges
            .get(&b.source)
            .ok_or_else(|| self.no_exchange(&b.source))?;
        match &b.destination {
            Destination::Exchange(x) => {
                if !self.exchanges.contains_key(x) {
                    return Err(self.no_exchange(x));
                }
            }
            Destination::Queue(q) => {
                let q = self.queues.get(q).ok_or_else(|| self.no_queue(q))?;
                q.check_exclusive(&self.name, by)?;
            }
        }
        if source.kind == ExchangeKind::Headers {
            HeadersBinding::parse(&b.arguments)?;
        }
        Ok(())
    }

    /// Removes an exchange with every binding from or to it, and the auto-delete exchanges
    /// that lose their last binding that way.
    pub(crate) fn remove_exchange(&mut self, name: &ShortStr, out: &mut Applied) {
        let mut removed = self.bindings.remove_source(name);
        removed.extend(
            self.bindings
                .remove_destination(&Destination::Exchange(name.clone())),
        );
        for b in &removed {
            out.durable |= self.is_durable(b);
        }
        let Some(x) = self.exchanges.remove(name) else {
            return;
        };
        out.durable |= x.durable;
        let sources: Vec<ShortStr> = removed
            .iter()
            .filter(|b| b.source != *name)
            .map(|b| b.source.clone())
            .collect();
        for binding in removed {
            out.effects.push(Effect::BindingRemoved {
                vhost: self.name.clone(),
                binding,
            });
        }
        out.effects.push(Effect::ExchangeDeleted {
            vhost: self.name.clone(),
            exchange: x,
        });
        for s in sources {
            self.auto_delete_exchange(&s, out);
        }
    }

    /// An auto-delete exchange goes when the last binding from it is removed.
    pub(crate) fn auto_delete_exchange(&mut self, name: &ShortStr, out: &mut Applied) {
        let auto = self.exchanges.get(name).is_some_and(|x| x.auto_delete);
        if auto && !self.bindings.has_source(name) {
            self.remove_exchange(name, out);
        }
    }

    pub(crate) fn remove_binding_effects(&mut self, removed: Vec<Binding>, out: &mut Applied) {
        let sources: Vec<ShortStr> = removed.iter().map(|b| b.source.clone()).collect();
        for binding in removed {
            out.durable |= self.is_durable(&binding);
            out.effects.push(Effect::BindingRemoved {
                vhost: self.name.clone(),
                binding,
            });
        }
        for s in sources {
            self.auto_delete_exchange(&s, out);
        }
    }
}
