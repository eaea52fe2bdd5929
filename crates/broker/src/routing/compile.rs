//! Compiling the topology into a routing [`Snapshot`]: whole for a new vhost or at start-up,
//! and otherwise from the previous snapshot, redoing only what a change touched. A queue
//! declared or deleted changes one shard of the queue map; a binding changes its exchange (for
//! a direct exchange, only its routing key's entry). So the cost of a change does not grow with
//! the number of queues, and a binding's cost grows only with its own exchange's bindings.

use super::sharded::Sharded;
use super::topic::TopicPattern;
use super::{ExchangeRoute, Matcher, Snapshot, Target};
use crate::queue::QueueHandle;
use foldhash::{HashMap, HashSet};
use std::sync::Arc;
use warren_amqp::ShortStr;
use warren_meta::headers::HeadersBinding;
use warren_meta::{Binding, Destination, Exchange, ExchangeKind, Vhost};

/// What a batch of topology changes touched in one vhost's routing.
#[derive(Debug, Default)]
pub struct Changes {
    /// Everything: a new vhost, or the start-up.
    pub all: bool,
    /// Exchanges added, deleted, or whose bindings changed (direct exchanges excepted).
    pub exchanges: Vec<ShortStr>,
    /// Bindings added (true) or removed (false), in order; a direct exchange takes them one
    /// by one, other kinds are compiled again.
    pub bindings: Vec<(Binding, bool)>,
    /// Queues started or stopped.
    pub queues: Vec<ShortStr>,
}

impl Changes {
    /// Notes a binding added (`added`) or removed.
    pub fn binding(&mut self, b: &Binding, added: bool) {
        self.bindings.push((b.clone(), added));
    }
}

/// Running queues by name, as the vhost holds them.
type Handles = HashMap<ShortStr, QueueHandle>;

fn target(d: &Destination, queues: &Handles) -> Option<Target> {
    match d {
        Destination::Queue(q) => queues.get(q).cloned().map(Target::Queue),
        Destination::Exchange(x) => Some(Target::Exchange(x.clone())),
    }
}

fn compile(x: &Exchange, bs: &[Binding], queues: &Handles) -> ExchangeRoute {
    let matcher = if x.name.is_empty() {
        Matcher::Default
    } else {
        match x.kind {
            ExchangeKind::Direct => {
                let mut by_key: HashMap<&ShortStr, Vec<Target>> = HashMap::default();
                for b in bs {
                    if let Some(t) = target(&b.destination, queues) {
                        by_key.entry(&b.routing_key).or_default().push(t);
                    }
                }
                let mut m = Sharded::default();
                for (k, ts) in by_key {
                    m.insert(k.clone(), Arc::from(ts));
                }
                Matcher::Direct(m)
            }
            ExchangeKind::Fanout => {
                // A destination bound twice with different keys still gets one copy.
                let mut seen: HashSet<&Destination> = HashSet::default();
                let mut ts = Vec::new();
                for b in bs {
                    if seen.insert(&b.destination) {
                        ts.extend(target(&b.destination, queues));
                    }
                }
                Matcher::Fanout(ts)
            }
            ExchangeKind::Topic => Matcher::Topic(
                bs.iter()
                    .filter_map(|b| {
                        let t = target(&b.destination, queues)?;
                        Some((TopicPattern::parse(b.routing_key.bytes()), t))
                    })
                    .collect(),
            ),
            ExchangeKind::Headers => Matcher::Headers(
                bs.iter()
                    .filter_map(|b| {
                        let t = target(&b.destination, queues)?;
                        // Arguments were validated when the binding was made.
                        let hb = HeadersBinding::parse(&b.arguments).ok()?;
                        Some((hb, t))
                    })
                    .collect(),
            ),
        }
    };
    ExchangeRoute {
        name: x.name.clone(),
        kind: x.kind,
        internal: x.internal,
        alternate: x.alternate(),
        matcher,
    }
}

impl Snapshot {
    /// Compiles a vhost's exchanges and bindings, with the handles of its running queues.
    /// Bindings whose destination queue has no handle are skipped.
    pub fn build(vhost: &Vhost, queues: &Handles) -> Snapshot {
        let mut s = Snapshot::default();
        for x in vhost.exchanges() {
            let bs = vhost.bindings().from_source(&x.name);
            s.exchanges
                .insert(x.name.clone(), Arc::new(compile(x, bs, queues)));
        }
        for (name, h) in queues {
            s.queues.insert(name.clone(), h.clone());
        }
        s
    }

    /// The snapshot after `changes`, made from this one.
    pub fn update(&self, vhost: &Vhost, queues: &Handles, changes: &Changes) -> Snapshot {
        if changes.all {
            return Snapshot::build(vhost, queues);
        }
        let mut s = self.clone();
        for name in &changes.queues {
            match queues.get(name) {
                Some(h) => s.queues.insert(name.clone(), h.clone()),
                None => s.queues.remove(name),
            }
        }
        let mut redone: Vec<&ShortStr> = Vec::new();
        for name in &changes.exchanges {
            if redone.contains(&name) {
                continue;
            }
            redone.push(name);
            match vhost.exchange(name) {
                Some(x) => {
                    let bs = vhost.bindings().from_source(name);
                    s.exchanges
                        .insert(name.clone(), Arc::new(compile(x, bs, queues)));
                }
                None => s.exchanges.remove(name),
            }
        }
        for (b, added) in &changes.bindings {
            let source = &b.source;
            if redone.contains(&source) {
                continue;
            }
            let Some(x) = vhost.exchange(source) else {
                s.exchanges.remove(source);
                continue;
            };
            let route = match s.exchanges.get(source).map(|r| (&r.matcher, r)) {
                // One binding is one target under its routing key, as `compile` makes them.
                Some((Matcher::Direct(m), r)) if x.kind == ExchangeKind::Direct => {
                    let mut m = m.clone();
                    let mut ts: Vec<Target> = m
                        .get(&b.routing_key)
                        .map(|ts| ts.to_vec())
                        .unwrap_or_default();
                    if *added {
                        // A queue not running here has no target to add.
                        ts.extend(target(&b.destination, queues));
                    } else if let Some(at) = ts.iter().position(|t| t.is(&b.destination)) {
                        ts.remove(at);
                    }
                    if ts.is_empty() {
                        m.remove(&b.routing_key);
                    } else {
                        m.insert(b.routing_key.clone(), Arc::from(ts));
                    }
                    ExchangeRoute {
                        name: r.name.clone(),
                        kind: r.kind,
                        internal: r.internal,
                        alternate: r.alternate.clone(),
                        matcher: Matcher::Direct(m),
                    }
                }
                // Another kind of exchange: compiled again whole, once.
                _ => {
                    redone.push(source);
                    compile(x, vhost.bindings().from_source(source), queues)
                }
            };
            s.exchanges.insert(source.clone(), Arc::new(route));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Body, Message};
    use crate::queue::{self, QueueDisk};
    use warren_amqp::{FieldTable, RawProperties};
    use warren_meta::{Applied, Command, Effect, NodeId, QueueDeclaration, Topology, Uid};

    fn exchange(name: &str, kind: ExchangeKind) -> Command {
        Command::DeclareExchange {
            vhost: "/".into(),
            exchange: Exchange {
                name: name.into(),
                kind,
                durable: false,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::new(),
            },
        }
    }

    fn queue(name: &str, n: u64) -> Command {
        Command::DeclareQueue {
            vhost: "/".into(),
            queue: QueueDeclaration {
                name: name.into(),
                id: Uid { node: NodeId(1), n },
                durable: false,
                auto_delete: false,
                exclusive_owner: None,
                arguments: FieldTable::new(),
                home: NodeId(1),
            },
        }
    }

    fn binding(source: &str, dest: Destination, key: &str) -> Binding {
        Binding {
            source: source.into(),
            destination: dest,
            routing_key: key.into(),
            arguments: FieldTable::new(),
        }
    }

    fn routed(s: &Snapshot, exchange: &str, key: &str) -> Vec<String> {
        let Some(x) = s.exchange(&exchange.into()) else {
            return vec!["<no exchange>".into()];
        };
        let m = Message {
            exchange: exchange.into(),
            routing_key: key.into(),
            properties: RawProperties::empty(),
            body: Body::new(),
        };
        let mut out = Vec::new();
        s.route(x, &m, &mut out);
        let mut names: Vec<String> = out.iter().map(|q| q.name().to_string()).collect();
        names.sort();
        names
    }

    /// Applies commands one by one, updating a snapshot from each change as the node does, and
    /// checks after each that it routes exactly as a snapshot compiled whole would.
    #[tokio::test]
    async fn updating_a_snapshot_routes_as_compiling_it_whole() {
        let dir = std::env::temp_dir().join(format!("warren-routing-{}", std::process::id()));
        let mut t = Topology::new();
        t.apply(&Command::AddVhost { name: "/".into() }).unwrap();
        let mut handles: Handles = HashMap::default();
        let mut snap = Snapshot::build(t.vhost("/").unwrap(), &handles);
        let q = |n: &str| Destination::Queue(n.into());
        let x = |n: &str| Destination::Exchange(n.into());
        let bind = |b| Command::Bind {
            vhost: "/".into(),
            binding: b,
            by: None,
        };
        let unbind = |b| Command::Unbind {
            vhost: "/".into(),
            binding: b,
            by: None,
        };
        let delete_queue = |name: &str, n| Command::DeleteQueue {
            vhost: "/".into(),
            name: name.into(),
            id: Uid { node: NodeId(1), n },
        };
        let steps = vec![
            queue("a", 1),
            queue("b", 2),
            queue("c", 3),
            exchange("d", ExchangeKind::Direct),
            exchange("f", ExchangeKind::Fanout),
            exchange("t", ExchangeKind::Topic),
            bind(binding("d", q("a"), "k1")),
            bind(binding("d", q("b"), "k1")),
            bind(binding("d", q("c"), "k2")),
            bind(binding("f", q("a"), "")),
            bind(binding("t", q("c"), "x.#")),
            bind(binding("d", x("f"), "k3")),
            bind(binding("amq.direct", q("a"), "a")),
            unbind(binding("d", q("b"), "k1")),
            delete_queue("c", 3),
            queue("c", 4),
            bind(binding("d", q("c"), "k1")),
            Command::DeleteExchange {
                vhost: "/".into(),
                name: "f".into(),
                if_unused: false,
            },
            exchange("f", ExchangeKind::Topic),
            bind(binding("f", q("b"), "k3")),
        ];
        let probes = [
            ("", "a"),
            ("", "c"),
            ("d", "k1"),
            ("d", "k2"),
            ("d", "k3"),
            ("f", "k3"),
            ("t", "x.y"),
            ("amq.direct", "a"),
        ];
        for (i, cmd) in steps.iter().enumerate() {
            let Applied { effects, .. } = t.apply(cmd).unwrap();
            let mut changes = Changes::default();
            for e in &effects {
                match e {
                    Effect::QueueAdded { queue, .. } => {
                        let start = queue::empty(QueueDisk {
                            dir: dir.join(queue.name.to_string()),
                            segment_bytes: 1 << 20,
                            memory_bytes: 1 << 20,
                        });
                        let around = queue::Surroundings {
                            on_remove: Arc::new(|_: &ShortStr, _| {}),
                            dead_letters: crate::queue::DeadLetterSink::nowhere(),
                            post: Default::default(),
                            confirms_to: Uid {
                                node: NodeId(1),
                                n: 0,
                            },
                        };
                        let q = queue::spawn("/", queue.clone(), start, around);
                        handles.insert(queue.name.clone(), q);
                        changes.queues.push(queue.name.clone());
                    }
                    Effect::QueueDeleted { queue, .. } => {
                        handles.remove(&queue.name);
                        changes.queues.push(queue.name.clone());
                    }
                    Effect::ExchangeAdded { exchange, .. }
                    | Effect::ExchangeDeleted { exchange, .. } => {
                        changes.exchanges.push(exchange.name.clone())
                    }
                    Effect::BindingAdded { binding, .. } => changes.binding(binding, true),
                    Effect::BindingRemoved { binding, .. } => changes.binding(binding, false),
                    _ => {}
                }
            }
            let v = t.vhost("/").unwrap();
            snap = snap.update(v, &handles, &changes);
            let whole = Snapshot::build(v, &handles);
            for (ex, key) in probes {
                assert_eq!(
                    routed(&snap, ex, key),
                    routed(&whole, ex, key),
                    "after step {i} ({cmd:?}), publishing to '{ex}' with '{key}'"
                );
            }
        }
        // And the routes themselves are what the steps made.
        assert_eq!(routed(&snap, "d", "k1"), vec!["a", "c"]);
        assert!(
            routed(&snap, "d", "k3").is_empty(),
            "the binding to f went with the old f"
        );
        assert_eq!(
            routed(&snap, "f", "k3"),
            vec!["b"],
            "f, now a topic exchange"
        );
        assert_eq!(routed(&snap, "", "c"), vec!["c"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
