//! The queue type a declaration gets when it names none: its vhost's default (RabbitMQ's vhost
//! `default_queue_type`), else the node's. Like RabbitMQ's `augment_declare_args`, the type is
//! written into the declaration's arguments before anything else looks at them, so the queue
//! keeps it, a later redeclaration is compared against it, and an application that declares
//! plain durable queues gets quorum queues without one line changed.

use crate::QueueType;
use warren_amqp::{FieldTable, FieldValue};

/// Whether a queue of type `t` can be durable `durable`, exclusive `exclusive` and auto-delete
/// `auto_delete`: quorum queues are only durable, shared and kept.
pub fn compatible(t: QueueType, durable: bool, exclusive: bool, auto_delete: bool) -> bool {
    match t {
        QueueType::Classic => true,
        QueueType::Quorum => durable && !exclusive && !auto_delete,
    }
}

/// `arguments` with `x-queue-type` set to `default` when the declaration names no type and the
/// default can take it. A declaration the default cannot take (a quorum default and a
/// transient, exclusive or auto-delete queue) stays as it is and gets a classic queue, as in
/// RabbitMQ 3.10. A classic default changes nothing: classic is what no type means.
pub fn apply(
    mut arguments: FieldTable,
    default: Option<QueueType>,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
) -> FieldTable {
    let Some(t) = default else {
        return arguments;
    };
    if t == QueueType::Classic
        || arguments.get("x-queue-type").is_some()
        || !compatible(t, durable, exclusive, auto_delete)
    {
        return arguments;
    }
    arguments.insert("x-queue-type", FieldValue::from(t.as_str()));
    arguments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(t: &FieldTable) -> Option<String> {
        t.get("x-queue-type").map(|v| match v {
            FieldValue::LongStr(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn a_quorum_default_reaches_only_durable_shared_kept_queues_that_name_no_type() {
        let q = Some(QueueType::Quorum);
        let plain = apply(FieldTable::new(), q, true, false, false);
        assert_eq!(kind(&plain).as_deref(), Some("quorum"));
        // What a quorum queue cannot be stays classic.
        for (durable, exclusive, auto_delete) in [
            (false, false, false),
            (true, true, false),
            (true, false, true),
        ] {
            let t = apply(FieldTable::new(), q, durable, exclusive, auto_delete);
            assert_eq!(kind(&t), None, "{durable} {exclusive} {auto_delete}");
        }
        // A type the application names wins.
        let named = FieldTable::new().with("x-queue-type", "classic");
        assert_eq!(
            kind(&apply(named, q, true, false, false)).as_deref(),
            Some("classic")
        );
        // Other arguments are kept.
        let other = FieldTable::new().with("x-max-length", FieldValue::I64(5));
        let t = apply(other, q, true, false, false);
        assert!(t.get("x-max-length").is_some());
        assert_eq!(kind(&t).as_deref(), Some("quorum"));
    }

    #[test]
    fn no_default_or_a_classic_one_changes_nothing() {
        for d in [None, Some(QueueType::Classic)] {
            assert!(apply(FieldTable::new(), d, true, false, false).is_empty());
        }
    }
}
