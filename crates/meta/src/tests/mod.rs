//! The topology core, driven through commands only, as a replicated log would drive it: the
//! helpers here, the entities' rules in `entities`, access in `access`, and replaying
//! (determinism, serialization, snapshots, imports) in `replay`.

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

mod access;
mod entities;
mod quorum;
mod replay;
