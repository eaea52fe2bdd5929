//! Replaying commands: the same commands give the same topology on every node, survive
//! serialization, and rebuild it from a snapshot or a RabbitMQ export.

use super::*;

/// A small busy topology, through every kind of command.
fn busy() -> Vec<Command> {
    vec![
        Command::AddVhost { name: "/".into() },
        Command::AddVhost { name: "v2".into() },
        Command::SetClusterName {
            name: "prod".into(),
        },
        Command::AddUser {
            name: "u".into(),
            password: PasswordHash::with_salt([1, 2, 3, 4], "p"),
            tags: vec!["administrator".into()],
        },
        Command::SetPermissions {
            user: "u".into(),
            vhost: "/".into(),
            permissions: Permissions {
                configure: "".into(),
                write: "w.*".into(),
                read: ".*".into(),
            },
        },
        exchange("x", ExchangeKind::Topic, true, false),
        exchange("t", ExchangeKind::Fanout, false, false),
        queue("q1", 1, true),
        queue("q2", 2, false),
        Command::DeclareQueue {
            vhost: "/".into(),
            queue: decl("ex", 3, false, Some(uid(50))),
        },
        bind("x", "q1", "a.#"),
        bind("t", "q2", ""),
        Command::Bind {
            vhost: "/".into(),
            binding: binding("amq.fanout", "ex", ""),
            by: Some(uid(50)),
        },
        Command::Bind {
            vhost: "/".into(),
            binding: Binding {
                destination: Destination::Exchange("t".into()),
                ..binding("x", "", "b.*")
            },
            by: None,
        },
    ]
}

#[test]
fn the_same_commands_give_the_same_topology_and_commands_survive_serialization() {
    let mut a = Topology::new();
    let mut b = Topology::new();
    for c in busy() {
        let json = serde_json::to_string(&c).unwrap();
        let back: Command = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        a.apply(&c).unwrap();
        b.apply(&back).unwrap();
    }
    assert_eq!(a.export(Scope::All), b.export(Scope::All));
}

#[test]
fn a_snapshot_rebuilds_the_same_topology() {
    let mut t = Topology::new();
    for c in busy() {
        t.apply(&c).unwrap();
    }
    let snap = t.export(Scope::All);
    let text = serde_json::to_string(&snap).unwrap();
    // RabbitMQ keeps the cluster's name as a global parameter, and exports it as one.
    assert!(
        text.contains(r#""global_parameters":[{"name":"cluster_name","value":"prod"}]"#),
        "{text}"
    );
    let read: crate::Definitions = serde_json::from_str(&text).unwrap();
    let mut fresh = Topology::new();
    let mut n = 1000;
    let cmds = fresh
        .import_commands(&read, HOME, &mut || {
            n += 1;
            uid(n)
        })
        .unwrap();
    for c in &cmds {
        fresh.apply(c).unwrap();
    }
    assert_eq!(fresh.export(Scope::All), snap);
    // The durable export is what RabbitMQ would export: no transient or exclusive queue.
    let durable = t.export(Scope::Durable);
    let names: Vec<&str> = durable.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, vec!["q1"]);
    assert_eq!(durable.bindings.len(), 1);
}

#[test]
fn rabbitmq_definitions_import_with_fresh_ids_on_this_node() {
    let json = r#"{
      "users": [{"name": "guest", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR", "tags": ["administrator"]}],
      "vhosts": [{"name": "/"}],
      "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
      "queues": [{"name": "q1", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {"x-queue-type": "classic"}}],
      "exchanges": [{"name": "x1", "vhost": "/", "type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}],
      "bindings": [{"source": "x1", "vhost": "/", "destination": "q1", "destination_type": "queue", "routing_key": "a.#", "arguments": {}}]
    }"#;
    let defs: crate::Definitions = serde_json::from_str(json).unwrap();
    let mut t = Topology::new();
    let cmds = t.import_commands(&defs, HOME, &mut || uid(5)).unwrap();
    for c in &cmds {
        t.apply(c).unwrap();
    }
    let v = t.vhost("/").unwrap();
    let q = v.queue(&"q1".into()).unwrap();
    assert_eq!((q.id, q.home, q.durable), (uid(5), HOME, true));
    assert_eq!(v.bindings().from_source(&"x1".into()).len(), 1);
    assert!(t.user("guest").unwrap().password.verify("test12"));
    assert!(t.permissions("guest", "/").is_some());
}

fn arbitrary_command() -> impl Strategy<Value = Command> {
    let name = prop::sample::select(vec!["a", "b", "c", "amq.x", ""]);
    let kind = prop::sample::select(vec![
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
    ]);
    prop_oneof![
        (name.clone(), kind, any::<bool>(), any::<bool>())
            .prop_map(|(n, k, d, a)| exchange(n, k, d, a)),
        (
            name.clone(),
            1u64..4,
            any::<bool>(),
            prop::option::of(1u64..3)
        )
            .prop_map(|(n, id, d, o)| {
                Command::DeclareQueue {
                    vhost: "/".into(),
                    queue: decl(n, id, d, o.map(uid)),
                }
            }),
        (name.clone(), 1u64..4).prop_map(|(n, id)| Command::DeleteQueue {
            vhost: "/".into(),
            name: n.into(),
            id: uid(id)
        }),
        (name.clone(), any::<bool>()).prop_map(|(n, u)| Command::DeleteExchange {
            vhost: "/".into(),
            name: n.into(),
            if_unused: u
        }),
        (
            name.clone(),
            name.clone(),
            name.clone(),
            prop::option::of(1u64..3)
        )
            .prop_map(|(s, q, k, by)| {
                Command::Bind {
                    vhost: "/".into(),
                    binding: binding(s, q, k),
                    by: by.map(uid),
                }
            }),
        (name.clone(), name.clone(), name, prop::option::of(1u64..3)).prop_map(|(s, q, k, by)| {
            Command::Unbind {
                vhost: "/".into(),
                binding: binding(s, q, k),
                by: by.map(uid),
            }
        }),
    ]
}

proptest! {
    /// Any sequence of commands, applied on two nodes, leaves them identical; a refused
    /// command leaves the topology as it was; every binding has both of its ends.
    #[test]
    fn apply_is_deterministic_and_refusals_change_nothing(cmds in prop::collection::vec(arbitrary_command(), 1..40)) {
        let mut a = with_root();
        let mut b = with_root();
        for c in &cmds {
            let before = a.export(Scope::All);
            let ra = a.apply(c);
            let rb = b.apply(c);
            prop_assert_eq!(ra.is_ok(), rb.is_ok());
            if ra.is_err() {
                prop_assert_eq!(a.export(Scope::All), before);
            }
        }
        prop_assert_eq!(a.export(Scope::All), b.export(Scope::All));
        let v = a.vhost("/").unwrap();
        for bd in v.bindings().iter() {
            prop_assert!(v.exchange(&bd.source).is_some());
            match &bd.destination {
                Destination::Queue(q) => prop_assert!(v.queue(q).is_some()),
                Destination::Exchange(x) => prop_assert!(v.exchange(x).is_some()),
            }
        }
    }
}
