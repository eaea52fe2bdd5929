//! A quorum queue's rules on the same state machine: returns counted and served first, the
//! delivery limit, no files of its own, and the same outcome on every replica.

use super::tests::{
    body, consume, delivered, message_with, publish, queue_of, run_deliveries, spec,
};
use super::*;
use crate::queue::ConsumerSpec;
use warren_amqp::{BasicProperties, FieldValue};
use warren_meta::{QueueArgs, QueueType};

const T0: u64 = 1_000_000;

fn quorum_with(args: QueueArgs) -> QueueState {
    queue_of(QueueType::Quorum, args, u64::MAX)
}

/// What the queue delivered when run: (body, redelivered, x-delivery-count header).
fn deliveries(q: &mut QueueState) -> Vec<(String, bool, Option<i64>)> {
    run_deliveries(q, T0)
        .into_iter()
        .map(|d| (body(&d.message), d.redelivered, delivery_count(&d.message)))
        .collect()
}

fn delivery_count(m: &Message) -> Option<i64> {
    m.properties
        .headers()
        .and_then(Result::ok)
        .and_then(|h| h.get("x-delivery-count").and_then(FieldValue::as_i64))
}

fn seq_of(ds: &[(String, String, u64)], b: &str) -> u64 {
    ds.iter()
        .find(|(_, body, _)| body == b)
        .map(|(_, _, s)| *s)
        .unwrap_or_else(|| panic!("{b} was not delivered"))
}

#[test]
fn a_returned_message_goes_to_the_back() {
    // As recorded on RabbitMQ 3.10: A, B, C ready, a prefetch-1 consumer rejects the first A
    // with requeue. A quorum queue then gives B, C, A; a classic queue A again, then B, C.
    for (kind, expected) in [
        (QueueType::Classic, ["a", "b", "c"]),
        (QueueType::Quorum, ["b", "c", "a"]),
    ] {
        let mut q = queue_of(kind, QueueArgs::default(), u64::MAX);
        consume(
            &mut q,
            ConsumerSpec {
                prefetch: 1,
                ..spec(1, "c")
            },
        );
        publish(&mut q, &["a", "b", "c"]);
        let first = delivered(&mut q, T0);
        assert_eq!(first.len(), 1);
        q.apply(Command::Settle(vec![first[0].2], Settle::Requeue), T0);
        let mut after = Vec::new();
        for _ in 0..3 {
            let d = delivered(&mut q, T0);
            assert_eq!(d.len(), 1, "{kind:?}");
            q.apply(Command::Settle(vec![d[0].2], Settle::Ack), T0);
            after.push(d[0].1.clone());
        }
        assert_eq!(after, expected, "{kind:?}");
    }
}

#[test]
fn basic_get_counts_deliveries_from_the_first() {
    let mut q = quorum_with(QueueArgs::default());
    publish(&mut q, &["m"]);
    let get = |q: &mut QueueState| match q.apply(
        Command::Get {
            conn: spec(1, "g").conn,
            channel_key: 1,
            no_ack: false,
        },
        T0,
    ) {
        Reply::Got(Some(g)) => (g.seq, g.redelivered, delivery_count(&g.message)),
        other => panic!("{other:?}"),
    };
    let (seq, redelivered, count) = get(&mut q);
    assert_eq!((redelivered, count), (false, Some(0)));
    q.apply(Command::Settle(vec![seq], Settle::Requeue), T0);
    let (_, redelivered, count) = get(&mut q);
    assert_eq!((redelivered, count), (true, Some(1)));
}

#[test]
fn a_returned_message_carries_its_delivery_count() {
    let mut q = quorum_with(QueueArgs::default());
    consume(&mut q, spec(1, "c"));
    publish(&mut q, &["m"]);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ds = run_deliveries(&mut q, T0);
        let d = ds.first().expect("delivered");
        seen.push((d.redelivered, delivery_count(&d.message)));
        q.apply(Command::Settle(vec![d.seq], Settle::Requeue), T0);
    }
    assert_eq!(
        seen,
        [(false, None), (true, Some(1)), (true, Some(2))],
        "no header before the first return, then the number of returns"
    );
}

#[test]
fn a_message_returned_past_the_delivery_limit_is_dead_lettered() {
    let args = QueueArgs {
        delivery_limit: Some(1),
        dead_letter_exchange: Some("dlx".into()),
        ..Default::default()
    };
    let mut q = quorum_with(args);
    consume(&mut q, spec(1, "c"));
    publish(&mut q, &["poison"]);
    for round in 0..2 {
        let ds = delivered(&mut q, T0);
        assert_eq!(ds.len(), 1, "delivery {round}");
        q.apply(Command::Settle(vec![ds[0].2], Settle::Requeue), T0);
    }
    q.run(T0);
    let dead: Vec<Arc<Message>> = q
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::DeadLetter { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(dead.len(), 1, "dead-lettered once, on its second return");
    let headers = dead[0]
        .properties
        .headers()
        .and_then(Result::ok)
        .unwrap_or_default();
    assert_eq!(
        headers
            .get("x-first-death-reason")
            .and_then(FieldValue::as_bytes)
            .map(|b| b.to_vec()),
        Some(b"delivery_limit".to_vec())
    );
    assert_eq!(q.ready_len(), 0, "and gone from the queue");
}

#[test]
fn without_a_dead_letter_exchange_a_poison_message_is_dropped() {
    let mut q = quorum_with(QueueArgs {
        delivery_limit: Some(0),
        ..Default::default()
    });
    consume(&mut q, spec(1, "c"));
    publish(&mut q, &["poison", "fine"]);
    let ds = delivered(&mut q, T0);
    q.apply(
        Command::Settle(vec![seq_of(&ds, "poison")], Settle::Requeue),
        T0,
    );
    assert_eq!(q.ready_len(), 0);
    assert!(delivered(&mut q, T0).is_empty());
}

#[test]
fn a_consumer_that_goes_returns_its_messages_counted() {
    let mut q = quorum_with(QueueArgs::default());
    consume(&mut q, spec(1, "gone"));
    publish(&mut q, &["a", "b"]);
    assert_eq!(delivered(&mut q, T0).len(), 2);
    q.apply(
        Command::ChannelClosed {
            conn: spec(1, "gone").conn,
            channel_key: 1,
        },
        T0,
    );
    consume(&mut q, spec(2, "next"));
    assert_eq!(
        deliveries(&mut q),
        [
            ("a".to_owned(), true, Some(1)),
            ("b".to_owned(), true, Some(1))
        ]
    );
}

#[test]
fn persistent_messages_are_confirmed_at_once_and_paged_out_past_the_memory_allowance() {
    // Its log is the group's: a replica writes messages out only as pages, to spare its
    // memory, and never waits for them to be durable.
    let pages = std::env::temp_dir().join(format!("warren-pages-{}", std::process::id()));
    let mut q = super::tests::queue_at(
        QueueType::Quorum,
        QueueArgs::default(),
        QueueDisk {
            dir: pages.clone(),
            segment_bytes: 1 << 20,
            memory_bytes: 1,
        },
    );
    let persistent = BasicProperties {
        delivery_mode: Some(2),
        ..Default::default()
    };
    let ticket = Ticket {
        conn: spec(1, "p").conn,
        channel: 1,
        channel_key: 1,
        seq: 7,
        commit: false,
    };
    let batch = (0..3)
        .map(|i| {
            let m = message_with(&format!("m{i}"), persistent.clone());
            (
                m,
                Some(Ticket {
                    seq: i,
                    ..ticket.clone()
                }),
            )
        })
        .collect();
    q.apply(Command::Publish(batch), T0);
    let settled: Vec<(Vec<u64>, bool)> = q
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Settled { tickets, ok } => Some((tickets.iter().map(|t| t.seq).collect(), ok)),
            _ => None,
        })
        .collect();
    assert_eq!(settled, [(vec![0, 1, 2], true)]);
    assert_eq!(q.ready_len(), 3);
    assert_eq!(q.mem_bytes(), 0, "all three paged out");
    assert!(q.start_sync().is_none(), "nothing waits for an fsync");
    consume(&mut q, spec(1, "c"));
    let bodies: Vec<String> = delivered(&mut q, T0).into_iter().map(|d| d.1).collect();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    let _ = std::fs::remove_dir_all(&pages);
}

#[test]
fn replicas_given_the_same_commands_do_the_same() {
    // Two replicas (their maps seeded differently) see the same commands, among them a
    // channel closing with many deliveries out: every delivery must match.
    let run = || {
        let mut q = quorum_with(QueueArgs {
            delivery_limit: Some(3),
            ..Default::default()
        });
        let mut log = Vec::new();
        consume(&mut q, spec(1, "a"));
        let bodies: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        publish(&mut q, &refs);
        for round in 0..4 {
            let ds = deliveries(&mut q);
            log.push(ds.clone());
            q.apply(
                Command::ChannelClosed {
                    conn: spec(1, "a").conn,
                    channel_key: 1,
                },
                T0,
            );
            consume(&mut q, spec(1, &format!("a{round}")));
        }
        log.push(deliveries(&mut q));
        log
    };
    let (one, two) = (run(), run());
    assert_eq!(one, two);
    assert_eq!(one[1][0], ("m0".to_owned(), true, Some(1)));
    assert!(
        one[4].is_empty(),
        "past the limit, every message was dropped"
    );
}

/// Publishes one message with a ticket; whether it was taken (confirmed).
fn offer(q: &mut QueueState, n: u64) -> bool {
    let ticket = Ticket {
        conn: spec(1, "p").conn,
        channel: 1,
        channel_key: 1,
        seq: n,
        commit: false,
    };
    let m = message_with(&format!("m{n}"), BasicProperties::default());
    q.apply(Command::Publish(vec![(m, Some(ticket))]), T0);
    let oks: Vec<bool> = q
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Settled { ok, .. } => Some(ok),
            _ => None,
        })
        .collect();
    assert_eq!(oks.len(), 1, "one answer");
    oks[0]
}

fn get(q: &mut QueueState) {
    let conn = spec(2, "g").conn;
    q.apply(
        Command::Get {
            conn,
            channel_key: 2,
            no_ack: true,
        },
        T0,
    );
    q.take_effects();
}

#[test]
fn reject_publish_refuses_from_past_the_limit_down_to_80_percent() {
    // As RabbitMQ 3.10's quorum queues: the publish that goes over the limit is taken, then
    // publishes are refused until the queue is at trunc(0.8 x max-length) or below.
    let args = QueueArgs {
        max_length: Some(3),
        overflow: warren_meta::Overflow::RejectPublish,
        ..Default::default()
    };
    let mut q = quorum_with(args.clone());
    let taken: Vec<bool> = (0..5).map(|i| offer(&mut q, i)).collect();
    assert_eq!(taken, [true, true, true, true, false]);
    assert_eq!(q.ready_len(), 4);
    get(&mut q);
    assert!(!offer(&mut q, 5), "3 left is above 80 % of 3");
    get(&mut q);
    assert!(offer(&mut q, 6), "2 left: taken again");
    assert!(offer(&mut q, 7), "3 is not over 3");
    assert!(!offer(&mut q, 8), "4 was over 3");
    // The refusing survives a snapshot.
    let mut copy = quorum_with(args);
    copy.restore(q.image(), None);
    assert!(!offer(&mut copy, 9));

    let mut zero = quorum_with(QueueArgs {
        max_length: Some(0),
        overflow: warren_meta::Overflow::RejectPublish,
        ..Default::default()
    });
    assert_eq!([offer(&mut zero, 0), offer(&mut zero, 1)], [true, false]);
}
