"""Quorum queues (x-queue-type=quorum) with pika: what a declaration may not ask for, confirms,
requeues to the back with x-delivery-count, the delivery limit dead-lettering, reject-publish,
and what quorum queues do not implement. Answers recorded on a RabbitMQ 3.10 cluster
(docs/rabbitmq-behaviour.md); the suite passes against a single RabbitMQ 3.10 node too.

With AMQP_URLS naming several nodes of one cluster (comma-separated), a queue is declared
through the first, published to through the second and consumed from through the third."""

import os

import pika
import pytest

from conftest import URL, uniq, wait_for

URLS = [u for u in os.environ.get("AMQP_URLS", "").split(",") if u] or [URL]

QUORUM = {"x-queue-type": "quorum"}


def node(i):
    """A connection to the i-th node named (the only one, without AMQP_URLS)."""
    return pika.BlockingConnection(pika.URLParameters(URLS[i % len(URLS)]))


def closed(exc_info):
    return exc_info.value.reply_code, exc_info.value.reply_text


@pytest.fixture
def nodes():
    conns = [node(i) for i in range(3)]
    yield conns
    for c in conns:
        if c.is_open:
            c.close()


def get_soon(ch, q, auto_ack=False, timeout=5.0):
    """The next message of `q`, waiting for it: a publish, a requeue or a dead letter reaches
    a quorum queue through its log, after the call that made it returns."""
    for _ in range(int(timeout / 0.02)):
        method, props, body = ch.basic_get(q, auto_ack=auto_ack)
        if method is not None:
            return method, props, body
        ch.connection.sleep(0.02)
    raise AssertionError(f"nothing arrived in {q} within {timeout} s")


def declare(ch, q, **args):
    return ch.queue_declare(q, durable=True, arguments={**QUORUM, **args})


def test_what_a_quorum_queue_may_not_be(conn):
    for props, text in [
        ({"auto_delete": True}, "invalid property 'auto-delete'"),
        ({"exclusive": True}, "invalid property 'exclusive-owner'"),
        ({"durable": False}, "invalid property 'non-durable'"),
    ]:
        ch = conn.channel()
        q = uniq("qq")
        opts = {"durable": True, **props}
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.queue_declare(q, arguments=QUORUM, **opts)
        assert closed(e) == (406, f"PRECONDITION_FAILED - {text} for queue '{q}' in vhost '/'")
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("", durable=True, arguments=QUORUM)
    assert closed(e) == (
        406,
        "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue",
    )
    ch = conn.channel()
    q = uniq("qq")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        declare(ch, q, **{"x-max-priority": 5})
    assert closed(e) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{q}' in vhost '/' "
        "of queue type rabbit_quorum_queue",
    )


def test_confirmed_publishes_reach_a_consumer_through_any_node(nodes):
    q = uniq("qq")
    declare(nodes[0].channel(), q)
    pub = nodes[1].channel()
    pub.confirm_delivery()
    for i in range(50):
        pub.basic_publish("", q, f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    got = []
    sub = nodes[2].channel()
    sub.basic_qos(prefetch_count=10)

    def on_message(ch, method, props, body):
        got.append((body, method.redelivered, (props.headers or {}).get("x-delivery-count")))
        ch.basic_ack(method.delivery_tag)

    sub.basic_consume(q, on_message)
    assert wait_for(nodes[2], lambda: len(got) >= 50, timeout=20), got
    # A first delivery to a consumer carries no x-delivery-count.
    assert got == [(f"m{i}".encode(), False, None) for i in range(50)]
    nodes[0].channel().queue_delete(q)


def test_a_requeued_message_goes_to_the_back_and_counts_its_deliveries(ch):
    q = uniq("qq")
    declare(ch, q)
    for body in [b"A", b"B", b"C"]:
        ch.basic_publish("", q, body, pika.BasicProperties(headers={"own": "kept"}))
    method, props, body = get_soon(ch, q)
    assert (body, method.redelivered, props.headers) == (
        b"A",
        False,
        {"own": "kept", "x-delivery-count": 0},
    )
    ch.basic_reject(method.delivery_tag, requeue=True)
    seen = []
    for _ in range(3):
        method, props, body = get_soon(ch, q, auto_ack=True)
        seen.append((body, method.redelivered, props.headers["x-delivery-count"]))
    assert seen == [(b"B", False, 0), (b"C", False, 0), (b"A", True, 1)]
    ch.queue_delete(q)


def test_the_delivery_limit_dead_letters_the_message(ch):
    dlx = uniq("dlx")
    ch.exchange_declare(dlx, "fanout", auto_delete=True)
    dead = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(dead, dlx)
    q = uniq("qq")
    declare(ch, q, **{"x-delivery-limit": 2, "x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"poison", pika.BasicProperties(headers={"own": 1}))
    counts = []
    for _ in range(3):
        method, props, body = get_soon(ch, q)
        counts.append(props.headers["x-delivery-count"])
        ch.basic_nack(method.delivery_tag, requeue=True)
    assert counts == [0, 1, 2]
    method, props, body = get_soon(ch, dead, auto_ack=True)
    assert ch.basic_get(q)[0] is None
    assert body == b"poison"
    assert method.routing_key == q and not method.redelivered
    assert "x-delivery-count" not in props.headers
    assert props.headers["own"] == 1
    (death,) = props.headers["x-death"]
    assert (death["reason"], death["queue"], death["count"]) == ("delivery_limit", q, 1)
    assert props.headers["x-first-death-reason"] == "delivery_limit"
    ch.queue_delete(q)


def test_reject_publish_nacks_past_the_limit(conn):
    ch = conn.channel()
    q = uniq("qq")
    declare(ch, q, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    outcomes = []
    for i in range(4):
        try:
            ch.basic_publish("", q, f"m{i}".encode())
            outcomes.append("ack")
        except pika.exceptions.NackError:
            outcomes.append("nack")
    # Checked after the enqueue: the publish that goes over the limit is kept.
    assert outcomes == ["ack", "ack", "nack", "nack"]
    assert ch.queue_declare(q, passive=True).method.message_count == 2
    ch.queue_delete(q)


def test_what_quorum_queues_do_not_implement(conn):
    ch = conn.channel()
    q = uniq("qq")
    declare(ch, q)
    ch.basic_qos(prefetch_count=10, global_qos=True)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        ch.basic_consume(q, lambda *a: None)
    assert closed(e) == (
        540,
        f"NOT_IMPLEMENTED - queue '{q}' in vhost '/' does not support global qos",
    )
    c = node(0)
    try:
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
            c.channel().queue_delete(q, if_unused=True)
        assert closed(e) == (
            540,
            f"NOT_IMPLEMENTED - cannot delete queue '{q}' in vhost '/'. queue.delete operations "
            "with if-unused flag set are not supported by quorum queues",
        )
    finally:
        if c.is_open:
            c.close()
    c = node(0)
    try:
        c.channel().queue_delete(q)
    finally:
        c.close()
