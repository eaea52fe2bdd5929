//! Routing: where a published message goes.
//!
//! A vhost's exchanges and bindings are compiled into an immutable [`Snapshot`] that is
//! swapped whole when the topology changes. Publishers read the current snapshot without
//! taking any lock, and routing is a pure function of the snapshot and the message.

pub mod headers;
pub mod topic;

use crate::message::Message;
use crate::queue::QueueHandle;
use foldhash::HashMap;
use headers::HeadersBinding;
use std::sync::Arc;
use topic::{TopicPattern, split_words};
use warren_amqp::{FieldTable, ShortStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &[u8]) -> Option<ExchangeKind> {
        match s {
            b"direct" => Some(ExchangeKind::Direct),
            b"fanout" => Some(ExchangeKind::Fanout),
            b"topic" => Some(ExchangeKind::Topic),
            b"headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Queue(ShortStr),
    Exchange(ShortStr),
}

impl Destination {
    pub fn name(&self) -> &ShortStr {
        match self {
            Destination::Queue(n) | Destination::Exchange(n) => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub source: ShortStr,
    pub destination: Destination,
    pub routing_key: ShortStr,
    pub arguments: FieldTable,
}

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

/// The parts of an exchange's definition that routing needs.
pub struct ExchangeSpec<'a> {
    pub name: &'a ShortStr,
    pub kind: ExchangeKind,
    pub internal: bool,
    pub alternate: Option<ShortStr>,
    pub is_default: bool,
}

/// Everything needed to route in one vhost, frozen at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    exchanges: HashMap<ShortStr, Arc<ExchangeRoute>>,
    queues: HashMap<ShortStr, QueueHandle>,
}

impl Snapshot {
    /// Compiles exchanges and their bindings. Bindings whose destination queue does not
    /// exist are skipped (they cannot exist, but routing must not depend on it).
    pub fn build<'a>(
        exchanges: impl Iterator<Item = ExchangeSpec<'a>>,
        bindings: &[Binding],
        queues: &HashMap<ShortStr, QueueHandle>,
    ) -> Snapshot {
        let mut by_source: HashMap<&ShortStr, Vec<&Binding>> = HashMap::default();
        for b in bindings {
            by_source.entry(&b.source).or_default().push(b);
        }
        let target = |d: &Destination| -> Option<Target> {
            match d {
                Destination::Queue(q) => queues.get(q).cloned().map(Target::Queue),
                Destination::Exchange(x) => Some(Target::Exchange(x.clone())),
            }
        };
        let mut compiled = HashMap::default();
        for x in exchanges {
            let bs = by_source.get(x.name).map(Vec::as_slice).unwrap_or(&[]);
            let matcher = if x.is_default {
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
                        let mut seen = Vec::new();
                        let mut ts = Vec::new();
                        for b in bs {
                            if !seen.contains(&&b.destination) {
                                seen.push(&b.destination);
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
                    alternate: x.alternate,
                    matcher,
                }),
            );
        }
        Snapshot {
            exchanges: compiled,
            queues: queues.clone(),
        }
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
                        if !out.iter().any(|o| o.id() == q.id()) {
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
