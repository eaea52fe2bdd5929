#!/usr/bin/env bash
# Runs the client compatibility suites against a fresh warren node: the wire probe (answers
# compared with those recorded from RabbitMQ 3.10), the pika suite and the amqplib scenario
# (run at the same time, against the same node), and a pika-to-amqplib interop check. Then
# stops the node with SIGTERM and checks that it exits cleanly. Last, pika's quorum queue
# tests through the three nodes of a cluster (declared through one, published to through
# another, consumed from through the third).
#
# Needs the warren binary built (scripts/test builds it). Installs pika and pytest into a
# virtualenv and amqplib from npm, under .cache/ in the repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
warren="$target/debug/warren"
[ -x "$warren" ] || { echo "build warren first (cargo build --bins)"; exit 1; }

venv="$root/.cache/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/pika/requirements.txt
(cd tests/node && npm ci --no-audit --no-fund --silent)

work=$(mktemp -d)
log="$work/warren.log"
WARREN_COOKIE=compat-test "$warren" --amqp-listen 127.0.0.1:0 --cluster-listen 127.0.0.1:0 --data-dir "$work/data" >"$log" 2>&1 &
pid=$!
cluster_pids=()
cleanup() {
  kill "$pid" "${cluster_pids[@]}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

addr=""
for _ in $(seq 1 100); do
  addr=$(grep -o 'local_addr=127.0.0.1:[0-9]*' "$log" | head -1 | cut -d= -f2 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "warren did not start:"; cat "$log"; exit 1; }
echo "warren pid $pid on $addr"
url="amqp://guest:guest@$addr/%2F"

echo "-- wire probe (compared with RabbitMQ 3.10)"
python3 tests/probe/wire_probe.py --expect tests/probe/rabbitmq-3.10.txt "$addr" | tail -1

echo "-- pika suite and amqplib scenario, at the same time"
AMQP_URL="$url" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/pika &
pytest_pid=$!
(cd tests/node && AMQP_URL="amqp://guest:guest@$addr" node --test 2>&1 | tail -8) &
node_pid=$!
status=0
wait "$pytest_pid" || status=1
wait "$node_pid" || status=1
[ "$status" -eq 0 ] || { echo "client suites failed; the end of warren's log:"; tail -n 60 "$log"; exit 1; }

echo "-- pika to amqplib interop"
"$venv/bin/python" tests/compat/interop.py "$url"

echo "-- clean shutdown on SIGTERM"
kill -TERM "$pid"
for _ in $(seq 1 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  echo "warren did not stop within 10 s of SIGTERM"
  exit 1
fi
wait "$pid" && echo "warren stopped cleanly" || { echo "warren exited with an error"; exit 1; }

echo "-- quorum queues with pika, through three nodes of a cluster"
warrenctl="$target/debug/warrenctl"
read -r p1 p2 p3 <<<"$(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
ports=("$p1" "$p2" "$p3")
printf '[cluster]\npeers = ["c1@localhost:%s", "c2@localhost:%s", "c3@localhost:%s"]\n' "$p1" "$p2" "$p3" >"$work/cluster.toml"
for i in 1 2 3; do
  WARREN_COOKIE=compat-test "$warren" --config "$work/cluster.toml" --node-name "c$i@localhost" \
    --amqp-listen 127.0.0.1:0 --cluster-listen "127.0.0.1:${ports[$((i - 1))]}" \
    --data-dir "$work/c$i" >"$work/c$i.log" 2>&1 &
  cluster_pids+=($!)
done
urls=()
for i in 1 2 3; do
  a=""
  for _ in $(seq 1 300); do
    a=$(grep 'AMQP listener started' "$work/c$i.log" | grep -o 'local_addr=127.0.0.1:[0-9]*' | cut -d= -f2 || true)
    [ -n "$a" ] && break
    sleep 0.1
  done
  [ -n "$a" ] || { echo "cluster node c$i did not start:"; cat "$work/c$i.log"; exit 1; }
  urls+=("amqp://guest:guest@$a/%2F")
done
formed=""
for _ in $(seq 1 300); do
  if WARREN_COOKIE=compat-test "$warrenctl" -n "c1@localhost:$p1" cluster_status --formatter json 2>/dev/null |
    python3 -c 'import json, sys; sys.exit(len(json.load(sys.stdin)["running_nodes"]) != 3)'; then
    formed=1
    break
  fi
  sleep 0.1
done
[ -n "$formed" ] || { echo "the cluster did not form"; exit 1; }
# The nodes' logs go with the temporary directory: a failure shows their ends first.
if ! AMQP_URL="${urls[0]}" AMQP_URLS="$(IFS=,; echo "${urls[*]}")" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/pika/test_quorum.py; then
  for i in 1 2 3; do
    echo "-- the end of c$i's log"
    tail -n 60 "$work/c$i.log"
  done
  exit 1
fi
