//! At-least-once dead-lettering on the state machine: what is dropped is held until the
//! leader reports it confirmed, counts against the length limits, goes again at a takeover,
//! survives a snapshot, and only RabbitMQ's conditions turn it on.

use super::tests::{consume, delivered, publish, queue_of, spec};
use super::*;
use crate::queue::Settle;
use warren_meta::{Overflow, QueueArgs, QueueType};

const T0: u64 = 1_000_000;

fn at_least_once() -> QueueArgs {
    QueueArgs {
        dead_letter_exchange: Some("dlx".into()),
        dead_letter_at_least_once: true,
        overflow: Overflow::RejectPublish,
        ..Default::default()
    }
}

/// Rejects (without requeue) everything the queue delivers to its consumer; returns the dead
/// letters it asked for: (body, held number).
fn reject_all(q: &mut QueueState) -> Vec<(String, Option<u64>)> {
    let seqs: Vec<u64> = delivered(q, T0).into_iter().map(|(_, _, s)| s).collect();
    q.apply(Command::Settle(seqs, Settle::Discard), T0);
    dead_letters(q.take_effects())
}

fn dead_letters(effects: Vec<Effect>) -> Vec<(String, Option<u64>)> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::DeadLetter { message, held } => Some((super::tests::body(&message), held)),
            _ => None,
        })
        .collect()
}

fn quorum(args: QueueArgs) -> QueueState {
    let mut q = queue_of(QueueType::Quorum, args, u64::MAX);
    consume(&mut q, spec(1, "c"));
    q
}

#[test]
fn a_dropped_message_is_held_until_its_dead_letter_is_confirmed() {
    let mut q = quorum(at_least_once());
    publish(&mut q, &["a", "b"]);
    let dead = reject_all(&mut q);
    assert_eq!(dead, [("a".to_owned(), Some(0)), ("b".to_owned(), Some(1))]);
    assert_eq!((q.ready_len(), q.held_len()), (0, 2));
    q.apply(Command::DeadLettered { ids: vec![0] }, T0);
    assert_eq!(q.held_len(), 1);
    // Told twice (a leader that reports again): nothing more happens.
    q.apply(Command::DeadLettered { ids: vec![0, 7] }, T0);
    assert_eq!(q.held_len(), 1);
    q.apply(Command::DeadLettered { ids: vec![1] }, T0);
    assert_eq!(q.held_len(), 0);
}

#[test]
fn without_reject_publish_or_a_dead_letter_exchange_it_is_at_most_once() {
    // RabbitMQ falls back to at-most-once with drop-head, and to no dead-lettering at all
    // without an exchange; a classic queue never holds.
    let drop_head = QueueArgs {
        overflow: Overflow::DropHead,
        ..at_least_once()
    };
    let mut q = quorum(drop_head);
    publish(&mut q, &["a"]);
    assert_eq!(reject_all(&mut q), [("a".to_owned(), None)]);
    assert_eq!(q.held_len(), 0);

    let no_exchange = QueueArgs {
        dead_letter_exchange: None,
        ..at_least_once()
    };
    let mut q = quorum(no_exchange);
    publish(&mut q, &["a"]);
    assert_eq!(reject_all(&mut q), []);
    assert_eq!(q.held_len(), 0);

    let mut q = queue_of(QueueType::Classic, at_least_once(), u64::MAX);
    consume(&mut q, spec(1, "c"));
    publish(&mut q, &["a"]);
    assert_eq!(reject_all(&mut q), [("a".to_owned(), None)]);
    assert_eq!(q.held_len(), 0);
}

#[test]
fn held_dead_letters_count_against_the_length_limit() {
    let args = QueueArgs {
        max_length: Some(2),
        ..at_least_once()
    };
    let mut q = quorum(args);
    publish(&mut q, &["a", "b"]);
    reject_all(&mut q);
    // Two held, none ready: the next publish is taken (the check comes after, as in
    // RabbitMQ), the one after it refused.
    let ticket = |seq| Ticket {
        conn: spec(9, "p").conn,
        channel: 1,
        channel_key: 1,
        seq,
        commit: false,
    };
    let publish_one = |q: &mut QueueState, seq: u64| {
        let m = super::tests::message(&format!("p{seq}"));
        q.apply(Command::Publish(vec![(m, Some(ticket(seq)))]), T0);
        q.take_effects()
            .into_iter()
            .find_map(|e| match e {
                Effect::Settled { tickets, ok } if tickets.iter().any(|t| t.seq == seq) => Some(ok),
                _ => None,
            })
            .expect("answered")
    };
    assert!(publish_one(&mut q, 1));
    assert!(
        !publish_one(&mut q, 2),
        "refused while the dead letters are held"
    );
    // Confirmed, they no longer count: the queue is below 80 % and takes publishes again.
    q.apply(Command::DeadLettered { ids: vec![0, 1] }, T0);
    assert!(publish_one(&mut q, 3));
}

#[test]
fn a_new_leader_publishes_every_held_dead_letter_again() {
    let mut q = quorum(at_least_once());
    publish(&mut q, &["a", "b", "c"]);
    reject_all(&mut q);
    q.apply(Command::DeadLettered { ids: vec![1] }, T0);
    let again = dead_letters(q.in_flight());
    assert_eq!(
        again,
        [("a".to_owned(), Some(0)), ("c".to_owned(), Some(2))]
    );
}

#[test]
fn a_snapshot_keeps_the_held_dead_letters_and_their_numbering() {
    let mut q = quorum(at_least_once());
    publish(&mut q, &["a", "b"]);
    reject_all(&mut q);
    let image = q.image();
    let mut other = queue_of(QueueType::Quorum, at_least_once(), u64::MAX);
    other.restore(image, None);
    assert_eq!(other.held_len(), 2);
    assert_eq!(
        dead_letters(other.in_flight()),
        [("a".to_owned(), Some(0)), ("b".to_owned(), Some(1))]
    );
    // Numbers go on where the image left them, on both alike.
    publish(&mut q, &["c"]);
    publish(&mut other, &["c"]);
    assert_eq!(reject_all(&mut q), reject_all(&mut other));
    assert_eq!(other.held_len(), 3);
}

#[test]
fn purge_lets_the_held_dead_letters_go() {
    let mut q = quorum(at_least_once());
    publish(&mut q, &["a", "b"]);
    reject_all(&mut q);
    publish(&mut q, &["c"]);
    let purged = q.apply(Command::Purge, T0);
    assert!(
        matches!(purged, Reply::Purged(1)),
        "the ready one counted, the held ones not: {purged:?}"
    );
    assert_eq!(q.held_len(), 0);
}
