//! The queue's rules, checked on the state machine alone: no sockets, no tasks, no clock.

use super::*;
use crate::message::Body;
use bytes::Bytes;
use warren_amqp::{BasicProperties, FieldTable};
use warren_meta::{NodeId, Overflow, QueueArgs, QueueType, Uid};

const T0: u64 = 1_000_000;

fn conn(n: u64) -> ConnId {
    Uid { node: NodeId(1), n }
}

fn queue_with(args: QueueArgs) -> QueueState {
    queue_of(QueueType::Classic, args, u64::MAX)
}

/// A queue of kind `kind` (a quorum queue is durable, as it must be) allowed `memory_bytes`
/// of messages in memory.
pub(crate) fn queue_of(kind: QueueType, args: QueueArgs, memory_bytes: u64) -> QueueState {
    queue_at(
        kind,
        args,
        QueueDisk {
            // Never opened: these queues stay within their memory allowance.
            dir: std::path::PathBuf::from("/nonexistent/warren-state-test"),
            segment_bytes: 1 << 20,
            memory_bytes,
        },
    )
}

/// A queue keeping its messages as `store` says.
pub(crate) fn queue_at(kind: QueueType, args: QueueArgs, store: QueueDisk) -> QueueState {
    let info = Queue {
        name: ShortStr::from("q"),
        id: Uid {
            node: NodeId(1),
            n: 99,
        },
        durable: kind == QueueType::Quorum,
        auto_delete: false,
        exclusive_owner: None,
        arguments: FieldTable::default(),
        args,
        kind,
        home: NodeId(1),
        members: Vec::new(),
    };
    let start = Start {
        store,
        storage: None,
        levels: Vec::new(),
        next_seq: 1,
    };
    QueueState::new("/", info, start, T0)
}

fn queue() -> QueueState {
    queue_with(QueueArgs::default())
}

pub(crate) fn message_with(body: &str, props: BasicProperties) -> Arc<Message> {
    Arc::new(Message {
        exchange: ShortStr::from(""),
        routing_key: ShortStr::from("q"),
        properties: props.encode(),
        body: Body::from_bytes(Bytes::from(body.to_owned())),
    })
}

pub(crate) fn message(body: &str) -> Arc<Message> {
    message_with(body, BasicProperties::default())
}

pub(crate) fn body(m: &Message) -> String {
    String::from_utf8_lossy(&m.body.to_bytes()).into_owned()
}

pub(crate) fn spec(c: u64, tag: &str) -> ConsumerSpec {
    ConsumerSpec {
        tag: ShortStr::from(tag),
        conn: conn(c),
        channel: 1,
        channel_key: 1,
        no_ack: false,
        prefetch: 0,
        exclusive: false,
        priority: 0,
        credit: 1000,
    }
}

pub(crate) fn consume(q: &mut QueueState, spec: ConsumerSpec) -> u64 {
    match q.apply(Command::Consume(spec), T0) {
        Reply::Consumed(Ok(id)) => id,
        other => panic!("consume refused: {other:?}"),
    }
}

pub(crate) fn publish(q: &mut QueueState, bodies: &[&str]) {
    let batch = bodies.iter().map(|b| (message(b), None)).collect();
    q.apply(Command::Publish(batch), T0);
}

/// Runs the queue at `now` and returns its deliveries.
pub(crate) fn run_deliveries(q: &mut QueueState, now: u64) -> Vec<crate::mail::Delivery> {
    q.run(now);
    q.take_effects()
        .into_iter()
        .flat_map(|e| match e {
            Effect::Deliver { deliveries, .. } => deliveries,
            _ => Vec::new(),
        })
        .collect()
}

/// Runs the queue at `now` and returns what it delivered: (consumer tag, body, seq).
pub(crate) fn delivered(q: &mut QueueState, now: u64) -> Vec<(String, String, u64)> {
    run_deliveries(q, now)
        .into_iter()
        .map(|d| (d.consumer_tag.to_string(), body(&d.message), d.seq))
        .collect()
}

/// Runs the queue and returns what it delivered, as (body, redelivered).
fn redelivery(q: &mut QueueState) -> Vec<(String, bool)> {
    run_deliveries(q, T0)
        .into_iter()
        .map(|d| (body(&d.message), d.redelivered))
        .collect()
}

fn tags(ds: &[(String, String, u64)]) -> Vec<&str> {
    ds.iter().map(|(t, _, _)| t.as_str()).collect()
}

fn bodies(ds: &[(String, String, u64)]) -> Vec<&str> {
    ds.iter().map(|(_, b, _)| b.as_str()).collect()
}

fn dead_lettered(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::DeadLetter { message, .. } => Some(body(message)),
            _ => None,
        })
        .collect()
}

#[test]
fn equal_consumers_take_turns() {
    let mut q = queue();
    consume(&mut q, spec(1, "a"));
    consume(&mut q, spec(2, "b"));
    publish(&mut q, &["1", "2", "3", "4", "5"]);
    // Deliveries come grouped by connection (one mail each): a's, then b's.
    let got = delivered(&mut q, T0);
    assert_eq!(tags(&got), ["a", "a", "a", "b", "b"]);
    assert_eq!(bodies(&got), ["1", "3", "5", "2", "4"]);
}

#[test]
fn higher_priority_consumers_are_served_first_while_they_can_take() {
    let mut q = queue();
    consume(&mut q, spec(1, "low"));
    consume(
        &mut q,
        ConsumerSpec {
            priority: 5,
            prefetch: 2,
            ..spec(2, "high")
        },
    );
    publish(&mut q, &["1", "2", "3", "4"]);
    let got = delivered(&mut q, T0);
    assert_eq!(tags(&got), ["high", "high", "low", "low"]);
}

#[test]
fn prefetch_holds_messages_until_acknowledged() {
    let mut q = queue();
    consume(
        &mut q,
        ConsumerSpec {
            prefetch: 2,
            ..spec(1, "a")
        },
    );
    publish(&mut q, &["1", "2", "3"]);
    let got = delivered(&mut q, T0);
    assert_eq!(bodies(&got), ["1", "2"]);
    assert!(delivered(&mut q, T0).is_empty(), "at its prefetch");
    q.apply(Command::Settle(vec![got[0].2], Settle::Ack), T0);
    assert_eq!(bodies(&delivered(&mut q, T0)), ["3"]);
}

#[test]
fn credit_bounds_deliveries_until_the_connection_grants_more() {
    let mut q = queue();
    let id = consume(
        &mut q,
        ConsumerSpec {
            no_ack: true,
            credit: 2,
            ..spec(1, "a")
        },
    );
    publish(&mut q, &["1", "2", "3", "4"]);
    assert_eq!(bodies(&delivered(&mut q, T0)), ["1", "2"]);
    assert!(delivered(&mut q, T0).is_empty(), "out of credit");
    q.apply(Command::Credit { consumer: id, n: 1 }, T0);
    assert_eq!(bodies(&delivered(&mut q, T0)), ["3"]);
}

#[test]
fn a_large_message_costs_more_credit() {
    let mut q = queue();
    let id = consume(
        &mut q,
        ConsumerSpec {
            no_ack: true,
            credit: 3,
            ..spec(1, "a")
        },
    );
    let big = "x".repeat(200 * 1024);
    q.apply(
        Command::Publish(vec![(message(&big), None), (message("small"), None)]),
        T0,
    );
    // 200 kB costs 1 + 3: it still goes (credit was left), and leaves the consumer owing.
    assert_eq!(delivered(&mut q, T0).len(), 1);
    q.apply(Command::Credit { consumer: id, n: 1 }, T0);
    assert!(delivered(&mut q, T0).is_empty(), "still owes");
    q.apply(Command::Credit { consumer: id, n: 1 }, T0);
    assert_eq!(bodies(&delivered(&mut q, T0)), ["small"]);
}

#[test]
fn single_active_consumer_only_feeds_the_oldest() {
    let mut q = queue_with(QueueArgs {
        single_active_consumer: true,
        ..Default::default()
    });
    consume(&mut q, spec(1, "first"));
    consume(
        &mut q,
        ConsumerSpec {
            priority: 9,
            ..spec(2, "second")
        },
    );
    publish(&mut q, &["1", "2", "3"]);
    assert_eq!(tags(&delivered(&mut q, T0)), ["first"; 3]);
    q.apply(
        Command::Cancel {
            conn: conn(1),
            channel_key: 1,
            tag: ShortStr::from("first"),
        },
        T0,
    );
    publish(&mut q, &["4"]);
    assert_eq!(tags(&delivered(&mut q, T0)), ["second"]);
}

#[test]
fn an_exclusive_consumer_shuts_others_out() {
    let mut q = queue();
    consume(
        &mut q,
        ConsumerSpec {
            exclusive: true,
            ..spec(1, "a")
        },
    );
    match q.apply(Command::Consume(spec(2, "b")), T0) {
        Reply::Consumed(Err(e)) => assert_eq!(e.code, 403),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_closed_channel_gives_its_deliveries_back_redelivered_in_order() {
    let mut q = queue();
    consume(&mut q, spec(1, "a"));
    publish(&mut q, &["1", "2"]);
    assert_eq!(delivered(&mut q, T0).len(), 2);
    q.apply(
        Command::ChannelClosed {
            conn: conn(1),
            channel_key: 1,
        },
        T0,
    );
    consume(&mut q, spec(2, "b"));
    let redelivered = redelivery(&mut q);
    assert_eq!(redelivered, [("1".into(), true), ("2".into(), true)]);
}

#[test]
fn a_gone_connection_loses_its_consumers_and_deliveries() {
    let mut q = queue();
    consume(&mut q, spec(1, "a"));
    publish(&mut q, &["1"]);
    assert_eq!(delivered(&mut q, T0).len(), 1);
    q.apply(Command::ConnectionGone { conn: conn(1) }, T0);
    assert!(!q.has_consumers());
    assert_eq!(q.ready_len(), 1);
}

#[test]
fn a_gone_node_takes_its_connections_consumers_and_no_others() {
    let mut q = queue();
    let far = ConsumerSpec {
        conn: Uid {
            node: NodeId(2),
            n: 1,
        },
        ..spec(0, "far")
    };
    consume(&mut q, far);
    consume(&mut q, spec(1, "near"));
    publish(&mut q, &["1", "2"]);
    assert_eq!(delivered(&mut q, T0).len(), 2);
    q.apply(Command::NodeGone { node: NodeId(2) }, T0);
    assert!(q.has_consumers(), "the consumer of this node stays");
    assert_eq!(q.ready_len(), 1, "the far consumer's delivery is back");
    q.apply(Command::NodeGone { node: NodeId(1) }, T0);
    assert!(!q.has_consumers());
    assert_eq!(q.ready_len(), 2);
}

#[test]
fn rejected_messages_are_dead_lettered_requeued_ones_are_not() {
    let mut q = queue_with(QueueArgs {
        dead_letter_exchange: Some(ShortStr::from("dlx")),
        ..Default::default()
    });
    consume(&mut q, spec(1, "a"));
    publish(&mut q, &["keep", "drop"]);
    let got = delivered(&mut q, T0);
    q.apply(Command::Settle(vec![got[0].2], Settle::Requeue), T0);
    q.apply(Command::Settle(vec![got[1].2], Settle::Discard), T0);
    let effects = q.take_effects();
    assert_eq!(dead_lettered(&effects), ["drop"]);
    assert_eq!(q.ready_len(), 1);
}

#[test]
fn messages_expire_at_the_head_and_are_dead_lettered() {
    let mut q = queue_with(QueueArgs {
        message_ttl: Some(100),
        dead_letter_exchange: Some(ShortStr::from("dlx")),
        ..Default::default()
    });
    publish(&mut q, &["old"]);
    assert_eq!(q.next_deadline(), Some(T0 + 100));
    q.run(T0 + 99);
    assert_eq!(q.ready_len(), 1, "not yet");
    q.run(T0 + 100);
    assert_eq!(q.ready_len(), 0);
    assert_eq!(dead_lettered(&q.take_effects()), ["old"]);
}

#[test]
fn per_message_ttl_takes_the_lower_of_message_and_queue() {
    let mut q = queue_with(QueueArgs {
        message_ttl: Some(1000),
        ..Default::default()
    });
    let short = BasicProperties {
        expiration: Some(ShortStr::from("10")),
        ..Default::default()
    };
    q.apply(Command::Publish(vec![(message_with("m", short), None)]), T0);
    assert_eq!(q.next_deadline(), Some(T0 + 10));
}

#[test]
fn ttl_zero_goes_to_a_consumer_that_can_take_it_or_nowhere() {
    let zero = || BasicProperties {
        expiration: Some(ShortStr::from("0")),
        ..Default::default()
    };
    let mut q = queue_with(QueueArgs {
        dead_letter_exchange: Some(ShortStr::from("dlx")),
        ..Default::default()
    });
    q.apply(
        Command::Publish(vec![(message_with("lost", zero()), None)]),
        T0,
    );
    assert_eq!(q.ready_len(), 0);
    assert_eq!(dead_lettered(&q.take_effects()), ["lost"]);
    consume(&mut q, spec(1, "a"));
    q.apply(
        Command::Publish(vec![(message_with("now", zero()), None)]),
        T0,
    );
    let effects = q.take_effects();
    let got: Vec<String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver { deliveries, .. } => Some(body(&deliveries[0].message)),
            _ => None,
        })
        .collect();
    assert_eq!(got, ["now"]);
}

#[test]
fn drop_head_makes_room_by_dropping_the_oldest() {
    let mut q = queue_with(QueueArgs {
        max_length: Some(2),
        dead_letter_exchange: Some(ShortStr::from("dlx")),
        ..Default::default()
    });
    publish(&mut q, &["1", "2", "3"]);
    assert_eq!(q.ready_len(), 2);
    assert_eq!(dead_lettered(&q.take_effects()), ["1"]);
    consume(&mut q, spec(1, "a"));
    assert_eq!(bodies(&delivered(&mut q, T0)), ["2", "3"]);
}

#[test]
fn reject_publish_refuses_the_newest_and_says_so_to_its_publisher() {
    let mut q = queue_with(QueueArgs {
        max_length: Some(1),
        overflow: Overflow::RejectPublishDlx,
        dead_letter_exchange: Some(ShortStr::from("dlx")),
        ..Default::default()
    });
    let ticket = |seq| Ticket {
        conn: conn(1),
        channel: 1,
        channel_key: 1,
        seq,
        commit: false,
    };
    q.apply(
        Command::Publish(vec![
            (message("in"), Some(ticket(1))),
            (message("out"), Some(ticket(2))),
        ]),
        T0,
    );
    let effects = q.take_effects();
    let answered: Vec<(u64, bool)> = effects
        .iter()
        .flat_map(|e| match e {
            Effect::Settled { tickets, ok } => tickets.iter().map(|t| (t.seq, *ok)).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(answered, [(1, true), (2, false)]);
    assert_eq!(dead_lettered(&effects), ["out"]);
    assert_eq!(q.ready_len(), 1);
}

#[test]
fn higher_priority_messages_go_first() {
    let mut q = queue_with(QueueArgs {
        max_priority: Some(5),
        ..Default::default()
    });
    let with = |p| BasicProperties {
        priority: Some(p),
        ..Default::default()
    };
    q.apply(
        Command::Publish(vec![
            (message_with("low", with(0)), None),
            (message_with("high", with(5)), None),
            (message_with("above-max", with(9)), None),
        ]),
        T0,
    );
    consume(&mut q, spec(1, "a"));
    assert_eq!(bodies(&delivered(&mut q, T0)), ["high", "above-max", "low"]);
}

#[test]
fn get_takes_the_head_and_counts_what_is_left() {
    let mut q = queue();
    publish(&mut q, &["1", "2"]);
    match q.apply(
        Command::Get {
            conn: conn(1),
            channel_key: 1,
            no_ack: true,
        },
        T0,
    ) {
        Reply::Got(Some(g)) => {
            assert_eq!(body(&g.message), "1");
            assert_eq!(g.remaining, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn delete_checks_its_conditions_then_cancels_consumers() {
    let mut q = queue();
    consume(&mut q, spec(1, "a"));
    match q.apply(
        Command::Delete {
            if_unused: true,
            if_empty: false,
        },
        T0,
    ) {
        Reply::Deleted(Err(e)) => assert_eq!(e.code, 406),
        other => panic!("{other:?}"),
    }
    assert!(!q.is_deleted());
    match q.apply(
        Command::Delete {
            if_unused: false,
            if_empty: false,
        },
        T0,
    ) {
        Reply::Deleted(Ok(0)) => {}
        other => panic!("{other:?}"),
    }
    assert!(q.is_deleted());
    let gone: Vec<ShortStr> = q
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::ConsumerGone { tag, .. } => Some(tag),
            _ => None,
        })
        .collect();
    assert_eq!(gone, [ShortStr::from("a")]);
}

#[test]
fn auto_delete_after_the_last_consumer_and_expiry_after_a_quiet_spell() {
    let mut q = queue_with(QueueArgs {
        expires: Some(500),
        ..Default::default()
    });
    assert!(!q.should_remove(T0 + 499));
    assert!(q.should_remove(T0 + 500));
    // A declaration (counts) is use.
    q.apply(Command::Counts, T0 + 400);
    assert!(!q.should_remove(T0 + 800));

    let mut q = queue();
    q.info.auto_delete = true;
    assert!(!q.should_remove(T0), "never had a consumer");
    consume(&mut q, spec(1, "a"));
    assert!(!q.should_remove(T0));
    q.apply(
        Command::Cancel {
            conn: conn(1),
            channel_key: 1,
            tag: ShortStr::from("a"),
        },
        T0,
    );
    assert!(q.should_remove(T0));
}

#[test]
fn transient_publishes_are_answered_in_one_effect() {
    let mut q = queue();
    let tickets: Vec<_> = (1..=3)
        .map(|seq| {
            (
                message("m"),
                Some(Ticket {
                    conn: conn(1),
                    channel: 1,
                    channel_key: 1,
                    seq,
                    commit: false,
                }),
            )
        })
        .collect();
    q.apply(Command::Publish(tickets), T0);
    let effects = q.take_effects();
    assert_eq!(effects.len(), 1);
    match &effects[0] {
        Effect::Settled { tickets, ok: true } => assert_eq!(tickets.len(), 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_shared_prefetch_change_reaches_an_existing_consumer() {
    let mut q = queue();
    let id = consume(&mut q, spec(1, "a"));
    q.apply(
        Command::Prefetch {
            consumer: id,
            prefetch: 1,
        },
        T0,
    );
    publish(&mut q, &["1", "2"]);
    assert_eq!(bodies(&delivered(&mut q, T0)), ["1"]);
}

/// A queue whose memory allowance is `bytes`, paging into a directory of its own.
fn small_queue(dir: &std::path::Path, bytes: u64) -> QueueState {
    let mut q = queue();
    q.store = QueueDisk {
        dir: dir.to_path_buf(),
        segment_bytes: 1 << 20,
        memory_bytes: bytes,
    };
    q
}

#[test]
fn a_full_allowance_goes_to_waiting_consumers_before_anything_goes_to_disk() {
    let dir = std::env::temp_dir().join(format!("warren-state-{}", std::process::id()));
    let mut fed = small_queue(&dir.join("fed"), 10);
    consume(&mut fed, spec(1, "a"));
    publish(&mut fed, &["12345678", "abcdefgh", "ABCDEFGH"]);
    assert!(
        fed.storage.is_none(),
        "nothing paged while a consumer takes"
    );
    assert_eq!(
        bodies(&delivered(&mut fed, T0)),
        ["12345678", "abcdefgh", "ABCDEFGH"]
    );

    let mut idle = small_queue(&dir.join("idle"), 10);
    publish(&mut idle, &["12345678", "abcdefgh"]);
    assert!(
        idle.storage.is_some(),
        "no consumer: the second message is paged"
    );
    assert_eq!(idle.ready_len(), 2);
    idle.stop(End::Deleted);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_delivery_its_client_never_saw_goes_back_not_redelivered() {
    let mut q = queue();
    consume(&mut q, spec(1, "a"));
    publish(&mut q, &["held", "seen"]);
    let got = delivered(&mut q, T0);
    q.apply(Command::Settle(vec![got[0].2], Settle::Unsent), T0);
    q.apply(Command::Settle(vec![got[1].2], Settle::Requeue), T0);
    q.apply(
        Command::Cancel {
            conn: conn(1),
            channel_key: 1,
            tag: ShortStr::from("a"),
        },
        T0,
    );
    consume(&mut q, spec(2, "b"));
    let again = redelivery(&mut q);
    assert_eq!(again, [("held".into(), false), ("seen".into(), true)]);
}
