//! Routing: where a published message goes.
//!
//! A vhost's exchanges and bindings are compiled into an immutable [`Snapshot`] that is
//! swapped whole when the topology changes. Publishers read the current snapshot without
//! taking any lock, and routing is a pure function of the snapshot and the message.

pub mod topic;

use crate::message::Message;
use crate::queue::QueueHandle;
use foldhash::{HashMap, HashSet};
use std::sync::Arc;
use topic::{TopicPattern, split_words};
use warren_amqp::{FieldTable, ShortStr};
use warren_meta::headers::HeadersBinding;
use warren_meta::{Destination, ExchangeKind, QueueId};

/// Up to this many destination queues, duplicates are found by scanning the list; beyond it,
/// by a set, so that a message reaching thousands of queues costs time linear in them.
const SCAN_DEDUP: usize = 16;

#[derive(Debug, Clone)]
enum Target {
    Queue(QueueHandle),
    Exchange(ShortStr),
}

#[derive(Debug)]
enum Matcher {
    /// The nameless exchange: the routing key is the queue's name.
    Default,
    Direct(HashMap<ShortStr, Vec<Target>>),
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

/// Everything needed to route in one vhost, frozen at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    exchanges: HashMap<ShortStr, Arc<ExchangeRoute>>,
    queues: HashMap<ShortStr, QueueHandle>,
}

impl Snapshot {
    /// Compiles a vhost's exchanges and bindings, with the handles of its running queues.
    /// Bindings whose destination queue has no handle are skipped.
    pub fn build(vhost: &warren_meta::Vhost, queues: &HashMap<ShortStr, QueueHandle>) -> Snapshot {
        let target = |d: &Destination| -> Option<Target> {
            match d {
                Destination::Queue(q) => queues.get(q).cloned().map(Target::Queue),
                Destination::Exchange(x) => Some(Target::Exchange(x.clone())),
            }
        };
        let mut compiled = HashMap::default();
        for x in vhost.exchanges() {
            let bs = vhost.bindings().from_source(&x.name);
            let matcher = if x.name.is_empty() {
                Matcher::Default
            } else {
                match x.kind {
                    ExchangeKind::Direct => {
                        let mut m: HashMap<ShortStr, Vec<Target>> = HashMap::default();
                        for b in bs {
                            if let Some(t) = target(&b.destination) {
                                m.entry(b.routing_key.clone()).or_default().push(t);
                            }
                        }
                        Matcher::Direct(m)
                    }
                    ExchangeKind::Fanout => {
                        // A destination bound twice with different keys still gets one copy.
                        let mut seen: HashSet<&Destination> = HashSet::default();
                        let mut ts = Vec::new();
                        for b in bs {
                            if seen.insert(&b.destination) {
                                ts.extend(target(&b.destination));
                            }
                        }
                        Matcher::Fanout(ts)
                    }
                    ExchangeKind::Topic => Matcher::Topic(
                        bs.iter()
                            .filter_map(|b| {
                                let t = target(&b.destination)?;
                                Some((TopicPattern::parse(b.routing_key.bytes()), t))
                            })
                            .collect(),
                    ),
                    ExchangeKind::Headers => Matcher::Headers(
                        bs.iter()
                            .filter_map(|b| {
                                let t = target(&b.destination)?;
                                // Arguments were validated when the binding was made.
                                let hb = HeadersBinding::parse(&b.arguments).ok()?;
                                Some((hb, t))
                            })
                            .collect(),
                    ),
                }
            };
            compiled.insert(
                x.name.clone(),
                Arc::new(ExchangeRoute {
                    name: x.name.clone(),
                    kind: x.kind,
                    internal: x.internal,
                    alternate: x.alternate(),
                    matcher,
                }),
            );
        }
        Snapshot {
            exchanges: compiled,
            queues: queues.clone(),
        }
    }

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
                    matched.extend(m.get(&msg.routing_key).map(Vec::as_slice).unwrap_or(&[]));
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
