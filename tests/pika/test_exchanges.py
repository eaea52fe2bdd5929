"""Exchanges: declaration rules, exchange-to-exchange bindings, alternate exchanges, and
routing by every exchange type."""

import pika
import pytest

from conftest import drain, uniq


def closed(exc_info):
    return exc_info.value.reply_code, exc_info.value.reply_text


@pytest.mark.parametrize("kind", ["direct", "fanout", "topic", "headers"])
def test_declare_each_type_and_delete(ch, kind):
    name = uniq(kind)
    ch.exchange_declare(name, kind)
    ch.exchange_declare(name, kind, passive=True)
    ch.exchange_delete(name)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare(name, kind, passive=True)
    assert closed(e) == (404, f"NOT_FOUND - no exchange '{name}' in vhost '/'")


def test_builtin_exchanges_exist(ch):
    for name, kind in [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ]:
        ch.exchange_declare(name, kind, passive=True)
        ch.exchange_declare(name, kind, durable=True)


def test_unknown_type_closes_the_connection(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        ch.exchange_declare(uniq(), "no-such-type")
    assert closed(e) == (503, "COMMAND_INVALID - unknown exchange type 'no-such-type'")


def test_reserved_prefix_is_refused(ch):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare("amq.mine", "direct")
    assert closed(e) == (403, "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'")


def test_inequivalent_redeclare(conn):
    name = uniq()
    ch = conn.channel()
    ch.exchange_declare(name, "direct")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare(name, "topic")
    assert closed(e) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{name}' in vhost '/': "
        "received 'topic' but current is 'direct'",
    )
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare(name, "direct", durable=True)
    assert e.value.reply_code == 406
    conn.channel().exchange_delete(name)


def test_delete_if_unused(conn):
    ch = conn.channel()
    x = uniq()
    ch.exchange_declare(x, "fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_delete(x, if_unused=True)
    assert closed(e) == (406, f"PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use")
    ch = conn.channel()
    ch.queue_unbind(q, x)
    ch.exchange_delete(x, if_unused=True)


def test_system_and_default_exchanges_cannot_be_deleted(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_delete("amq.fanout")
    assert closed(e) == (403, "ACCESS_REFUSED - deletion of system exchange 'amq.fanout' in vhost '/' not allowed")
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_delete("")
    assert closed(e) == (403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_default_exchange_cannot_be_bound(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_bind(q, "", routing_key=q)
    assert closed(e) == (403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_default_exchange_routes_by_queue_name(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"direct to queue")
    assert drain(ch, q) == [b"direct to queue"]


def test_fanout_and_direct_routing(ch):
    fan, direct = uniq("fan"), uniq("dir")
    ch.exchange_declare(fan, "fanout", auto_delete=True)
    ch.exchange_declare(direct, "direct", auto_delete=True)
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q1, fan)
    ch.queue_bind(q2, fan)
    ch.queue_bind(q1, direct, "red")
    ch.queue_bind(q2, direct, "blue")
    ch.basic_publish(fan, "ignored", b"everyone")
    ch.basic_publish(direct, "red", b"red")
    ch.basic_publish(direct, "green", b"nobody")
    assert drain(ch, q1) == [b"everyone", b"red"]
    assert drain(ch, q2) == [b"everyone"]


TOPIC_CASES = [
    ("a.b.c", "a.b.c", True),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.c", False),
    ("a.#.c", "a.c", True),
    ("a.#.c", "a.x.y.c", True),
    ("#", "", True),
    ("#", "any.thing", True),
    ("*", "", False),
    ("*", "one", True),
    ("*", "one.two", False),
    ("a.*", "a.", True),
    ("a..b", "a..b", True),
    ("a.*.b", "a..b", True),
    ("#.b", "b", True),
    ("a.#", "a", True),
    ("*.#", "", False),
    ("", "", True),
    ("", "a", False),
]


def test_topic_matching_table(ch):
    x = uniq("topic")
    ch.exchange_declare(x, "topic", auto_delete=True)
    queues = {}
    for i, (pattern, _key, _want) in enumerate(TOPIC_CASES):
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, x, pattern)
        queues[i] = q
    for i, (pattern, key, want) in enumerate(TOPIC_CASES):
        ch.basic_publish(x, key, f"{i}".encode())
    for i, (pattern, key, want) in enumerate(TOPIC_CASES):
        got = f"{i}".encode() in drain(ch, queues[i])
        assert got == want, f"binding {pattern!r} with key {key!r}"


def test_headers_exchange_x_match(ch):
    x = uniq("hdr")
    ch.exchange_declare(x, "headers", auto_delete=True)
    qs = {}
    for mode in ["all", "any", "all-with-x", "any-with-x"]:
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, x, arguments={"x-match": mode, "a": "1", "x-b": "2"})
        qs[mode] = q
    present = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(present, x, arguments={"k": None})
    send = lambda headers, body: ch.basic_publish(x, "", body, pika.BasicProperties(headers=headers))
    send({"a": "1"}, b"a")
    send({"a": "1", "x-b": "2"}, b"ab")
    send({"x-b": "2"}, b"b")
    send({"k": 5}, b"k")
    assert drain(ch, qs["all"]) == [b"a", b"ab"]
    assert drain(ch, qs["any"]) == [b"a", b"ab"]
    assert drain(ch, qs["all-with-x"]) == [b"ab"]
    assert drain(ch, qs["any-with-x"]) == [b"a", b"ab", b"b"]
    assert drain(ch, present) == [b"k"]


def test_headers_bad_x_match_is_refused(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_bind(q, "amq.headers", arguments={"x-match": "most"})
    assert closed(e) == (
        406,
        'PRECONDITION_FAILED - Invalid x-match field value <<"most">>; expected all, any, all-with-x, or any-with-x',
    )


def test_exchange_to_exchange_binding(ch):
    src, dst = uniq("src"), uniq("dst")
    ch.exchange_declare(src, "topic")
    ch.exchange_declare(dst, "fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, dst)
    ch.exchange_bind(dst, src, "orders.*")
    ch.basic_publish(src, "orders.new", b"1")
    ch.basic_publish(src, "invoices.new", b"2")
    assert drain(ch, q) == [b"1"]
    ch.exchange_unbind(dst, src, "orders.*")
    ch.basic_publish(src, "orders.new", b"3")
    assert drain(ch, q) == []
    ch.exchange_delete(src)
    ch.exchange_delete(dst)


def test_auto_delete_source_exchange_goes_with_its_last_e2e_binding(conn):
    ch = conn.channel()
    src, dst = uniq("src"), uniq("dst")
    ch.exchange_declare(src, "topic", auto_delete=True)
    ch.exchange_declare(dst, "fanout")
    ch.exchange_bind(dst, src, "k")
    ch.exchange_unbind(dst, src, "k")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare(src, "topic", passive=True)
    assert e.value.reply_code == 404
    conn.channel().exchange_delete(dst)


def test_exchange_bind_cycle_delivers_once(ch):
    a, b = uniq("a"), uniq("b")
    ch.exchange_declare(a, "fanout", auto_delete=True)
    ch.exchange_declare(b, "fanout", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.exchange_bind(b, a)
    ch.exchange_bind(a, b)
    ch.queue_bind(q, a)
    ch.queue_bind(q, b)
    ch.basic_publish(a, "", b"once")
    assert drain(ch, q) == [b"once"]


def test_alternate_exchange_gets_unroutable_messages(ch):
    ae, main = uniq("ae"), uniq("main")
    ch.exchange_declare(ae, "fanout", auto_delete=True)
    ch.exchange_declare(main, "direct", auto_delete=True, arguments={"alternate-exchange": ae})
    routed = ch.queue_declare("", exclusive=True).method.queue
    leftovers = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(routed, main, "known")
    ch.queue_bind(leftovers, ae)
    ch.basic_publish(main, "known", b"routed")
    ch.basic_publish(main, "unknown", b"stray")
    assert drain(ch, routed) == [b"routed"]
    assert drain(ch, leftovers) == [b"stray"]


def test_internal_exchange_refuses_publishes(conn):
    ch = conn.channel()
    x = uniq("internal")
    ch.exchange_declare(x, "topic", internal=True)
    ch.basic_publish(x, "k", b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("", exclusive=True)
    assert closed(e) == (403, f"ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'")
    conn.channel().exchange_delete(x)


def test_publish_to_missing_exchange(ch):
    ch.basic_publish("no-such-exchange", "k", b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("", exclusive=True)
    assert closed(e) == (404, "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'")


def test_auto_delete_exchange_goes_with_last_binding(conn):
    ch = conn.channel()
    x = uniq()
    ch.exchange_declare(x, "direct", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, "k")
    ch.queue_unbind(q, x, "k")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare(x, "direct", passive=True)
    assert e.value.reply_code == 404
