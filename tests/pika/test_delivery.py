"""Publishing and consuming: properties, large bodies, returns, consumers, acknowledgements,
prefetch."""

import time

import pika
import pytest

from conftest import drain, params, uniq, wait_for


def closed(exc_info):
    return exc_info.value.reply_code, exc_info.value.reply_text


def test_all_basic_properties_roundtrip(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="gzip",
        headers={
            "str": "text",
            "int": 42,
            "neg": -7,
            "big": 2**40,
            "bool": True,
            "none": None,
            "list": [1, "two", False],
            "nested": {"inner": "value"},
            "bytes": b"\x00\x01",
        },
        delivery_mode=2,
        priority=5,
        correlation_id="corr-1",
        reply_to="replies",
        expiration="600000",
        message_id="msg-1",
        timestamp=1700000000,
        type="event",
        user_id="guest",
        app_id="tests",
        cluster_id="cluster-a",
    )
    ch.basic_publish("", q, b"payload", props)
    method, got, body = ch.basic_get(q, auto_ack=True)
    assert body == b"payload"
    for field in [
        "content_type",
        "content_encoding",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
        "cluster_id",
    ]:
        assert getattr(got, field) == getattr(props, field), field
    assert got.headers == props.headers


@pytest.mark.parametrize("size", [0, 1, 131072 - 8, 131072, 1024 * 1024 + 3])
def test_bodies_of_every_size_arrive_byte_exact(ch, size):
    q = ch.queue_declare("", exclusive=True).method.queue
    body = bytes((i * 7) % 256 for i in range(size))
    ch.basic_publish("", q, body)
    method, _props, got = ch.basic_get(q, auto_ack=True)
    assert got == body


def test_mandatory_unroutable_is_returned(conn):
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append((method.reply_code, method.reply_text, method.routing_key, body)))
    ch.basic_publish("amq.direct", "no-one", b"back", mandatory=True)
    assert wait_for(conn, lambda: returned)
    assert returned == [(312, "NO_ROUTE", "no-one", b"back")]


def test_unroutable_without_mandatory_is_dropped_silently(conn):
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda *a: returned.append(a))
    ch.basic_publish("amq.direct", "no-one", b"gone")
    conn.process_data_events(time_limit=0.3)
    assert returned == []


def test_consume_with_server_tag_and_cancel(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    got = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    assert tag.startswith("ctag") or tag.startswith("amq.ctag-")
    ch.basic_publish("", q, b"one")
    assert wait_for(conn, lambda: got == [b"one"])
    ch.basic_cancel(tag)
    ch.basic_publish("", q, b"two")
    conn.process_data_events(time_limit=0.2)
    assert got == [b"one"]
    assert drain(ch, q) == [b"two"]


def test_server_generated_consumer_tag(conn):
    # pika always sends its own tag; use a raw-empty tag through the impl to see the server's.
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    tags = []
    ch._impl.basic_consume(q, lambda *a: None, consumer_tag=None, callback=lambda f: tags.append(f.method.consumer_tag))
    assert wait_for(conn, lambda: tags)
    assert tags[0].startswith("ctag") or tags[0].startswith("amq.ctag-")


def test_exclusive_consumer_conflicts(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_consume(q, lambda *a: None, exclusive=True)
    other = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        other.basic_consume(q, lambda *a: None)
    assert closed(e) == (403, f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")


def test_consumer_priorities(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    low, high = [], []
    ch.basic_qos(prefetch_count=100)
    ch.basic_consume(q, lambda c, m, p, b: low.append(b), auto_ack=True, arguments={"x-priority": 1})
    ch.basic_consume(q, lambda c, m, p, b: high.append(b), auto_ack=True, arguments={"x-priority": 10})
    for i in range(20):
        ch.basic_publish("", q, str(i).encode())
    assert wait_for(conn, lambda: len(high) + len(low) == 20)
    assert len(high) == 20 and low == []


def test_round_robin_between_equal_consumers(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    a, b = [], []
    ch.basic_consume(q, lambda c, m, p, body: a.append(body), auto_ack=True)
    ch.basic_consume(q, lambda c, m, p, body: b.append(body), auto_ack=True)
    for i in range(10):
        ch.basic_publish("", q, str(i).encode())
    assert wait_for(conn, lambda: len(a) + len(b) == 10)
    assert len(a) == 5 and len(b) == 5


def test_get_and_get_empty(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    assert ch.basic_get(q) == (None, None, None)
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    method, _, body = ch.basic_get(q)
    assert body == b"1" and method.message_count == 1 and not method.redelivered
    ch.basic_ack(method.delivery_tag)


def test_ack_multiple_and_nack_requeue(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(4):
        ch.basic_publish("", q, str(i).encode())
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, m.redelivered, b)))
    assert wait_for(conn, lambda: len(got) == 4)
    ch.basic_ack(got[1][0], multiple=True)  # acks 0 and 1
    ch.basic_nack(got[3][0], multiple=False, requeue=True)  # 3 comes back
    assert wait_for(conn, lambda: len(got) == 5)
    assert got[4][1:] == (True, b"3")
    ch.basic_reject(got[2][0], requeue=False)  # 2 is dropped
    ch.basic_ack(got[4][0])
    conn.process_data_events(time_limit=0.2)
    assert len(got) == 5
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_nack_multiple_requeues_all_in_order(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(3):
        ch.basic_publish("", q, str(i).encode())
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[-1], multiple=True, requeue=True)
    again = [ch.basic_get(q, auto_ack=True) for _ in range(3)]
    assert [b for (_, _, b) in again] == [b"0", b"1", b"2"]
    assert all(m.redelivered for (m, _, _) in again)


def test_unknown_and_double_ack_are_406(conn):
    ch = conn.channel()
    ch.basic_ack(99)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("", exclusive=True)
    assert closed(e) == (406, "PRECONDITION_FAILED - unknown delivery tag 99")
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"x")
    method, _, _ = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    ch.basic_ack(method.delivery_tag)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("", exclusive=True)
    assert closed(e) == (406, f"PRECONDITION_FAILED - unknown delivery tag {method.delivery_tag}")


def test_recover_requeues_unacked(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"again")
    method, _, _ = ch.basic_get(q)
    assert not method.redelivered
    ch.basic_recover(requeue=True)
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"again" and method.redelivered


def test_closing_the_channel_requeues_unacked(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(3):
        ch.basic_publish("", q, str(i).encode())
    consumer = conn.channel()
    got = []
    consumer.basic_consume(q, lambda c, m, p, b: got.append(b))
    assert wait_for(conn, lambda: len(got) == 3)
    consumer.close()
    assert drain(ch, q) == [b"0", b"1", b"2"]


def test_prefetch_per_consumer(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(10):
        ch.basic_publish("", q, str(i).encode())
    ch.basic_qos(prefetch_count=3)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag))
    wait_for(conn, lambda: len(got) >= 3)
    conn.process_data_events(time_limit=0.3)
    assert len(got) == 3
    ch.basic_ack(got[-1], multiple=True)
    assert wait_for(conn, lambda: len(got) == 6)


def test_global_prefetch_spans_consumers(conn):
    ch = conn.channel()
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    for q in (q1, q2):
        for i in range(5):
            ch.basic_publish("", q, b"x")
    ch.basic_qos(prefetch_count=4, global_qos=True)
    got = []
    ch.basic_consume(q1, lambda c, m, p, b: got.append(m.delivery_tag))
    ch.basic_consume(q2, lambda c, m, p, b: got.append(m.delivery_tag))
    wait_for(conn, lambda: len(got) >= 4)
    conn.process_data_events(time_limit=0.3)
    assert len(got) == 4
    ch.basic_ack(0, multiple=True)
    assert wait_for(conn, lambda: len(got) == 8)


def test_global_prefetch_reaches_existing_consumers(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag))
    ch.basic_qos(prefetch_count=2, global_qos=True)
    for _ in range(5):
        ch.basic_publish("", q, b"x")
    wait_for(conn, lambda: len(got) >= 2)
    conn.process_data_events(time_limit=0.3)
    assert len(got) == 2
    ch.basic_ack(0, multiple=True)
    assert wait_for(conn, lambda: len(got) == 4)


def test_a_delivery_held_under_a_global_prefetch_goes_back_unseen_on_cancel(conn):
    ch = conn.channel()
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q1, b"one")
    ch.basic_qos(prefetch_count=1, global_qos=True)
    got = []
    ch.basic_consume(q1, lambda c, m, p, b: got.append(b))
    assert wait_for(conn, lambda: got == [b"one"])
    tag2 = ch.basic_consume(q2, lambda c, m, p, b: got.append(b))
    ch.basic_publish("", q2, b"two")
    conn.process_data_events(time_limit=0.3)
    assert got == [b"one"], "the channel is at its limit"
    ch.basic_cancel(tag2)
    other = conn.channel()
    method, _, body = other.basic_get(q2, auto_ack=True)
    assert body == b"two"
    assert not method.redelivered, "its client never saw it"


def test_qos_prefetch_size_not_implemented(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        ch.basic_qos(prefetch_size=1000, prefetch_count=1)
    assert closed(e) == (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)")


def test_user_id_must_match(conn):
    ch = conn.channel()
    ch.basic_publish("", "anything", b"x", pika.BasicProperties(user_id="someone-else"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("", exclusive=True)
    assert closed(e) == (406, "PRECONDITION_FAILED - user_id property set to 'someone-else' but authenticated user was 'guest'")


def test_channel_error_does_not_disturb_other_channels(conn):
    good = conn.channel()
    q = good.queue_declare("", exclusive=True).method.queue
    bad = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        bad.queue_declare("no-such-queue", passive=True)
    good.basic_publish("", q, b"still fine")
    assert drain(good, q) == [b"still fine"]
