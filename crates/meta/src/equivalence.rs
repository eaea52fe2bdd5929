//! RabbitMQ's equivalence rules: a declaration of something that exists must ask for the same
//! thing, or it fails with 406 and a text naming the first property that differs.

use warren_amqp::{AmqpError, AmqpResult, FieldTable, FieldValue};

/// The queue arguments RabbitMQ compares when a classic queue is declared again.
pub const QUEUE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
];

/// The exchange arguments RabbitMQ compares.
pub const EXCHANGE_ARGS: &[&str] = &["alternate-exchange"];

pub fn field<T: PartialEq + std::fmt::Display>(
    key: &str,
    received: T,
    current: T,
    rs: &str,
) -> AmqpResult<()> {
    if received == current {
        return Ok(());
    }
    Err(AmqpError::precondition_failed(format!(
        "inequivalent arg '{key}' for {rs}: received '{received}' but current is '{current}'"
    )))
}

/// Erlang's `type_class`: integers of any width compare as one class, floats as another.
fn same_class_and_value(a: &FieldValue, b: &FieldValue) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a == b,
        _ => false,
    }
}

fn describe_arg(v: Option<&FieldValue>) -> String {
    match v {
        None => "none".to_owned(),
        Some(v) => format!("the value '{}' of type '{}'", arg_text(v), v.type_name()),
    }
}

fn arg_text(v: &FieldValue) -> String {
    match v {
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        FieldValue::Bool(b) => b.to_string(),
        other => match other.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{other:?}"),
        },
    }
}

/// Compares the arguments named in `keys`; others may differ freely.
pub fn args(
    current: &FieldTable,
    received: &FieldTable,
    keys: &[&str],
    rs: &str,
) -> AmqpResult<()> {
    for key in keys {
        let (c, r) = (current.get(key), received.get(key));
        let ok = match (c, r) {
            (None, None) => true,
            (Some(c), Some(r)) => same_class_and_value(c, r),
            _ => false,
        };
        if ok {
            continue;
        }
        let (rtext, ctext) = match (c, r) {
            (Some(c), Some(r)) => (format!("'{}'", arg_text(r)), format!("'{}'", arg_text(c))),
            _ => (describe_arg(r), describe_arg(c)),
        };
        return Err(AmqpError::precondition_failed(format!(
            "inequivalent arg '{key}' for {rs}: received {rtext} but current is {ctext}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: &str = "queue 'q' in vhost '/'";

    #[test]
    fn integers_of_any_width_are_one_class() {
        let a = FieldTable::new().with("x-max-length", FieldValue::I8(5));
        let b = FieldTable::new().with("x-max-length", FieldValue::I64(5));
        assert!(args(&a, &b, QUEUE_ARGS, RS).is_ok());
    }

    #[test]
    fn texts_name_what_differs_as_rabbitmq_does() {
        let a = FieldTable::new().with("x-max-length", FieldValue::I32(5));
        let b = FieldTable::new().with("x-max-length", FieldValue::I32(6));
        assert_eq!(
            args(&a, &b, QUEUE_ARGS, RS).unwrap_err().reply_text(),
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received '6' but current is '5'"
        );
        assert_eq!(
            args(&a, &FieldTable::new(), QUEUE_ARGS, RS)
                .unwrap_err()
                .reply_text(),
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received none but current is the value '5' of type 'signedint'"
        );
        assert_eq!(
            field("durable", true, false, RS).unwrap_err().reply_text(),
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current is 'false'"
        );
    }

    #[test]
    fn arguments_not_compared_may_differ() {
        let a = FieldTable::new().with("x-custom", "a");
        let b = FieldTable::new().with("x-custom", "b");
        assert!(args(&a, &b, QUEUE_ARGS, RS).is_ok());
        let a = FieldTable::new().with("x-message-ttl", FieldValue::I32(1));
        let b = FieldTable::new().with("x-message-ttl", FieldValue::F64(1.0));
        assert!(
            args(&a, &b, QUEUE_ARGS, RS).is_err(),
            "an integer and a float differ in class"
        );
    }
}
