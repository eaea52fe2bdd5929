//! Queue arguments (`x-message-ttl`, `x-expires`, `x-max-length`, `x-overflow`, dead-lettering,
//! `x-max-priority`, `x-single-active-consumer`, `x-queue-mode`, `x-queue-type`,
//! `x-queue-leader-locator`), validated as RabbitMQ validates them, in the same order and with
//! the same texts.

use crate::QueueType;
use warren_amqp::AmqpError;
use warren_amqp::{FieldTable, FieldValue, ShortStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    #[default]
    DropHead,
    RejectPublish,
    RejectPublishDlx,
}

/// Which node a new queue lives on (`x-queue-leader-locator`, RabbitMQ 4's names; 3.x's
/// `x-queue-master-locator` is read too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locator {
    /// The node of the connection that declares it.
    #[default]
    ClientLocal,
    /// The running node with the fewest queues.
    Balanced,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueArgs {
    pub message_ttl: Option<u64>,
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<ShortStr>,
    pub dead_letter_routing_key: Option<ShortStr>,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    pub lazy: bool,
    pub locator: Locator,
    /// A quorum queue's `x-delivery-limit`: a message returned more often than this is
    /// dropped (dead-lettered, reason `delivery_limit`).
    pub delivery_limit: Option<u64>,
    /// `x-dead-letter-strategy: at-least-once` (RabbitMQ uses it only for quorum queues with
    /// `reject-publish` and a dead-letter exchange; at most once otherwise).
    pub dead_letter_at_least_once: bool,
    /// `x-queue-type`.
    pub queue_type: QueueType,
    /// A quorum queue's `x-quorum-initial-group-size`: how many nodes hold it at first.
    pub initial_group_size: Option<u64>,
}

/// Why an argument was refused, in the Erlang term RabbitMQ prints.
fn invalid(arg: &str, queue: &str, why: impl std::fmt::Display) -> AmqpError {
    AmqpError::precondition_failed(format!("invalid arg '{arg}' for {queue}: {why}"))
}

fn int(arg: &str, v: &FieldValue, queue: &str) -> Result<i64, AmqpError> {
    v.as_i64().ok_or_else(|| {
        invalid(
            arg,
            queue,
            format!("\"expected integer, got {}\"", v.type_name()),
        )
    })
}

fn non_negative(arg: &str, v: &FieldValue, queue: &str) -> Result<u64, AmqpError> {
    let n = int(arg, v, queue)?;
    if n < 0 {
        return Err(invalid(arg, queue, format!("{{value_negative,{n}}}")));
    }
    Ok(n as u64)
}

fn longstr<'a>(arg: &str, v: &'a FieldValue, queue: &str) -> Result<&'a bytes::Bytes, AmqpError> {
    match v {
        FieldValue::LongStr(b) => Ok(b),
        other => Err(invalid(
            arg,
            queue,
            format!("{{unacceptable_type,{}}}", other.type_name()),
        )),
    }
}

impl QueueArgs {
    /// Validates and reads a declaration's arguments; `queue` names the queue as RabbitMQ does
    /// ("queue 'q' in vhost '/'"). Arguments it does not know are kept but ignored, as
    /// RabbitMQ ignores them.
    pub fn parse(t: &FieldTable, queue: &str) -> Result<QueueArgs, AmqpError> {
        let mut a = QueueArgs::default();
        if let Some(v) = t.get("x-expires") {
            let n = non_negative("x-expires", v, queue)?;
            if n == 0 {
                return Err(invalid("x-expires", queue, "{value_zero,0}"));
            }
            a.expires = Some(n);
        }
        if let Some(v) = t.get("x-message-ttl") {
            a.message_ttl = Some(non_negative("x-message-ttl", v, queue)?);
        }
        if let Some(v) = t.get("x-dead-letter-exchange") {
            match v {
                FieldValue::LongStr(b) => {
                    a.dead_letter_exchange = Some(ShortStr::from_bytes(b.clone()))
                }
                other => {
                    return Err(AmqpError::precondition_failed(format!(
                        "invalid type '{}' for arg 'x-dead-letter-exchange' in {queue}",
                        other.type_name()
                    )));
                }
            }
        }
        if let Some(v) = t.get("x-dead-letter-routing-key") {
            let b = longstr("x-dead-letter-routing-key", v, queue)?;
            if a.dead_letter_exchange.is_none() {
                return Err(invalid(
                    "x-dead-letter-routing-key",
                    queue,
                    "routing_key_but_no_dlx_defined",
                ));
            }
            a.dead_letter_routing_key = Some(ShortStr::from_bytes(b.clone()));
        }
        if let Some(v) = t.get("x-max-length") {
            a.max_length = Some(non_negative("x-max-length", v, queue)?);
        }
        if let Some(v) = t.get("x-max-length-bytes") {
            a.max_length_bytes = Some(non_negative("x-max-length-bytes", v, queue)?);
        }
        for arg in ["x-max-in-memory-length", "x-max-in-memory-bytes"] {
            if let Some(v) = t.get(arg) {
                non_negative(arg, v, queue)?;
            }
        }
        if let Some(v) = t.get("x-max-priority") {
            let n = non_negative("x-max-priority", v, queue)?;
            if n > 255 {
                return Err(invalid(
                    "x-max-priority",
                    queue,
                    format!("{{max_value_exceeded,{n}}}"),
                ));
            }
            a.max_priority = Some(n as u8);
        }
        if let Some(v) = t.get("x-overflow") {
            a.overflow = match longstr("x-overflow", v, queue)?.as_ref() {
                b"drop-head" => Overflow::DropHead,
                b"reject-publish" => Overflow::RejectPublish,
                b"reject-publish-dlx" => Overflow::RejectPublishDlx,
                _ => return Err(invalid("x-overflow", queue, "invalid_overflow")),
            };
        }
        if let Some(v) = t.get("x-queue-mode") {
            let mode = longstr("x-queue-mode", v, queue)?;
            a.lazy = match mode.as_ref() {
                b"lazy" => true,
                b"default" => false,
                other => {
                    return Err(invalid(
                        "x-queue-mode",
                        queue,
                        format!(
                            "\"unsupported queue mode '{}'\"",
                            String::from_utf8_lossy(other)
                        ),
                    ));
                }
            };
        }
        if let Some(v) = t.get("x-single-active-consumer") {
            a.single_active_consumer = match v {
                FieldValue::Bool(b) => *b,
                other => {
                    return Err(invalid(
                        "x-single-active-consumer",
                        queue,
                        format!("{{unacceptable_type,{}}}", other.type_name()),
                    ));
                }
            };
        }
        // RabbitMQ 4 takes `balanced` and `client-local`, and reads the older quorum-queue
        // names (`random`, `least-leaders`) as `balanced`; 3.x's classic-queue argument
        // `x-queue-master-locator` (`min-masters`, `random`, `client-local`) maps the same way.
        if let Some(v) = t.get("x-queue-master-locator") {
            a.locator = match longstr("x-queue-master-locator", v, queue)?.as_ref() {
                b"client-local" => Locator::ClientLocal,
                b"min-masters" | b"random" => Locator::Balanced,
                _ => {
                    return Err(invalid(
                        "x-queue-master-locator",
                        queue,
                        "invalid_queue_master_locator",
                    ));
                }
            };
        }
        if let Some(v) = t.get("x-queue-leader-locator") {
            a.locator = match longstr("x-queue-leader-locator", v, queue)?.as_ref() {
                b"client-local" => Locator::ClientLocal,
                b"balanced" | b"random" | b"least-leaders" => Locator::Balanced,
                _ => {
                    return Err(invalid(
                        "x-queue-leader-locator",
                        queue,
                        "invalid_queue_locator_arg",
                    ));
                }
            };
        }
        if let Some(v) = t.get("x-queue-type") {
            let kind = longstr("x-queue-type", v, queue)?;
            let name = String::from_utf8_lossy(kind);
            a.queue_type = QueueType::parse(&name).ok_or_else(|| {
                invalid(
                    "x-queue-type",
                    queue,
                    format!("\"unsupported queue type '{name}'\""),
                )
            })?;
        }
        // Not validated by RabbitMQ: an integer is the limit (below zero, as zero), anything
        // else none.
        if let Some(n) = t.get("x-delivery-limit").and_then(FieldValue::as_i64) {
            a.delivery_limit = Some(n.max(0) as u64);
        }
        if let Some(v) = t.get("x-dead-letter-strategy") {
            match longstr("x-dead-letter-strategy", v, queue)?.as_ref() {
                b"at-most-once" => {}
                b"at-least-once" => a.dead_letter_at_least_once = true,
                _ => {
                    return Err(invalid(
                        "x-dead-letter-strategy",
                        queue,
                        "invalid_dlx_strategy",
                    ));
                }
            }
        }
        if let Some(v) = t.get("x-quorum-initial-group-size") {
            let n = non_negative("x-quorum-initial-group-size", v, queue)?;
            if n == 0 {
                return Err(invalid(
                    "x-quorum-initial-group-size",
                    queue,
                    "{value_zero,0}",
                ));
            }
            a.initial_group_size = Some(n);
        }
        Ok(a)
    }
}

impl QueueArgs {
    /// What a quorum queue may not be or have, refused as RabbitMQ 3.10 refuses it (after
    /// the values, which [`QueueArgs::parse`] checks): the first argument it does not take, in
    /// the order the client sent them, then auto-delete, exclusive and non-durable.
    pub fn check_quorum(
        t: &FieldTable,
        durable: bool,
        auto_delete: bool,
        exclusive: bool,
        queue: &str,
    ) -> Result<(), AmqpError> {
        const NOT_TAKEN: [&str; 5] = [
            "x-max-priority",
            "x-queue-mode",
            "x-queue-version",
            "x-queue-master-locator",
            "x-max-age",
        ];
        if let Some((arg, _)) = t
            .iter()
            .find(|(k, _)| NOT_TAKEN.contains(&k.as_str_lossy().as_ref()))
        {
            return Err(AmqpError::precondition_failed(format!(
                "invalid arg '{arg}' for {queue} of queue type rabbit_quorum_queue"
            )));
        }
        let property = if auto_delete {
            "auto-delete"
        } else if exclusive {
            "exclusive-owner"
        } else if !durable {
            "non-durable"
        } else {
            return Ok(());
        };
        Err(AmqpError::precondition_failed(format!(
            "invalid property '{property}' for {queue}"
        )))
    }
}

/// A message's `expiration` property in milliseconds, checked as RabbitMQ checks it on publish.
pub fn expiration(value: &ShortStr) -> Result<u64, AmqpError> {
    let text = value.as_str_lossy();
    let refuse =
        |why: String| AmqpError::precondition_failed(format!("invalid expiration '{text}': {why}"));
    let n: i64 = text.parse().map_err(|_| refuse("no_integer".to_owned()))?;
    if n < 0 {
        return Err(refuse(format!("{{value_negative,{n}}}")));
    }
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "queue 'q' in vhost '/'";

    fn refused(t: FieldTable) -> String {
        QueueArgs::parse(&t, Q).unwrap_err().reply_text()
    }

    #[test]
    fn texts_match_rabbitmq() {
        assert_eq!(
            refused(FieldTable::new().with("x-message-ttl", FieldValue::I32(-1))),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            refused(FieldTable::new().with("x-message-ttl", "abc")),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert_eq!(
            refused(FieldTable::new().with("x-expires", FieldValue::I32(0))),
            "PRECONDITION_FAILED - invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            refused(FieldTable::new().with("x-overflow", "bogus")),
            "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
        assert_eq!(
            refused(FieldTable::new().with("x-overflow", FieldValue::I32(1))),
            "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'q' in vhost '/': {unacceptable_type,signedint}"
        );
        assert_eq!(
            refused(FieldTable::new().with("x-dead-letter-exchange", FieldValue::I32(5))),
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
        assert_eq!(
            refused(FieldTable::new().with("x-dead-letter-routing-key", "k")),
            "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"
        );
        assert_eq!(
            refused(FieldTable::new().with("x-max-priority", FieldValue::I32(256))),
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
        );
        assert_eq!(
            refused(FieldTable::new().with("x-single-active-consumer", "yes")),
            "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue 'q' in vhost '/': {unacceptable_type,longstr}"
        );
        assert_eq!(
            refused(FieldTable::new().with("x-queue-mode", "bogus")),
            "PRECONDITION_FAILED - invalid arg 'x-queue-mode' for queue 'q' in vhost '/': \"unsupported queue mode 'bogus'\""
        );
    }

    #[test]
    fn the_first_bad_argument_in_rabbitmq_order_is_reported() {
        let t = FieldTable::new()
            .with("x-max-length", FieldValue::I32(-1))
            .with("x-expires", FieldValue::I32(0));
        assert!(refused(t).contains("'x-expires'"));
    }

    #[test]
    fn good_arguments_are_read() {
        let t = FieldTable::new()
            .with("x-message-ttl", FieldValue::I64(5000))
            .with("x-max-length", FieldValue::I32(10))
            .with("x-overflow", "reject-publish-dlx")
            .with("x-dead-letter-exchange", "dlx")
            .with("x-dead-letter-routing-key", "dead")
            .with("x-max-priority", FieldValue::U8(9))
            .with("x-single-active-consumer", true)
            .with("x-queue-mode", "lazy")
            .with("x-queue-type", "classic")
            .with("x-custom", "kept");
        let a = QueueArgs::parse(&t, Q).unwrap();
        assert_eq!(a.message_ttl, Some(5000));
        assert_eq!(a.max_length, Some(10));
        assert_eq!(a.overflow, Overflow::RejectPublishDlx);
        assert_eq!(a.dead_letter_exchange, Some("dlx".into()));
        assert_eq!(a.dead_letter_routing_key, Some("dead".into()));
        assert_eq!(a.max_priority, Some(9));
        assert!(a.single_active_consumer && a.lazy);
    }

    #[test]
    fn locators_as_rabbitmq_4_reads_them() {
        let with =
            |k: &str, v: &str| FieldTable::new().with(k, FieldValue::LongStr(v.to_owned().into()));
        let locator = |k, v| QueueArgs::parse(&with(k, v), Q).map(|a| a.locator);
        assert_eq!(
            QueueArgs::parse(&FieldTable::new(), Q).unwrap().locator,
            Locator::ClientLocal
        );
        for (k, v, want) in [
            (
                "x-queue-leader-locator",
                "client-local",
                Locator::ClientLocal,
            ),
            ("x-queue-leader-locator", "balanced", Locator::Balanced),
            ("x-queue-leader-locator", "least-leaders", Locator::Balanced),
            ("x-queue-master-locator", "min-masters", Locator::Balanced),
            (
                "x-queue-master-locator",
                "client-local",
                Locator::ClientLocal,
            ),
        ] {
            assert_eq!(locator(k, v).unwrap(), want, "{k}={v}");
        }
        assert_eq!(
            refused(with("x-queue-leader-locator", "nearest")),
            "PRECONDITION_FAILED - invalid arg 'x-queue-leader-locator' for queue 'q' in vhost '/': invalid_queue_locator_arg"
        );
        assert_eq!(
            refused(FieldTable::new().with("x-queue-leader-locator", FieldValue::I32(1))),
            "PRECONDITION_FAILED - invalid arg 'x-queue-leader-locator' for queue 'q' in vhost '/': {unacceptable_type,signedint}"
        );
    }

    #[test]
    fn expiration_property() {
        assert_eq!(expiration(&"1500".into()).unwrap(), 1500);
        assert_eq!(
            expiration(&"abc".into()).unwrap_err().reply_text(),
            "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"
        );
        assert_eq!(
            expiration(&"-1".into()).unwrap_err().reply_text(),
            "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}"
        );
        assert!(expiration(&"".into()).is_err());
    }
}
