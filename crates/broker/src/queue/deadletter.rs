//! Dead-lettering: the message a queue republishes to its dead-letter exchange when it drops
//! one (rejected, expired, or pushed out by a length limit), with the `x-death` history and
//! `x-first-death-*` headers RabbitMQ adds.

use crate::message::Message;
use crate::queue::QueueHandle;
use std::sync::Arc;
use warren_amqp::{BasicProperties, FieldTable, FieldValue, ShortStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    MaxLen,
    /// Returned more often than a quorum queue's `x-delivery-limit` allows.
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::MaxLen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// Where a queue's dead letters go: the queues its vhost routes them to from the dead-letter
/// exchange (set by the vhost that owns the queue).
#[derive(Clone)]
pub struct DeadLetterSink {
    route: Arc<Route>,
}

type Route = dyn Fn(&Message) -> Vec<QueueHandle> + Send + Sync;

impl DeadLetterSink {
    pub fn new(route: impl Fn(&Message) -> Vec<QueueHandle> + Send + Sync + 'static) -> Self {
        DeadLetterSink {
            route: Arc::new(route),
        }
    }

    /// A sink that routes nothing anywhere.
    #[cfg(test)]
    pub fn nowhere() -> Self {
        DeadLetterSink::new(|_| Vec::new())
    }

    /// The queues a dead letter goes to (none: no such exchange, or no route), less those it
    /// would go round an automatic cycle to (see `cycle`).
    pub fn route(&self, m: &Message) -> Vec<QueueHandle> {
        let mut queues = (self.route)(m);
        super::cycle::drop_cycles(m, &mut queues, |q| q.name().as_bytes());
        queues
    }

    /// Republishes a dead letter at most once: to every queue it routes to, without waiting
    /// for any of them to take it (unroutable: dropped, as in RabbitMQ).
    pub fn send(&self, m: Arc<Message>) {
        let queues = self.route(&m);
        if queues.is_empty() {
            return;
        }
        // The sending queue must not wait on another queue's mailbox (two queues
        // dead-lettering to each other would wait forever), so the sends run on their own.
        tokio::spawn(async move {
            for q in queues {
                let _ = q.publish_batch(vec![(m.clone(), None)]).await;
            }
        });
    }
}

fn text(s: &[u8]) -> FieldValue {
    FieldValue::LongStr(bytes::Bytes::copy_from_slice(s))
}

/// The message as it is republished: to `dlx`, with the dead-letter routing key (or its own),
/// an updated `x-death`, and without its `expiration` (kept as `original-expiration`).
pub fn dead_letter(
    m: &Message,
    reason: Reason,
    queue: &ShortStr,
    dlx: &ShortStr,
    routing_key: Option<&ShortStr>,
    now_ms: u64,
) -> Arc<Message> {
    let mut props = BasicProperties::decode(&m.properties).unwrap_or_default();
    let mut headers = props.headers.take().unwrap_or_default();
    let mut deaths: Vec<FieldValue> = match headers.get("x-death") {
        Some(FieldValue::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let same = |d: &FieldValue| match d {
        FieldValue::Table(t) => {
            t.get("queue")
                .and_then(FieldValue::as_bytes)
                .map(|b| b.as_ref())
                == Some(queue.as_bytes())
                && t.get("reason")
                    .and_then(FieldValue::as_bytes)
                    .map(|b| b.as_ref())
                    == Some(reason.as_str().as_bytes())
        }
        _ => false,
    };
    let earlier = deaths.iter().position(same).map(|i| deaths.remove(i));
    let entry = match earlier {
        Some(FieldValue::Table(mut t)) => {
            let count = t.get("count").and_then(FieldValue::as_i64).unwrap_or(0);
            t.insert("count", FieldValue::I64(count + 1));
            t.insert("time", FieldValue::Timestamp(now_ms / 1000));
            t
        }
        _ => {
            let mut t = FieldTable::new()
                .with("count", FieldValue::I64(1))
                .with("reason", reason.as_str())
                .with("queue", text(queue.as_bytes()))
                .with("time", FieldValue::Timestamp(now_ms / 1000))
                .with("exchange", text(m.exchange.as_bytes()))
                .with(
                    "routing-keys",
                    FieldValue::Array(vec![text(m.routing_key.as_bytes())]),
                );
            if let Some(e) = &props.expiration {
                t.insert("original-expiration", text(e.as_bytes()));
            }
            t
        }
    };
    deaths.insert(0, FieldValue::Table(entry));
    headers.insert("x-death", FieldValue::Array(deaths));
    for (k, v) in [
        ("x-first-death-reason", text(reason.as_str().as_bytes())),
        ("x-first-death-queue", text(queue.as_bytes())),
        ("x-first-death-exchange", text(m.exchange.as_bytes())),
    ] {
        if headers.get(k).is_none() {
            headers.insert(k, v);
        }
    }
    props.headers = Some(headers);
    props.expiration = None;
    Arc::new(Message {
        exchange: dlx.clone(),
        routing_key: routing_key
            .cloned()
            .unwrap_or_else(|| m.routing_key.clone()),
        properties: props.encode(),
        body: m.body.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Body;

    const T: u64 = 1_700_000_000_000;

    fn message() -> Message {
        Message {
            exchange: "orders".into(),
            routing_key: "new".into(),
            properties: BasicProperties {
                expiration: Some("5000".into()),
                headers: Some(FieldTable::new().with("keep", "me")),
                ..Default::default()
            }
            .encode(),
            body: Body::from_bytes(bytes::Bytes::from_static(b"payload")),
        }
    }

    fn deaths(m: &Message) -> Vec<FieldTable> {
        let h = BasicProperties::decode(&m.properties)
            .unwrap()
            .headers
            .unwrap();
        match h.get("x-death") {
            Some(FieldValue::Array(a)) => a
                .iter()
                .map(|v| match v {
                    FieldValue::Table(t) => t.clone(),
                    _ => panic!("x-death entry is not a table"),
                })
                .collect(),
            _ => panic!("no x-death"),
        }
    }

    #[test]
    fn first_death_records_everything() {
        let d = dead_letter(
            &message(),
            Reason::Expired,
            &"q1".into(),
            &"dlx".into(),
            None,
            T,
        );
        assert_eq!(
            (d.exchange.as_bytes(), d.routing_key.as_bytes()),
            (&b"dlx"[..], &b"new"[..])
        );
        let p = BasicProperties::decode(&d.properties).unwrap();
        assert_eq!(p.expiration, None, "expiration removed");
        let h = p.headers.unwrap();
        assert_eq!(h.get("keep"), Some(&FieldValue::from("me")));
        assert_eq!(
            h.get("x-first-death-reason"),
            Some(&FieldValue::from("expired"))
        );
        assert_eq!(h.get("x-first-death-queue"), Some(&FieldValue::from("q1")));
        assert_eq!(
            h.get("x-first-death-exchange"),
            Some(&FieldValue::from("orders"))
        );
        let x = &deaths(&d)[0];
        assert_eq!(x.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(x.get("time"), Some(&FieldValue::Timestamp(T / 1000)));
        assert_eq!(x.get("reason"), Some(&FieldValue::from("expired")));
        assert_eq!(x.get("queue"), Some(&FieldValue::from("q1")));
        assert_eq!(x.get("exchange"), Some(&FieldValue::from("orders")));
        assert_eq!(
            x.get("routing-keys"),
            Some(&FieldValue::Array(vec![FieldValue::from("new")]))
        );
        assert_eq!(
            x.get("original-expiration"),
            Some(&FieldValue::from("5000"))
        );
        assert_eq!(d.body.to_bytes(), &b"payload"[..]);
    }

    #[test]
    fn repeated_deaths_count_up_and_move_to_the_front() {
        let once = dead_letter(
            &message(),
            Reason::Rejected,
            &"q1".into(),
            &"dlx".into(),
            Some(&"retry".into()),
            T,
        );
        assert_eq!(once.routing_key.as_bytes(), b"retry");
        let twice = dead_letter(
            &once,
            Reason::Expired,
            &"q2".into(),
            &"dlx2".into(),
            None,
            T,
        );
        let thrice = dead_letter(
            &twice,
            Reason::Rejected,
            &"q1".into(),
            &"dlx".into(),
            None,
            T,
        );
        let d = deaths(&thrice);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].get("queue"), Some(&FieldValue::from("q1")));
        assert_eq!(d[0].get("count"), Some(&FieldValue::I64(2)));
        assert_eq!(d[1].get("queue"), Some(&FieldValue::from("q2")));
        let h = BasicProperties::decode(&thrice.properties)
            .unwrap()
            .headers
            .unwrap();
        assert_eq!(
            h.get("x-first-death-queue"),
            Some(&FieldValue::from("q1")),
            "first death kept"
        );
        assert_eq!(
            h.get("x-first-death-reason"),
            Some(&FieldValue::from("rejected"))
        );
    }
}
