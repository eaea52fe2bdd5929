//! Quorum queues in the topology: declared with their members, refused as RabbitMQ refuses
//! what they may not be, and carried through snapshots with their members.

use super::*;
use crate::QueueType;

const OTHER: NodeId = NodeId(8);

fn quorum_decl(name: &str, id: u64) -> QueueDeclaration {
    let mut d = decl(name, id, true, None);
    d.arguments = FieldTable::new().with("x-queue-type", "quorum");
    d
}

fn quorum(d: QueueDeclaration, members: Vec<NodeId>) -> Command {
    Command::DeclareQuorumQueue {
        vhost: "/".into(),
        queue: d,
        members,
    }
}

/// `t` exported as a snapshot and imported into a fresh topology.
fn through_snapshot(t: &Topology) -> Topology {
    let mut again = Topology::new();
    for c in again
        .import_commands(&t.export(Scope::All), HOME, &mut || uid(99))
        .unwrap()
    {
        again.apply(&c).unwrap();
    }
    again
}

#[test]
fn a_quorum_queue_keeps_its_members_through_a_snapshot() {
    let mut t = with_root();
    let a = t
        .apply(&quorum(quorum_decl("qq", 1), vec![HOME, OTHER]))
        .unwrap();
    assert!(a.durable);
    let added = match &a.effects[..] {
        [Effect::QueueAdded { queue, .. }] => queue.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(added.kind, QueueType::Quorum);
    assert_eq!(added.members, [HOME, OTHER]);
    // A plain declaration of the same queue is equivalent and changes nothing.
    assert!(
        t.apply(&Command::DeclareQueue {
            vhost: "/".into(),
            queue: quorum_decl("qq", 2),
        })
        .unwrap()
        .is_unchanged()
    );
    // Redeclared as a classic queue: refused, as RabbitMQ refuses a change of type.
    let mut classic = quorum_decl("qq", 3);
    classic.arguments = FieldTable::new().with("x-queue-type", "classic");
    let text = refused(
        &mut t,
        &Command::DeclareQueue {
            vhost: "/".into(),
            queue: classic,
        },
    );
    assert!(
        text.starts_with("PRECONDITION_FAILED - inequivalent arg 'x-queue-type'"),
        "{text}"
    );
    let q = through_snapshot(&t)
        .vhost("/")
        .unwrap()
        .queue(&"qq".into())
        .unwrap()
        .clone();
    assert_eq!(
        (q.kind, q.members, q.id),
        (QueueType::Quorum, vec![HOME, OTHER], uid(1))
    );
}

#[test]
fn what_a_quorum_queue_may_not_be_is_refused() {
    let mut t = with_root();
    type Change = fn(&mut QueueDeclaration);
    let cases: [(Change, &str); 9] = [
        (
            |d| d.durable = false,
            "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'q' in vhost '/'",
        ),
        (
            |d| d.auto_delete = true,
            "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 'q' in vhost '/'",
        ),
        (
            |d| d.exclusive_owner = Some(uid(50)),
            "PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 'q' in vhost '/'",
        ),
        (
            |d| d.arguments.insert("x-max-priority", FieldValue::I32(5)),
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue",
        ),
        (
            |d| {
                d.arguments
                    .insert("x-quorum-initial-group-size", FieldValue::I32(0))
            },
            "PRECONDITION_FAILED - invalid arg 'x-quorum-initial-group-size' for queue 'q' in vhost '/': {value_zero,0}",
        ),
        (
            |d| d.arguments.insert("x-dead-letter-strategy", "bogus".into()),
            "PRECONDITION_FAILED - invalid arg 'x-dead-letter-strategy' for queue 'q' in vhost '/': invalid_dlx_strategy",
        ),
        (
            // The first not taken, in the client's order; values before keys.
            |d| {
                d.arguments.insert("x-queue-mode", "lazy".into());
                d.arguments.insert("x-max-priority", FieldValue::I32(5));
            },
            "PRECONDITION_FAILED - invalid arg 'x-queue-mode' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue",
        ),
        (
            |d| {
                d.arguments.insert("x-max-priority", FieldValue::I32(5));
                d.arguments
                    .insert("x-quorum-initial-group-size", FieldValue::I32(0));
            },
            "PRECONDITION_FAILED - invalid arg 'x-quorum-initial-group-size' for queue 'q' in vhost '/': {value_zero,0}",
        ),
        (
            // An exclusive queue is never durable, but its exclusivity is what is named.
            |d| {
                d.exclusive_owner = Some(uid(50));
                d.durable = false;
            },
            "PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 'q' in vhost '/'",
        ),
    ];
    for (change, text) in cases {
        let mut d = quorum_decl("q", 1);
        change(&mut d);
        assert_eq!(refused(&mut t, &quorum(d, vec![HOME])), text);
    }
    // Limits it does take are read; RabbitMQ does not validate x-delivery-limit: below zero
    // it is zero, and what is not an integer is no limit.
    for (limit, read) in [
        (FieldValue::I32(3), Some(3)),
        (FieldValue::I32(-1), Some(0)),
        ("abc".into(), None),
    ] {
        let mut t = with_root();
        let mut d = quorum_decl("q", 1);
        d.arguments.insert("x-delivery-limit", limit);
        d.arguments
            .insert("x-quorum-initial-group-size", FieldValue::I32(5));
        t.apply(&quorum(d, vec![HOME])).unwrap();
        let q = t.vhost("/").unwrap().queue(&"q".into()).unwrap();
        assert_eq!(
            (q.args.delivery_limit, q.args.initial_group_size),
            (read, Some(5))
        );
    }
}

#[test]
fn a_vhost_keeps_its_default_queue_type_through_definitions() {
    let mut t = with_root();
    let add = |name: &str, t: QueueType| Command::AddVhostWithDefaultType {
        name: name.into(),
        default_queue_type: t,
    };
    assert!(
        !t.apply(&add("qv", QueueType::Quorum))
            .unwrap()
            .is_unchanged()
    );
    // As RabbitMQ's add_vhost: one that exists keeps what it had.
    assert!(
        t.apply(&add("qv", QueueType::Classic))
            .unwrap()
            .is_unchanged()
    );
    assert!(
        t.apply(&add("/", QueueType::Quorum))
            .unwrap()
            .is_unchanged()
    );
    assert_eq!(
        t.vhost("qv").unwrap().default_queue_type(),
        Some(QueueType::Quorum)
    );
    assert_eq!(t.vhost("/").unwrap().default_queue_type(), None);

    let text = serde_json::to_string(&t.export(Scope::Durable)).unwrap();
    assert!(
        text.contains(r#"{"name":"qv","metadata":{"default_queue_type":"quorum"}}"#),
        "{text}"
    );
    assert!(text.contains(r#"{"name":"/"}"#), "{text}");
    // Read back, and from the two places RabbitMQ's exports put it.
    for vhosts in [
        r#"[{"name":"qv","metadata":{"default_queue_type":"quorum"}}]"#,
        r#"[{"name":"qv","default_queue_type":"quorum"}]"#,
    ] {
        let defs: crate::Definitions =
            serde_json::from_str(&format!(r#"{{"vhosts":{vhosts}}}"#)).unwrap();
        let mut fresh = Topology::new();
        for c in fresh.import_commands(&defs, HOME, &mut || uid(1)).unwrap() {
            fresh.apply(&c).unwrap();
        }
        assert_eq!(
            fresh.vhost("qv").unwrap().default_queue_type(),
            Some(QueueType::Quorum),
            "{vhosts}"
        );
    }
    let undefined: crate::Definitions = serde_json::from_str(
        r#"{"vhosts":[{"name":"u","metadata":{"default_queue_type":"undefined"}}]}"#,
    )
    .unwrap();
    let cmds = t.import_commands(&undefined, HOME, &mut || uid(1)).unwrap();
    assert_eq!(cmds, vec![Command::AddVhost { name: "u".into() }]);
    let unknown: crate::Definitions =
        serde_json::from_str(r#"{"vhosts":[{"name":"s","default_queue_type":"stream"}]}"#).unwrap();
    let err = t
        .import_commands(&unknown, HOME, &mut || uid(1))
        .unwrap_err();
    assert!(err.contains("unknown default queue type 'stream'"), "{err}");
}

#[test]
fn a_quorum_queue_s_members_change_only_while_it_is_that_queue() {
    let mut t = with_root();
    t.apply(&quorum(quorum_decl("qq", 1), vec![HOME])).unwrap();
    t.apply(&Command::DeclareQueue {
        vhost: "/".into(),
        queue: decl("cq", 2, true, None),
    })
    .unwrap();
    let set = |name: &str, id: u64, members: Vec<NodeId>| Command::SetQueueMembers {
        vhost: "/".into(),
        name: name.into(),
        id: uid(id),
        members,
    };
    let a = t.apply(&set("qq", 1, vec![HOME, OTHER])).unwrap();
    match &a.effects[..] {
        [Effect::QueueMembersChanged { queue, before, .. }] => {
            assert_eq!(queue.members, [HOME, OTHER]);
            assert_eq!(before, &[HOME]);
        }
        other => panic!("{other:?}"),
    }
    assert!(a.durable);
    // The same members again, another queue of that name, a classic queue, no members at
    // all: nothing changes.
    for c in [
        set("qq", 1, vec![HOME, OTHER]),
        set("qq", 9, vec![OTHER]),
        set("cq", 2, vec![OTHER]),
        set("qq", 1, vec![]),
    ] {
        assert!(t.apply(&c).unwrap().is_unchanged(), "{c:?}");
    }
    // And the members are kept through a snapshot.
    let q = through_snapshot(&t)
        .vhost("/")
        .unwrap()
        .queue(&"qq".into())
        .unwrap()
        .clone();
    assert_eq!(q.members, [HOME, OTHER]);
}
