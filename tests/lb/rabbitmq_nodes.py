#!/usr/bin/env python3
"""warren-lb in front of two real RabbitMQ nodes (Debian's package), on the article's
haproxy.cfg with only its addresses moved to free loopback ports (and its pidfile and runtime
socket to a temporary folder): pika connections through the balancer alternate between the two
nodes, and the statistics show both UP.

    tests/lb/rabbitmq_nodes.py <warren-lb binary> <seed haproxy.cfg>

Installs rabbitmq-server from Debian if it is missing (through bench/compare's helpers, which
also start and stop the nodes).
"""

import base64
import importlib.machinery
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
compare = importlib.machinery.SourceFileLoader("compare", os.path.join(ROOT, "bench", "compare")).load_module()


def csv_status(stats_port, server):
    req = urllib.request.Request(f"http://127.0.0.1:{stats_port}/haproxy_stats;csv")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin").decode())
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read().decode()
    header = text.splitlines()[0].lstrip("# ").split(",")
    for line in text.splitlines()[1:]:
        f = line.split(",")
        if f[0] == "rabbitmq_cluster" and f[1] == server:
            return f[header.index("status")]
    return None


def main():
    lb_bin, seed = sys.argv[1], sys.argv[2]
    compare.ensure_rabbitmq()
    work = tempfile.mkdtemp(prefix="warren-lb-rmq-")
    nodes = [compare.RabbitMQ(os.path.join(work, f"n{i}")) for i in (1, 2)]
    lb = None
    try:
        for n in nodes:
            os.makedirs(n.dir, exist_ok=True)
        starters = [subprocess.Popen([f"{compare.RABBIT_BIN}/rabbitmq-server", "-detached"], env=n.env)
                    for n in nodes]
        for s in starters:
            s.wait()
        for n in nodes:
            compare.wait_for_amqp(n.port, timeout=120)

        front, stats = compare.free_port(), compare.free_port()
        text = open(seed).read()
        text = text.replace("127.0.0.1:5672", f"127.0.0.1:{front}")
        text = text.replace("127.0.0.1:5673", f"127.0.0.1:{nodes[0].port}")
        text = text.replace("127.0.0.1:5674", f"127.0.0.1:{nodes[1].port}")
        text = text.replace("127.0.0.1:1080", f"127.0.0.1:{stats}")
        text = re.sub(r"pidfile\s+\S+", f"pidfile {work}/lb.pid", text)
        text = re.sub(r"stats socket\s+\S+", f"stats socket {work}/lb.sock", text)
        cfg = os.path.join(work, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(text)
        lb = subprocess.Popen([lb_bin, "-f", cfg, "-db"], stderr=subprocess.DEVNULL)
        compare.wait_for_amqp(front)

        url = f"amqp://guest:guest@127.0.0.1:{front}/%2F"
        held = []
        for i in range(4):
            conn = pika.BlockingConnection(pika.URLParameters(url))
            conn.channel().queue_declare(f"seed-rmq-{i}")
            held.append(conn)
        on_node1 = []
        direct = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{nodes[0].port}/%2F"))
        for i in range(4):
            ch = direct.channel()
            try:
                ch.queue_declare(f"seed-rmq-{i}", passive=True)
                on_node1.append(True)
            except pika.exceptions.ChannelClosedByBroker:
                on_node1.append(False)
        direct.close()
        assert on_node1 in ([True, False, True, False], [False, True, False, True]), on_node1
        print(f"connections through warren-lb alternate between the RabbitMQ nodes: {on_node1}")
        for c in held:
            c.close()

        try:
            urllib.request.urlopen(f"http://127.0.0.1:{stats}/haproxy_stats", timeout=5)
            raise AssertionError("the stats page answered without credentials")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code
        deadline = time.time() + 30
        while time.time() < deadline:
            if csv_status(stats, "node1") == "UP" and csv_status(stats, "node2") == "UP":
                break
            time.sleep(0.5)
        assert csv_status(stats, "node1") == "UP" and csv_status(stats, "node2") == "UP"
        print("both RabbitMQ nodes are UP in warren-lb's statistics")
    finally:
        if lb:
            lb.kill()
            lb.wait()
        for n in nodes:
            n.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
