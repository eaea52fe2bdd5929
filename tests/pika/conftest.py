"""Fixtures for the pika compatibility suite.

The broker under test is named by AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F).
The suite is meant to pass unchanged against RabbitMQ 3.10 and against warren:

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F python -m pytest -q tests/pika
"""

import os
import uuid
from urllib.parse import urlparse

import pika
import pytest

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def params(**overrides):
    p = pika.URLParameters(URL)
    for k, v in overrides.items():
        setattr(p, k, v)
    return p


def address():
    u = urlparse(URL)
    return u.hostname or "127.0.0.1", u.port or 5672


def uniq(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def conn():
    c = pika.BlockingConnection(params())
    yield c
    if c.is_open:
        c.close()


@pytest.fixture
def ch(conn):
    return conn.channel()


@pytest.fixture
def other_conn():
    c = pika.BlockingConnection(params())
    yield c
    if c.is_open:
        c.close()


def drain(ch, queue, limit=1000):
    """Every message currently in `queue`, taken with basic.get (no ack)."""
    out = []
    for _ in range(limit):
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append(body)
    return out


def wait_for(conn, predicate, timeout=5.0):
    """Runs the connection's I/O until predicate() holds or the time is up."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        conn.process_data_events(time_limit=0.05)
    return predicate()
