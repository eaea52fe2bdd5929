//! Dead-letter cycles, as RabbitMQ 3.x detects them (`rabbit_dead_letter:detect_cycles`): a
//! dead letter is not delivered to a queue it already died in, unless a rejection is among the
//! deaths since then. Without a rejection the loop is automatic (a TTL, a length limit sending
//! the message round and round) and would never end; with one, a client decides each turn.

use crate::message::Message;
use std::collections::HashSet;
use std::sync::Mutex;
use warren_amqp::{BasicProperties, FieldValue};

/// The message's `x-death`, newest first; it holds the death being dead-lettered already.
fn deaths(m: &Message) -> Option<Vec<FieldValue>> {
    let headers = BasicProperties::decode(&m.properties).ok()?.headers?;
    match headers.get("x-death") {
        Some(FieldValue::Array(a)) => Some(a.clone()),
        _ => None,
    }
}

fn field<'a>(d: &'a FieldValue, key: &str) -> Option<&'a [u8]> {
    match d {
        FieldValue::Table(t) => t
            .get(key)
            .and_then(FieldValue::as_bytes)
            .map(|b| b.as_ref()),
        _ => None,
    }
}

/// Whether going to `queue` closes an automatic cycle: `queue` is among the deaths, and none
/// of the deaths since (and including) its latest there was a rejection. An entry that is not
/// a table was put there by a client, so the cycle is not automatic either.
pub(crate) fn is_cycle(queue: &[u8], deaths: &[FieldValue]) -> bool {
    let Some(at) = deaths.iter().position(|d| field(d, "queue") == Some(queue)) else {
        return false;
    };
    deaths[..=at].iter().all(|d| {
        matches!(d, FieldValue::Table(_)) && field(d, "reason") != Some(b"rejected".as_slice())
    })
}

/// Keeps in `queues` those a dead letter may go to, logging each cycle once (by the queues in
/// it) in RabbitMQ's words.
pub(crate) fn drop_cycles<Q>(m: &Message, queues: &mut Vec<Q>, name: impl Fn(&Q) -> &[u8]) {
    if queues.is_empty() {
        return;
    }
    let Some(deaths) = deaths(m) else {
        return;
    };
    queues.retain(|q| {
        let cycle = is_cycle(name(q), &deaths);
        if cycle {
            log_once(name(q), &deaths);
        }
        !cycle
    });
}

/// Cycles already logged. Bounded: past it, a cycle may be logged again.
static LOGGED: Mutex<Option<HashSet<Vec<Vec<u8>>>>> = Mutex::new(None);
const LOGGED_MAX: usize = 1_000;

fn log_once(queue: &[u8], deaths: &[FieldValue]) {
    let mut cycle = vec![queue.to_vec()];
    cycle.extend(
        deaths
            .iter()
            .filter_map(|d| field(d, "queue"))
            .map(<[u8]>::to_vec),
    );
    let Ok(mut logged) = LOGGED.lock() else {
        return;
    };
    let logged = logged.get_or_insert_with(HashSet::new);
    if logged.len() >= LOGGED_MAX {
        logged.clear();
    }
    let names: Vec<String> = cycle
        .iter()
        .map(|q| format!("<<\"{}\">>", String::from_utf8_lossy(q)))
        .collect();
    if logged.insert(cycle) {
        tracing::warn!(
            "Message dropped. Dead-letter queues cycle detected: [{}]\nThis cycle will NOT be reported again.",
            names.join(",")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_amqp::FieldTable;

    fn death(queue: &str, reason: &str) -> FieldValue {
        FieldValue::Table(
            FieldTable::new()
                .with("queue", FieldValue::from(queue))
                .with("reason", FieldValue::from(reason)),
        )
    }

    #[test]
    fn an_automatic_loop_is_a_cycle() {
        // q expires into itself.
        assert!(is_cycle(b"q", &[death("q", "expired")]));
        // a expires into b, whose length limit drops into a.
        let deaths = [death("b", "maxlen"), death("a", "expired")];
        assert!(is_cycle(b"a", &deaths));
        assert!(is_cycle(b"b", &deaths));
    }

    #[test]
    fn a_rejection_in_the_loop_breaks_it() {
        assert!(!is_cycle(b"q", &[death("q", "rejected")]));
        // a was rejected into b, which now expires back into a: a client took part.
        let deaths = [death("b", "expired"), death("a", "rejected")];
        assert!(!is_cycle(b"a", &deaths));
        // Going back to b closes b's own loop, which has no rejection in it.
        assert!(is_cycle(b"b", &deaths));
        // A rejection older than the queue's latest death does not count.
        let deaths = [
            death("a", "expired"),
            death("b", "rejected"),
            death("a", "maxlen"),
        ];
        assert!(is_cycle(b"a", &deaths));
    }

    #[test]
    fn a_queue_it_never_died_in_is_no_cycle_and_odd_entries_break_it() {
        assert!(!is_cycle(
            b"c",
            &[death("a", "expired"), death("b", "expired")]
        ));
        assert!(!is_cycle(b"q", &[]));
        let odd = [FieldValue::from("client-made"), death("q", "expired")];
        assert!(!is_cycle(b"q", &odd));
    }
}
