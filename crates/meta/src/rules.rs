//! RabbitMQ's naming rules and the way its error texts name resources.

use warren_amqp::{AmqpError, AmqpResult, ShortStr};

/// "exchange 'x' in vhost '/'", as RabbitMQ names resources in its messages.
pub fn describe(kind: &str, name: &ShortStr, vhost: &str) -> String {
    format!("{kind} '{name}' in vhost '{vhost}'")
}

/// RabbitMQ strips CR and LF from names before using them.
pub fn strip_cr_lf(name: &ShortStr) -> ShortStr {
    if !name.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n') {
        return name.clone();
    }
    let v: Vec<u8> = name
        .as_bytes()
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    ShortStr::from_bytes(v.into())
}

pub fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

/// Names starting with `amq.` belong to the broker.
pub fn check_reserved(kind: &str, name: &ShortStr) -> AmqpResult<()> {
    if name.starts_with(b"amq.") {
        return Err(AmqpError::access_refused(format!(
            "{kind} name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    Ok(())
}

/// RabbitMQ refuses client-chosen queue names with the reserved prefix before anything else
/// (server-named queues are `amq.gen-…`, so this is checked where the client's name arrives).
pub fn check_queue_name(name: &ShortStr) -> AmqpResult<()> {
    check_reserved("queue", name)
}

pub fn locked(rs: &str) -> AmqpError {
    AmqpError::resource_locked(format!(
        "cannot obtain exclusive access to locked {rs}. It could be originally declared on \
         another connection or the exclusive property value does not match that of the \
         original declaration."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr_and_lf_are_stripped_and_clean_names_kept() {
        assert_eq!(strip_cr_lf(&"a\r\nb\n".into()), ShortStr::from("ab"));
        assert_eq!(strip_cr_lf(&"plain".into()), ShortStr::from("plain"));
    }

    #[test]
    fn reserved_names_are_refused_with_rabbitmq_text() {
        assert_eq!(
            check_queue_name(&"amq.q".into()).unwrap_err().reply_text(),
            "ACCESS_REFUSED - queue name 'amq.q' contains reserved prefix 'amq.*'"
        );
        assert!(check_queue_name(&"amqp.q".into()).is_ok());
    }
}
