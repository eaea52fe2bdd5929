//! Vhosts, exchanges, queues and bindings: RabbitMQ's rules for each, and what goes with
//! what when something is deleted or its node restarts.

use super::*;

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
fn queues_deleted_together_go_only_if_each_is_still_that_queue() {
    let mut t = with_root();
    t.apply(&queue("a", 1, false)).unwrap();
    t.apply(&queue("b", 2, false)).unwrap();
    t.apply(&queue("c", 3, false)).unwrap();
    t.apply(&bind("amq.direct", "a", "k")).unwrap();
    let a = t
        .apply(&Command::DeleteQueues {
            queues: vec![
                ("/".into(), "a".into(), uid(1)),
                // "b" was declared again since (another id): it stays.
                ("/".into(), "b".into(), uid(20)),
                ("/nowhere".into(), "c".into(), uid(3)),
                ("/".into(), "gone".into(), uid(4)),
            ],
        })
        .unwrap();
    let deleted = a
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::QueueDeleted { .. }))
        .count();
    assert_eq!(deleted, 1);
    let v = t.vhost("/").unwrap();
    assert!(v.queue(&"a".into()).is_none());
    assert!(v.queue(&"b".into()).is_some() && v.queue(&"c".into()).is_some());
    assert!(v.bindings().is_empty(), "a's binding went with it");
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
