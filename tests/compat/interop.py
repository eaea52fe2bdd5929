"""Messages published with pika are consumed with amqplib and must arrive unchanged.

    python tests/compat/interop.py amqp://guest:guest@127.0.0.1:5672/%2F
"""

import base64
import json
import os
import subprocess
import sys
import uuid

import pika

url = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
queue = f"interop-{uuid.uuid4().hex[:8]}"
ch.queue_declare(queue, auto_delete=True)
ch.confirm_delivery()
sent = []
for i in range(20):
    body = os.urandom(i * 5000)
    props = pika.BasicProperties(
        content_type="application/octet-stream",
        headers={"i": i, "name": f"msg-{i}", "flags": [True, False]},
        correlation_id=str(i),
        delivery_mode=1 + i % 2,
        priority=i % 10,
    )
    ch.basic_publish("", queue, body, props)
    sent.append((body, props))
node_url = url.replace("/%2F", "")
out = subprocess.run(
    ["node", os.path.join(here, "..", "node", "interop.js"), node_url, queue, str(len(sent))],
    capture_output=True,
    text=True,
    timeout=60,
)
if out.returncode != 0:
    sys.exit(f"amqplib consumer failed: {out.stderr}")
received = [json.loads(line) for line in out.stdout.splitlines()]
assert len(received) == len(sent), f"sent {len(sent)}, amqplib got {len(received)}"
for (body, props), got in zip(sent, received):
    assert base64.b64decode(got["body"]) == body, "body changed"
    assert got["contentType"] == props.content_type
    assert got["headers"] == props.headers, (got["headers"], props.headers)
    assert got["correlationId"] == props.correlation_id
    assert got["deliveryMode"] == props.delivery_mode
    assert got["priority"] == props.priority
conn.close()
print(f"interop: {len(sent)} messages from pika arrived unchanged at amqplib")
