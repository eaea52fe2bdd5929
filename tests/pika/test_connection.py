"""Opening connections: negotiation, server properties, refusals."""

import pika
import pytest

from conftest import params


def test_negotiated_limits_are_rabbitmq_defaults(conn):
    impl = conn._impl
    assert impl.params.frame_max == 131072
    assert impl.params.channel_max == 2047


def test_server_properties_and_capabilities(conn):
    props = conn._impl.server_properties
    caps = props["capabilities"]
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ]:
        assert caps[cap] is True, cap
    for key in ["product", "version", "platform", "cluster_name", "copyright", "information"]:
        assert key in props, key


def test_wrong_password_is_refused():
    bad = params(credentials=pika.PlainCredentials("guest", "not-the-password"))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as e:
        pika.BlockingConnection(bad)
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in str(e.value)


def test_unknown_vhost_is_refused():
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        pika.BlockingConnection(params(virtual_host="no-such-vhost"))
    assert "(530) 'NOT_ALLOWED - vhost no-such-vhost not found'" in str(e.value)


def test_many_channels_on_one_connection(conn):
    channels = [conn.channel() for _ in range(50)]
    for c in channels:
        c.queue_declare("", exclusive=True)
    for c in channels:
        c.close()
    assert conn.is_open


def test_heartbeat_negotiation(conn):
    # pika takes the server's proposal (60 s) unless told otherwise.
    assert conn._impl.params.heartbeat == 60
    c = pika.BlockingConnection(params(heartbeat=5))
    assert c._impl.params.heartbeat == 5
    c.close()
