//! Routing: where a published message goes.
//!
//! A vhost's exchanges and bindings are compiled into an immutable [`Snapshot`] that is
//! swapped whole when the topology changes ([`compile`] makes the new one from the last,
//! redoing only what changed). Publishers read the current snapshot without taking any lock,
//! and routing is a pure function of the snapshot and the message.

mod compile;
mod sharded;
pub mod topic;

pub use compile::Changes;

use crate::message::Message;
use crate::queue::QueueHandle;
use foldhash::HashSet;
use sharded::Sharded;
use std::sync::Arc;
use topic::{TopicPattern, split_words};
use warren_amqp::{FieldTable, ShortStr};
use warren_meta::headers::HeadersBinding;
use warren_meta::{ExchangeKind, QueueId};

/// Up to this many destination queues, duplicates are found by scanning the list; beyond it,
/// by a set, so that a message reaching thousands of queues costs time linear in them.
const SCAN_DEDUP: usize = 16;

#[derive(Debug, Clone)]
enum Target {
    Queue(QueueHandle),
    Exchange(ShortStr),
}

impl Target {
    /// Whether this is where a binding to `d` leads.
    fn is(&self, d: &warren_meta::Destination) -> bool {
        match (self, d) {
            (Target::Queue(h), warren_meta::Destination::Queue(n)) => h.name() == n,
            (Target::Exchange(a), warren_meta::Destination::Exchange(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug)]
enum Matcher {
    /// The nameless exchange: the routing key is the queue's name.
    Default,
    /// By routing key; sharded so that one binding's change copies little.
    Direct(Sharded<Arc<[Target]>>),
    Fanout(Vec<Target>),
    Topic(Vec<(TopicPattern, Target)>),
    Headers(Vec<(HeadersBinding, Target)>),
}

/// One exchange as routing sees it.
#[derive(Debug)]
pub struct ExchangeRoute {
    pub name: ShortStr,
    pub kind: ExchangeKind,
    pub internal: bool,
    pub alternate: Option<ShortStr>,
    matcher: Matcher,
}

/// Everything needed to route in one vhost, frozen at one moment. A change makes a new one
/// from the last, recompiling only what it touched (see `compile`).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    exchanges: Sharded<Arc<ExchangeRoute>>,
    queues: Sharded<QueueHandle>,
}

impl Snapshot {
    /// A queue of this vhost by name, if it is running.
    pub fn queue(&self, name: &ShortStr) -> Option<&QueueHandle> {
        self.queues.get(name)
    }

    pub fn exchange(&self, name: &ShortStr) -> Option<&Arc<ExchangeRoute>> {
        self.exchanges.get(name)
    }

    /// The queues a message published to `exchange` reaches, each once, following
    /// exchange-to-exchange bindings and alternate exchanges without looping.
    pub fn route<'a>(
        &'a self,
        exchange: &'a ExchangeRoute,
        msg: &Message,
        out: &mut Vec<QueueHandle>,
    ) {
        let mut seen: Vec<&'a ShortStr> = vec![&exchange.name];
        let mut work: Vec<&'a ExchangeRoute> = vec![exchange];
        let mut words: Option<Vec<&[u8]>> = None;
        let mut headers: Option<Option<FieldTable>> = None;
        let mut matched: Vec<&'a Target> = Vec::new();
        let mut default_target: Option<Target> = None;
        // Built only for a message that reaches many queues.
        let mut seen_queues: Option<HashSet<QueueId>> = None;
        while let Some(x) = work.pop() {
            matched.clear();
            match &x.matcher {
                Matcher::Default => {
                    default_target = self
                        .queues
                        .get(&msg.routing_key)
                        .cloned()
                        .map(Target::Queue);
                }
                Matcher::Direct(m) => {
                    matched.extend(m.get(&msg.routing_key).map(|ts| &ts[..]).unwrap_or(&[]));
                }
                Matcher::Fanout(ts) => matched.extend(ts),
                Matcher::Topic(bs) => {
                    let words =
                        words.get_or_insert_with(|| split_words(msg.routing_key.as_bytes()));
                    matched.extend(bs.iter().filter(|(p, _)| p.matches(words)).map(|(_, t)| t));
                }
                Matcher::Headers(bs) => {
                    let headers = headers
                        .get_or_insert_with(|| msg.properties.headers().and_then(Result::ok));
                    matched.extend(
                        bs.iter()
                            .filter(|(hb, _)| hb.matches(headers.as_ref()))
                            .map(|(_, t)| t),
                    );
                }
            }
            let any = !matched.is_empty() || default_target.is_some();
            for t in matched
                .iter()
                .copied()
                .chain(default_target.take().as_ref())
            {
                match t {
                    Target::Queue(q) => {
                        let new = if out.len() < SCAN_DEDUP {
                            !out.iter().any(|o| o.id() == q.id())
                        } else {
                            seen_queues
                                .get_or_insert_with(|| out.iter().map(QueueHandle::id).collect())
                                .insert(q.id())
                        };
                        if new {
                            out.push(q.clone());
                        }
                    }
                    Target::Exchange(name) => {
                        if let Some(next) = self.exchanges.get(name) {
                            if !seen.contains(&&next.name) {
                                seen.push(&next.name);
                                work.push(next);
                            }
                        }
                    }
                }
            }
            if !any {
                if let Some(ae) = x.alternate.as_ref().and_then(|n| self.exchanges.get(n)) {
                    if !seen.contains(&&ae.name) {
                        seen.push(&ae.name);
                        work.push(ae);
                    }
                }
            }
        }
    }
}
