#!/usr/bin/env bash
# warren-lb's statistics page as a browser sees it: headless Chromium (Debian's package,
# installed if missing) renders the page with the credentials and shows the server UP, shows
# nothing of it without them, and shows the server DOWN after its node is killed.
#
#   tests/lb/stats_in_chromium.sh <target dir with warren and warren-lb>
set -euo pipefail
bin=$1
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
work=$(mktemp -d)
node_port=$(port); front=$(port); stats=$(port)
WARREN_COOKIE=stats-test "$bin/warren" --amqp-listen "127.0.0.1:$node_port" --cluster-listen 127.0.0.1:0 --data-dir "$work/node" >/dev/null 2>&1 &
node=$!
cat >"$work/lb.cfg" <<CFG
listen mq
    bind 127.0.0.1:$front
    mode tcp
    timeout connect 1s
    timeout client 1m
    timeout server 1m
    option amqp-check
    server node1 127.0.0.1:$node_port check inter 100ms fall 2
listen http_front
    bind 127.0.0.1:$stats
    mode http
    stats refresh 10s
    stats uri /haproxy_stats
    stats auth admin:secret
CFG
"$bin/warren-lb" -f "$work/lb.cfg" -db 2>/dev/null &
lb=$!
cleanup() { kill "$lb" "$node" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

render() {
  timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chrome" \
    --dump-dom "$1" 2>/dev/null || true
}
wait_for() {  # url, pattern
  for _ in $(seq 1 50); do
    render "$1" | grep -q "$2" && return 0
    sleep 0.2
  done
  echo "Chromium never showed '$2' at $1"; render "$1" | head -c 2000; exit 1
}

with="http://admin:secret@127.0.0.1:$stats/haproxy_stats"
wait_for "$with" 'class="active_up" data-server="node1"'
page=$(render "$with")
grep -q '<meta http-equiv="refresh" content="10">' <<<"$page" || { echo "no refresh in the page"; exit 1; }
grep -q '<table class="proxy" id="mq">' <<<"$page" || { echo "no table for the proxy"; exit 1; }
echo "Chromium shows node1 UP on the statistics page"
if render "http://127.0.0.1:$stats/haproxy_stats" | grep -q 'data-server'; then
  echo "the statistics page rendered without credentials"; exit 1
fi
echo "without credentials Chromium gets no statistics"
kill -9 "$node"
wait "$node" 2>/dev/null || true
wait_for "$with" 'class="active_down" data-server="node1"'
echo "Chromium shows node1 DOWN after kill -9"
