"""Direct reply-to (amq.rabbitmq.reply-to): RPC without a reply queue."""

import pika
import pytest

from conftest import uniq, wait_for


def closed(exc_info):
    return exc_info.value.reply_code, exc_info.value.reply_text


def test_rpc_roundtrip(conn):
    server = conn.channel()
    requests = server.queue_declare("", exclusive=True).method.queue

    def serve(ch, method, props, body):
        ch.basic_publish("", props.reply_to, body.upper(), pika.BasicProperties(correlation_id=props.correlation_id))

    server.basic_consume(requests, serve, auto_ack=True)
    client = conn.channel()
    replies = []
    client.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: replies.append((p.correlation_id, b)), auto_ack=True)
    client.basic_publish("", requests, b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="c1"))
    assert wait_for(conn, lambda: replies)
    assert replies == [("c1", b"PING")]


def test_reply_to_address_is_rewritten(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
    ch.basic_publish("", q, b"x", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    _, props, _ = ch.basic_get(q, auto_ack=True)
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
    assert len(props.reply_to) > len("amq.rabbitmq.reply-to.")


def test_rules(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=False)
    assert closed(e) == (406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")
    ch = conn.channel()
    ch.basic_publish("", "whatever", b"x", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("", exclusive=True)
    assert closed(e) == (406, "PRECONDITION_FAILED - fast reply consumer does not exist")
