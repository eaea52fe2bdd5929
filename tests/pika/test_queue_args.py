"""Queue arguments: TTL and expiration, x-expires, length limits and overflow, dead-lettering
with x-death, priorities, single active consumer, lazy mode. Checked against RabbitMQ 3.10."""

import time

import pika
import pytest

from conftest import drain, params, uniq, wait_for


def closed(exc_info):
    return exc_info.value.reply_code, exc_info.value.reply_text


def get_soon(ch, q, timeout=5.0):
    """The next message of `q`, waiting for it (dead-lettering is asynchronous)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        method, props, body = ch.basic_get(q, auto_ack=True)
        if method is not None:
            return method, props, body
        time.sleep(0.02)
    raise AssertionError(f"nothing arrived in {q} within {timeout} s")


def dead_letter_setup(ch):
    """A fanout dead-letter exchange and the queue that collects from it."""
    dlx = uniq("dlx")
    ch.exchange_declare(dlx, "fanout", auto_delete=True)
    dead = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(dead, dlx)
    return dlx, dead


def test_invalid_arguments_are_refused_with_rabbitmq_texts(conn):
    for args, text in [
        ({"x-message-ttl": -1}, "{value_negative,-1}"),
        ({"x-expires": 0}, "{value_zero,0}"),
        ({"x-overflow": "sometimes"}, "invalid_overflow"),
        ({"x-max-priority": 300}, "{max_value_exceeded,300}"),
    ]:
        ch = conn.channel()
        q = uniq("bad")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.queue_declare(q, arguments=args)
        arg = list(args)[0]
        assert closed(e) == (406, f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {text}")


def test_invalid_expiration_property_is_refused(conn):
    ch = conn.channel()
    ch.basic_publish("", "anywhere", b"x", pika.BasicProperties(expiration="soon"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("", exclusive=True)
    assert closed(e) == (406, "PRECONDITION_FAILED - invalid expiration 'soon': no_integer")


def test_message_ttl_expires_messages_even_without_consumers(ch):
    q = ch.queue_declare("", exclusive=True, arguments={"x-message-ttl": 200}).method.queue
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    assert ch.queue_declare(q, passive=True).method.message_count > 0
    time.sleep(0.6)
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_per_message_expiration(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", q, b"long", pika.BasicProperties(expiration="60000"))
    time.sleep(0.4)
    assert drain(ch, q) == [b"long"]


def test_expired_messages_are_dead_lettered_with_x_death(ch):
    dlx, dead = dead_letter_setup(ch)
    q = ch.queue_declare("", exclusive=True, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": dlx}).method.queue
    ch.basic_publish("", q, b"late", pika.BasicProperties(headers={"keep": "me"}))
    method, props, body = get_soon(ch, dead)
    assert body == b"late"
    assert method.exchange == dlx
    assert method.routing_key == q
    h = props.headers
    assert h["keep"] == "me"
    assert h["x-first-death-reason"] == "expired"
    assert h["x-first-death-queue"] == q
    assert h["x-first-death-exchange"] == ""
    death = h["x-death"][0]
    assert (death["reason"], death["queue"], death["count"], death["exchange"]) == ("expired", q, 1, "")
    assert death["routing-keys"] == [q]


def test_rejected_messages_are_dead_lettered_with_the_dead_letter_routing_key(ch):
    dlx = uniq("dlx")
    ch.exchange_declare(dlx, "direct", auto_delete=True)
    dead = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(dead, dlx, "retry")
    q = ch.queue_declare(
        "", exclusive=True, arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "retry"}
    ).method.queue
    ch.basic_publish("", q, b"bad")
    method, _, _ = ch.basic_get(q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    method, props, body = get_soon(ch, dead)
    assert (body, method.routing_key) == (b"bad", "retry")
    assert props.headers["x-death"][0]["reason"] == "rejected"
    assert props.headers["x-death"][0]["routing-keys"] == [q]


def test_a_message_dead_lettered_twice_counts_up(ch):
    # A queue whose dead letters come back to it: reject twice, count reaches 2.
    dlx = uniq("loop")
    ch.exchange_declare(dlx, "fanout", auto_delete=True)
    q = ch.queue_declare("", exclusive=True, arguments={"x-dead-letter-exchange": dlx}).method.queue
    ch.queue_bind(q, dlx)
    ch.basic_publish("", q, b"again")
    for _ in range(2):
        deadline = time.time() + 5
        method = None
        while method is None and time.time() < deadline:
            method, props, _ = ch.basic_get(q)
        ch.basic_reject(method.delivery_tag, requeue=False)
    method, props, _ = get_soon(ch, q)
    deaths = props.headers["x-death"]
    assert len(deaths) == 1
    assert deaths[0]["count"] == 2


def test_a_dead_letter_that_would_expire_round_a_cycle_is_dropped(ch):
    # RabbitMQ's cycle rule: q's expired messages go to a fanout exchange bound to q itself and
    # to a collector. The copy for q would close a loop with no rejection in it, so it is
    # dropped; the collector gets one copy. (Without the rule: a copy every turn of the loop.)
    dlx = uniq("cycle")
    ch.exchange_declare(dlx, "fanout", auto_delete=True)
    collector = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(collector, dlx)
    q = ch.queue_declare("", exclusive=True, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": dlx}).method.queue
    ch.queue_bind(q, dlx)
    ch.basic_publish("", q, b"round")
    method, props, body = get_soon(ch, collector)
    assert body == b"round"
    assert props.headers["x-death"][0]["reason"] == "expired"
    time.sleep(0.6)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    assert ch.queue_declare(collector, passive=True).method.message_count == 0, "one copy only"


def test_queue_expires_when_unused(conn):
    ch = conn.channel()
    q = uniq("expiring")
    ch.queue_declare(q, arguments={"x-expires": 300})
    time.sleep(0.8)
    probe = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        probe.queue_declare(q, passive=True)
    assert e.value.reply_code == 404


def test_a_consumer_keeps_an_expiring_queue_alive(conn):
    ch = conn.channel()
    q = uniq("kept")
    ch.queue_declare(q, arguments={"x-expires": 300})
    ch.basic_consume(q, lambda *a: None)
    conn.process_data_events(time_limit=0.8)
    assert conn.channel().queue_declare(q, passive=True).method.consumer_count == 1
    ch.queue_delete(q)


def test_max_length_drops_the_oldest_and_dead_letters_them(ch):
    dlx, dead = dead_letter_setup(ch)
    q = ch.queue_declare("", exclusive=True, arguments={"x-max-length": 3, "x-dead-letter-exchange": dlx}).method.queue
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    assert drain(ch, q) == [b"2", b"3", b"4"]
    got = []
    assert wait_for(ch.connection, lambda: got.extend(drain(ch, dead)) or len(got) == 2)
    assert got == [b"0", b"1"]


def test_max_length_bytes(ch):
    q = ch.queue_declare("", exclusive=True, arguments={"x-max-length-bytes": 10}).method.queue
    for b in [b"12345", b"67890", b"abcde"]:
        ch.basic_publish("", q, b)
    assert drain(ch, q) == [b"67890", b"abcde"]


def test_reject_publish_nacks_the_newest(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True, arguments={"x-max-length": 2, "x-overflow": "reject-publish"}).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"3")
    assert drain(ch, q) == [b"1", b"2"]


def test_reject_publish_dlx_also_dead_letters(conn):
    ch = conn.channel()
    dlx, dead = dead_letter_setup(ch)
    q = ch.queue_declare(
        "", exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": dlx}
    ).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"kept")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"refused")
    got = []
    assert wait_for(conn, lambda: got.extend(drain(ch, dead)) or got)
    assert got == [b"refused"]
    assert drain(ch, q) == [b"kept"]


def test_max_priority_delivers_higher_priorities_first(ch):
    q = ch.queue_declare("", exclusive=True, arguments={"x-max-priority": 10}).method.queue
    for body, prio in [(b"low", 1), (b"none", None), (b"high", 9), (b"over", 200), (b"mid", 5)]:
        ch.basic_publish("", q, body, pika.BasicProperties(priority=prio))
    # 200 is capped at the queue's maximum (10); ties keep arrival order.
    assert drain(ch, q) == [b"over", b"high", b"mid", b"low", b"none"]


def test_single_active_consumer(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True, arguments={"x-single-active-consumer": True}).method.queue
    first, second = [], []
    t1 = ch.basic_consume(q, lambda c, m, p, b: first.append(b), auto_ack=True)
    ch.basic_consume(q, lambda c, m, p, b: second.append(b), auto_ack=True)
    for i in range(6):
        ch.basic_publish("", q, str(i).encode())
    assert wait_for(conn, lambda: len(first) == 6)
    assert second == []
    ch.basic_cancel(t1)
    ch.basic_publish("", q, b"next")
    assert wait_for(conn, lambda: second == [b"next"])


def test_lazy_mode_is_accepted_and_delivers(ch):
    q = ch.queue_declare("", exclusive=True, arguments={"x-queue-mode": "lazy"}).method.queue
    for i in range(100):
        ch.basic_publish("", q, str(i).encode())
    assert drain(ch, q) == [str(i).encode() for i in range(100)]


def test_ttl_zero_is_delivered_to_a_waiting_consumer_and_dropped_otherwise(conn, ch):
    """RabbitMQ delivers a message whose expiration is 0 to a consumer that can take it at
    once, and expires it (dead-lettering it if asked) when none can."""
    dlx, dead = dead_letter_setup(ch)
    q = ch.queue_declare("", exclusive=True, arguments={"x-dead-letter-exchange": dlx}).method.queue
    ch.basic_publish("", q, b"nobody", pika.BasicProperties(expiration="0"))
    method, props, body = get_soon(ch, dead)
    assert body == b"nobody"
    assert props.headers["x-first-death-reason"] == "expired"
    assert ch.queue_declare(q, passive=True).method.message_count == 0

    got = []
    consumer = conn.channel()
    consumer.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", q, b"now", pika.BasicProperties(expiration="0"))
    assert wait_for(conn, lambda: got == [b"now"])
    assert ch.basic_get(dead, auto_ack=True)[0] is None, "delivered, not dead-lettered"


def test_ttl_zero_messages_behind_others_reach_a_consumer_that_can_take_them(conn, ch):
    """Order does not cost a TTL 0 message its delivery while the consumer has room."""
    q = ch.queue_declare("", exclusive=True).method.queue
    got = []
    consumer = conn.channel()
    consumer.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    for i in range(20):
        ch.basic_publish("", q, b"%d" % i, pika.BasicProperties(expiration="0" if i % 2 else None))
    assert wait_for(conn, lambda: len(got) == 20), got
    assert got == [b"%d" % i for i in range(20)]


def test_a_ttl_zero_message_requeued_has_expired(conn, ch):
    dlx, dead = dead_letter_setup(ch)
    q = ch.queue_declare("", exclusive=True, arguments={"x-dead-letter-exchange": dlx}).method.queue
    tags = []
    consumer = conn.channel()
    consumer.basic_consume(q, lambda c, m, p, b: tags.append(m.delivery_tag))
    ch.basic_publish("", q, b"once", pika.BasicProperties(expiration="0"))
    assert wait_for(conn, lambda: len(tags) == 1)
    consumer.basic_nack(tags[0], requeue=True)
    method, props, body = get_soon(ch, dead)
    assert body == b"once" and props.headers["x-first-death-reason"] == "expired"
    assert not wait_for(conn, lambda: len(tags) > 1, timeout=0.3), "not delivered again"
