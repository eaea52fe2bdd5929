//! The topology core, driven through commands only, as a replicated log would drive it.

use crate::command::{Command, Effect, QueueDeclaration};
use crate::ids::{ConnId, NodeId, Uid};
use crate::model::{Binding, Destination, Exchange, ExchangeKind, Permissions, Policy};
use crate::password::PasswordHash;
use crate::snapshot::Scope;
use crate::topology::Topology;
use proptest::prelude::*;
use warren_amqp::{FieldTable, FieldValue};

const HOME: NodeId = NodeId(7);

fn uid(n: u64) -> Uid {
    Uid { node: HOME, n }
}

fn with_root() -> Topology {
    let mut t = Topology::new();
    t.apply(&Command::AddVhost { name: "/".into() }).unwrap();
    t
}

fn exchange(name: &str, kind: ExchangeKind, durable: bool, auto_delete: bool) -> Command {
    Command::DeclareExchange {
        vhost: "/".into(),
        exchange: Exchange {
            name: name.into(),
            kind,
            durable,
            auto_delete,
            internal: false,
            arguments: FieldTable::new(),
        },
    }
}

fn decl(name: &str, id: u64, durable: bool, owner: Option<ConnId>) -> QueueDeclaration {
    QueueDeclaration {
        name: name.into(),
        id: uid(id),
        durable,
        auto_delete: false,
        exclusive_owner: owner,
        arguments: FieldTable::new(),
        home: HOME,
    }
}

fn queue(name: &str, id: u64, durable: bool) -> Command {
    Command::DeclareQueue {
        vhost: "/".into(),
        queue: decl(name, id, durable, None),
    }
}

fn binding(source: &str, queue: &str, key: &str) -> Binding {
    Binding {
        source: source.into(),
        destination: Destination::Queue(queue.into()),
        routing_key: key.into(),
        arguments: FieldTable::new(),
    }
}

fn bind(source: &str, queue: &str, key: &str) -> Command {
    Command::Bind {
        vhost: "/".into(),
        binding: binding(source, queue, key),
        by: None,
    }
}

fn refused(t: &mut Topology, c: &Command) -> String {
    let before = t.export(Scope::All);
    let e = t.apply(c).unwrap_err().reply_text();
    assert_eq!(
        t.export(Scope::All),
        before,
        "a refused command changes nothing"
    );
    e
}

#[test]
fn a_new_vhost_has_the_builtin_exchanges_and_adding_it_again_changes_nothing() {
    let mut t = with_root();
    let v = t.vhost("/").unwrap();
    for n in [
        "",
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        assert!(v.exchange(&n.into()).is_some(), "{n}");
    }
    assert!(v.exchange(&"amq.rabbitmq.trace".into()).unwrap().internal);
    assert!(
        t.apply(&Command::AddVhost { name: "/".into() })
            .unwrap()
            .is_unchanged()
    );
    assert!(
        t.export(Scope::Durable).exchanges.is_empty(),
        "built-ins are not exported"
    );
}

#[test]
fn exchanges_follow_rabbitmq_declaration_rules() {
    let mut t = with_root();
    let a = t
        .apply(&exchange("x", ExchangeKind::Topic, true, false))
        .unwrap();
    assert!(a.durable);
    assert!(matches!(&a.effects[..], [Effect::ExchangeAdded { .. }]));
    assert!(
        t.apply(&exchange("x", ExchangeKind::Topic, true, false))
            .unwrap()
            .is_unchanged()
    );
    assert_eq!(
        refused(&mut t, &exchange("x", ExchangeKind::Direct, true, false)),
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': received 'direct' but current is 'topic'"
    );
    assert_eq!(
        refused(&mut t, &exchange("x", ExchangeKind::Topic, false, false)),
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'x' in vhost '/': received 'false' but current is 'true'"
    );
    assert_eq!(
        refused(
            &mut t,
            &exchange("amq.mine", ExchangeKind::Topic, true, false)
        ),
        "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'"
    );
    assert_eq!(
        refused(&mut t, &exchange("", ExchangeKind::Direct, true, false)),
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
    let mut bad_ae = exchange("y", ExchangeKind::Fanout, false, false);
    if let Command::DeclareExchange { exchange, .. } = &mut bad_ae {
        exchange.arguments = FieldTable::new().with("alternate-exchange", FieldValue::I32(1));
    }
    assert_eq!(
        refused(&mut t, &bad_ae),
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange 'y' in vhost '/'"
    );
    let mut elsewhere = exchange("x", ExchangeKind::Topic, true, false);
    if let Command::DeclareExchange { vhost, .. } = &mut elsewhere {
        *vhost = "nope".into();
    }
    assert_eq!(
        refused(&mut t, &elsewhere),
        "NOT_FOUND - vhost 'nope' not found"
    );
}

#[test]
fn deleting_exchanges() {
    let mut t = with_root();
    let del = |name: &str, if_unused| Command::DeleteExchange {
        vhost: "/".into(),
        name: name.into(),
        if_unused,
    };
    assert_eq!(
        refused(&mut t, &del("", false)),
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
    assert_eq!(
        refused(&mut t, &del("amq.direct", false)),
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"
    );
    assert!(t.apply(&del("missing", false)).unwrap().is_unchanged());
    t.apply(&exchange("x", ExchangeKind::Direct, true, false))
        .unwrap();
    t.apply(&queue("q", 1, true)).unwrap();
    t.apply(&bind("x", "q", "k")).unwrap();
    assert_eq!(
        refused(&mut t, &del("x", true)),
        "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use"
    );
    let a = t.apply(&del("x", false)).unwrap();
    assert!(a.durable);
    assert!(a.effects.contains(&Effect::BindingRemoved {
        vhost: "/".into(),
        binding: binding("x", "q", "k")
    }));
    assert!(t.vhost("/").unwrap().bindings().is_empty());
}

#[test]
fn queues_follow_rabbitmq_declaration_rules() {
    let mut t = with_root();
    let a = t.apply(&queue("q", 1, true)).unwrap();
    assert!(a.durable);
    let added = match &a.effects[..] {
        [Effect::QueueAdded { queue, .. }] => queue.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!((added.id, added.home), (uid(1), HOME));
    // An equivalent redeclaration (with another proposed id) changes nothing.
    assert!(t.apply(&queue("q", 2, true)).unwrap().is_unchanged());
    assert_eq!(t.vhost("/").unwrap().queue(&"q".into()).unwrap().id, uid(1));
    assert_eq!(
        refused(&mut t, &queue("q", 3, false)),
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': received 'false' but current is 'true'"
    );
    let mut ttl = queue("q", 4, true);
    if let Command::DeclareQueue { queue, .. } = &mut ttl {
        queue.arguments = FieldTable::new().with("x-message-ttl", FieldValue::I32(5));
    }
    assert_eq!(
        refused(&mut t, &ttl),
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received the value '5' of type 'signedint' but current is none"
    );
    let mut bad = queue("r", 5, true);
    if let Command::DeclareQueue { queue, .. } = &mut bad {
        queue.arguments = FieldTable::new().with("x-max-length", FieldValue::I32(-1));
    }
    assert_eq!(
        refused(&mut t, &bad),
        "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'r' in vhost '/': {value_negative,-1}"
    );
}

#[test]
fn exclusive_queues_belong_to_their_connection_and_are_never_durable() {
    let mut t = with_root();
    let (me, other) = (uid(100), uid(200));
    let mine = Command::DeclareQueue {
        vhost: "/".into(),
        queue: decl("ex", 1, true, Some(me)),
    };
    let a = t.apply(&mine).unwrap();
    assert!(!a.durable, "exclusive queues are never durable");
    assert!(
        t.apply(&mine).unwrap().is_unchanged(),
        "the owner may redeclare"
    );
    let theirs = Command::DeclareQueue {
        vhost: "/".into(),
        queue: decl("ex", 2, true, Some(other)),
    };
    assert!(refused(&mut t, &theirs).starts_with(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'ex' in vhost '/'"
    ));
    let v = t.vhost("/").unwrap();
    let q = v.queue(&"ex".into()).unwrap();
    assert!(q.check_exclusive("/", Some(me)).is_ok());
    assert!(
        q.check_exclusive("/", Some(other))
            .unwrap_err()
            .reply_text()
            .starts_with(
                "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'ex' in vhost '/'"
            )
    );
    assert_eq!(q.check_exclusive("/", None).unwrap_err().code, 405);
    let by_other = Command::Bind {
        vhost: "/".into(),
        binding: binding("amq.direct", "ex", "k"),
        by: Some(other),
    };
    assert_eq!(
        refused(&mut t, &by_other).split(' ').next(),
        Some("RESOURCE_LOCKED")
    );
    assert!(t.export(Scope::Durable).queues.is_empty());
    assert_eq!(t.export(Scope::All).queues.len(), 1, "a snapshot keeps it");
}

#[test]
fn bindings_are_checked_and_durable_only_when_both_ends_are() {
    let mut t = with_root();
    assert_eq!(
        refused(&mut t, &bind("x", "q", "k")),
        "NOT_FOUND - no exchange 'x' in vhost '/'"
    );
    t.apply(&exchange("x", ExchangeKind::Direct, true, false))
        .unwrap();
    assert_eq!(
        refused(&mut t, &bind("x", "q", "k")),
        "NOT_FOUND - no queue 'q' in vhost '/'"
    );
    assert_eq!(
        refused(&mut t, &bind("", "q", "k")),
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
    t.apply(&queue("q", 1, true)).unwrap();
    t.apply(&queue("t", 2, false)).unwrap();
    assert!(t.apply(&bind("x", "q", "k")).unwrap().durable);
    assert!(!t.apply(&bind("x", "t", "k")).unwrap().durable);
    assert!(t.apply(&bind("x", "q", "k")).unwrap().is_unchanged());
    let to_missing_exchange = Command::Bind {
        vhost: "/".into(),
        binding: Binding {
            destination: Destination::Exchange("nope".into()),
            ..binding("x", "q", "k")
        },
        by: None,
    };
    assert_eq!(
        refused(&mut t, &to_missing_exchange),
        "NOT_FOUND - no exchange 'nope' in vhost '/'"
    );
    let headers = Command::Bind {
        vhost: "/".into(),
        binding: Binding {
            arguments: FieldTable::new().with("x-match", "some"),
            ..binding("amq.headers", "q", "")
        },
        by: None,
    };
    assert!(
        refused(&mut t, &headers).starts_with("PRECONDITION_FAILED - Invalid x-match field value")
    );
    assert_eq!(t.export(Scope::Durable).bindings.len(), 1);
}

#[test]
fn auto_delete_exchanges_go_with_their_last_binding() {
    let mut t = with_root();
    t.apply(&exchange("auto", ExchangeKind::Fanout, false, true))
        .unwrap();
    t.apply(&queue("a", 1, false)).unwrap();
    t.apply(&queue("b", 2, false)).unwrap();
    t.apply(&bind("auto", "a", "")).unwrap();
    t.apply(&bind("auto", "b", "")).unwrap();
    let unbind = Command::Unbind {
        vhost: "/".into(),
        binding: binding("auto", "a", ""),
        by: None,
    };
    t.apply(&unbind).unwrap();
    assert!(t.vhost("/").unwrap().exchange(&"auto".into()).is_some());
    assert!(
        t.apply(&unbind).unwrap().is_unchanged(),
        "unbinding what is not bound"
    );
    // Deleting the last bound queue takes the exchange too.
    let a = t
        .apply(&Command::DeleteQueue {
            vhost: "/".into(),
            name: "b".into(),
            id: uid(2),
        })
        .unwrap();
    assert!(a.effects.iter().any(|e| matches!(e, Effect::ExchangeDeleted { exchange, .. } if exchange.name.as_bytes() == b"auto")));
    assert!(
        a.effects
            .iter()
            .any(|e| matches!(e, Effect::QueueDeleted { .. }))
    );
    assert!(t.vhost("/").unwrap().exchange(&"auto".into()).is_none());
}

#[test]
fn a_queue_is_deleted_only_if_it_is_still_the_same_queue() {
    let mut t = with_root();
    t.apply(&queue("q", 1, true)).unwrap();
    let stale = Command::DeleteQueue {
        vhost: "/".into(),
        name: "q".into(),
        id: uid(99),
    };
    assert!(t.apply(&stale).unwrap().is_unchanged());
    let a = t
        .apply(&Command::DeleteQueue {
            vhost: "/".into(),
            name: "q".into(),
            id: uid(1),
        })
        .unwrap();
    assert!(a.durable);
    assert!(t.vhost("/").unwrap().queue(&"q".into()).is_none());
}

#[test]
fn users_permissions_and_vhosts() {
    let mut t = with_root();
    let add = Command::AddUser {
        name: "bob".into(),
        password: PasswordHash::new("pw"),
        tags: vec![],
    };
    t.apply(&add).unwrap();
    assert_eq!(
        refused(&mut t, &add),
        "PRECONDITION_FAILED - user 'bob' already exists"
    );
    t.apply(&Command::ChangePassword {
        name: "bob".into(),
        password: PasswordHash::new("new"),
    })
    .unwrap();
    assert!(t.user("bob").unwrap().password.verify("new"));
    t.apply(&Command::SetUserTags {
        name: "bob".into(),
        tags: vec!["monitoring".into()],
    })
    .unwrap();
    assert_eq!(t.user("bob").unwrap().tags, vec!["monitoring".to_string()]);
    let all = Permissions {
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    };
    let set = |user: &str, vhost: &str| Command::SetPermissions {
        user: user.into(),
        vhost: vhost.into(),
        permissions: all.clone(),
    };
    assert_eq!(
        refused(&mut t, &set("nobody", "/")),
        "NOT_FOUND - user 'nobody' not found"
    );
    assert_eq!(
        refused(&mut t, &set("bob", "/x")),
        "NOT_FOUND - vhost '/x' not found"
    );
    t.apply(&Command::AddVhost { name: "/x".into() }).unwrap();
    t.apply(&set("bob", "/")).unwrap();
    t.apply(&set("bob", "/x")).unwrap();
    assert_eq!(t.permissions("bob", "/"), Some(&all));
    // Deleting a vhost takes its queues (for the node to stop) and its permissions.
    let mut in_x = queue("qx", 9, true);
    if let Command::DeclareQueue { vhost, .. } = &mut in_x {
        *vhost = "/x".into();
    }
    t.apply(&in_x).unwrap();
    let a = t
        .apply(&Command::DeleteVhost { name: "/x".into() })
        .unwrap();
    assert!(
        a.effects
            .iter()
            .any(|e| matches!(e, Effect::QueueDeleted { queue, .. } if queue.id == uid(9)))
    );
    assert!(t.permissions("bob", "/x").is_none());
    assert_eq!(
        refused(&mut t, &Command::DeleteVhost { name: "/x".into() }),
        "NOT_FOUND - vhost '/x' not found"
    );
    t.apply(&Command::DeleteUser { name: "bob".into() })
        .unwrap();
    assert!(t.permissions("bob", "/").is_none() && t.user("bob").is_none());
}

#[test]
fn policies_are_validated() {
    let mut t = with_root();
    let policy = |apply_to: &str, definition: &str| Command::SetPolicy {
        vhost: "/".into(),
        policy: Policy {
            name: "p".into(),
            pattern: "^q".into(),
            apply_to: apply_to.into(),
            definition: definition.into(),
            priority: 0,
        },
    };
    assert!(refused(&mut t, &policy("things", "{}")).contains("not a valid apply-to value"));
    assert!(refused(&mut t, &policy("queues", "[1]")).contains("must be a JSON object"));
    t.apply(&policy("queues", r#"{"max-length": 10}"#)).unwrap();
    assert_eq!(
        t.export(Scope::Durable).policies[0].definition["max-length"],
        10
    );
    let clear = Command::ClearPolicy {
        vhost: "/".into(),
        name: "p".into(),
    };
    t.apply(&clear).unwrap();
    assert_eq!(
        refused(&mut t, &clear),
        "NOT_FOUND - policy 'p' in vhost '/' not found"
    );
}

/// A small busy topology, through every kind of command.
fn busy() -> Vec<Command> {
    vec![
        Command::AddVhost { name: "/".into() },
        Command::AddVhost { name: "v2".into() },
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

#[test]
fn a_restarted_node_forgets_only_its_own_transient_and_exclusive_queues() {
    let mut t = with_root();
    let other = NodeId(8);
    t.apply(&queue("durable", 1, true)).unwrap();
    t.apply(&queue("transient", 2, false)).unwrap();
    t.apply(&Command::DeclareQueue {
        vhost: "/".into(),
        queue: decl("exclusive", 3, false, Some(uid(100))),
    })
    .unwrap();
    t.apply(&Command::DeclareQueue {
        vhost: "/".into(),
        queue: QueueDeclaration {
            home: other,
            ..decl("elsewhere", 4, false, None)
        },
    })
    .unwrap();
    t.apply(&exchange("fleeting", ExchangeKind::Direct, false, false))
        .unwrap();
    t.apply(&bind("amq.direct", "transient", "k")).unwrap();
    let a = t
        .apply(&Command::ForgetTransient {
            home: HOME,
            exchanges: false,
        })
        .unwrap();
    let gone: Vec<&str> = a
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::QueueDeleted { queue, .. } => std::str::from_utf8(queue.name.as_bytes()).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(gone, ["exclusive", "transient"]);
    let v = t.vhost("/").unwrap();
    assert!(v.queue(&"durable".into()).is_some());
    assert!(
        v.queue(&"elsewhere".into()).is_some(),
        "another node's queue stays"
    );
    assert!(
        v.bindings().is_empty(),
        "the bindings went with their queue"
    );
    assert!(v.exchange(&"fleeting".into()).is_some());
    // The whole cluster restarted: transient exchanges go too.
    t.apply(&Command::ForgetTransient {
        home: HOME,
        exchanges: true,
    })
    .unwrap();
    assert!(t.vhost("/").unwrap().exchange(&"fleeting".into()).is_none());
    assert!(
        t.vhost("/")
            .unwrap()
            .exchange(&"amq.direct".into())
            .is_some()
    );
}
