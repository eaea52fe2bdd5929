"""Publisher confirms and transactions."""

import pika
import pytest

from conftest import drain, uniq, wait_for


def closed(exc_info):
    return exc_info.value.reply_code, exc_info.value.reply_text


def test_confirms_ack_every_publish(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    for i in range(200):
        ch.basic_publish("", q, str(i).encode())  # raises on nack
    assert ch.queue_declare(q, passive=True).method.message_count == 200


def test_confirm_tags_are_sequential_and_may_be_multiple(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    acks = []
    ch._impl.confirm_delivery(lambda frame: acks.append((frame.method.delivery_tag, frame.method.multiple)))
    conn.process_data_events(time_limit=0.1)
    for i in range(50):
        ch._impl.basic_publish("", q, b"x")
    assert wait_for(conn, lambda: acks and acks[-1][0] == 50)
    covered = set()
    for tag, multiple in acks:
        covered |= set(range(1, tag + 1)) if multiple else {tag}
    assert covered == set(range(1, 51))


def test_unroutable_mandatory_with_confirms(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("amq.direct", "no-one", b"x", mandatory=True)


def test_commit_delivers_rollback_discards(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.tx_select()
    ch.basic_publish("", q, b"rolled-back")
    ch.tx_rollback()
    ch.basic_publish("", q, b"committed")
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.tx_commit()
    assert drain(ch, q) == [b"committed"]


def test_rolled_back_acks_are_not_applied(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"keep")
    ch.tx_select()
    method, _, _ = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    ch.tx_rollback()
    # The ack was rolled back: the message is still unacked, and comes back on recover.
    ch.basic_recover(requeue=True)
    ch.tx_commit()
    method, _, body = ch.basic_get(q)
    assert body == b"keep" and method.redelivered
    ch.basic_ack(method.delivery_tag)
    ch.tx_commit()
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_mode_rules(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.tx_commit()
    assert closed(e) == (406, "PRECONDITION_FAILED - channel is not transactional")
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.tx_select()
    assert closed(e) == (406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")
    ch = conn.channel()
    ch.tx_select()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.confirm_delivery()
    assert closed(e) == (406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")
