"""Queues: naming, declaration rules, exclusivity, auto-delete, purge and delete."""

import re
import time

import pika
import pytest

from conftest import drain, params, uniq, wait_for

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'. "
    "It could be originally declared on another connection or the exclusive property value "
    "does not match that of the original declaration."
)


def closed(exc_info):
    return exc_info.value.reply_code, exc_info.value.reply_text


def test_server_named_queue(ch):
    ok = ch.queue_declare("", exclusive=True).method
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", ok.queue)
    assert (ok.message_count, ok.consumer_count) == (0, 0)


def test_declare_ok_counts_messages_and_consumers(conn, ch):
    q = uniq()
    ch.queue_declare(q, auto_delete=True)
    for i in range(3):
        ch.basic_publish("", q, b"m")
    other = conn.channel()
    other.basic_consume(q, lambda *a: None, auto_ack=False)
    conn.process_data_events(time_limit=0.2)
    ok = ch.queue_declare(q, passive=True).method
    # Delivered (unacked) messages are not counted as ready.
    assert ok.consumer_count == 1
    assert ok.message_count == 0
    assert ok.queue == q


def test_passive_declare_of_missing_queue(ch):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("no-such-queue", passive=True)
    assert closed(e) == (404, "NOT_FOUND - no queue 'no-such-queue' in vhost '/'")


def test_reserved_prefix(ch):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("amq.mine")
    assert closed(e) == (403, "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'")


@pytest.mark.parametrize(
    "first,second,arg,received,current",
    [
        ({}, {"durable": True}, "durable", "'true'", "'false'"),
        ({}, {"auto_delete": True}, "auto_delete", "'true'", "'false'"),
        (
            {"arguments": {"x-max-length": 10}},
            {"arguments": {"x-max-length": 20}},
            "x-max-length",
            "'20'",
            "'10'",
        ),
        (
            {},
            {"arguments": {"x-message-ttl": 1000}},
            "x-message-ttl",
            "the value '1000' of type 'signedint'",
            "none",
        ),
    ],
)
def test_inequivalent_redeclare(conn, first, second, arg, received, current):
    q = uniq()
    ch = conn.channel()
    ch.queue_declare(q, **first)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(q, **second)
    assert closed(e) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{q}' in vhost '/': "
        f"received {received} but current is {current}",
    )
    conn.channel().queue_delete(q)


def test_unknown_arguments_are_not_compared(ch):
    q = uniq()
    ch.queue_declare(q, auto_delete=True, arguments={"my-arg": 1})
    ch.queue_declare(q, auto_delete=True, arguments={"my-arg": 2})
    ch.queue_delete(q)


def test_exclusive_queue_is_locked_to_its_connection(conn, other_conn):
    q = uniq("excl")
    conn.channel().queue_declare(q, exclusive=True)
    for action in [
        lambda c: c.queue_declare(q, passive=True),
        lambda c: c.queue_declare(q),
        lambda c: c.basic_consume(q, lambda *a: None),
        lambda c: c.basic_get(q),
        lambda c: c.queue_purge(q),
        lambda c: c.queue_delete(q),
        lambda c: c.queue_bind(q, "amq.direct", "k"),
    ]:
        ch = other_conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            action(ch)
        assert closed(e) == (405, LOCKED.format(q))


def test_exclusive_queue_goes_with_its_connection(other_conn):
    c = pika.BlockingConnection(params())
    q = uniq("excl")
    c.channel().queue_declare(q, exclusive=True)
    c.close()
    ch = other_conn.channel()
    deadline = time.time() + 5
    while True:
        try:
            ch.queue_declare(q, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404
            break
        assert time.time() < deadline, "exclusive queue outlived its connection"
        time.sleep(0.05)


def test_auto_delete_after_last_consumer(conn):
    ch = conn.channel()
    q = uniq("auto")
    ch.queue_declare(q, auto_delete=True)
    t1 = ch.basic_consume(q, lambda *a: None)
    t2 = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(t1)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1
    ch.basic_cancel(t2)
    probe = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        probe.queue_declare(q, passive=True)
    assert e.value.reply_code == 404


def test_purge_and_delete_report_counts(ch):
    q = uniq()
    ch.queue_declare(q)
    for _ in range(4):
        ch.basic_publish("", q, b"x")
    assert ch.queue_purge(q).method.message_count == 4
    ch.basic_publish("", q, b"y")
    assert ch.queue_delete(q).method.message_count == 1
    # Deleting a queue that is not there is not an error.
    assert ch.queue_delete(q).method.message_count == 0


def test_conditional_delete(conn):
    ch = conn.channel()
    q = uniq()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_delete(q, if_empty=True)
    assert closed(e) == (406, f"PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty")
    consumer = conn.channel()
    consumer.basic_consume(q, lambda *a: None)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_delete(q, if_unused=True)
    assert closed(e) == (406, f"PRECONDITION_FAILED - queue '{q}' in vhost '/' in use")
    conn.channel().queue_delete(q)


def test_bind_and_unbind(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.direct", "k1")
    ch.basic_publish("amq.direct", "k1", b"bound")
    assert drain(ch, q) == [b"bound"]
    ch.queue_unbind(q, "amq.direct", "k1")
    ch.basic_publish("amq.direct", "k1", b"unbound")
    assert drain(ch, q) == []
    # Unbinding what was never bound is fine.
    ch.queue_unbind(q, "amq.direct", "never")


def test_bind_to_missing_things(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_bind(q, "no-such-exchange")
    assert closed(e) == (404, "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'")
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_bind("no-such-queue", "amq.direct")
    assert closed(e) == (404, "NOT_FOUND - no queue 'no-such-queue' in vhost '/'")


def test_deleted_queue_cancels_consumers(conn):
    ch = conn.channel()
    q = uniq()
    ch.queue_declare(q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    conn.channel().queue_delete(q)
    assert wait_for(conn, lambda: cancelled == [tag])
