#!/usr/bin/env bash
# Starts the signaling server built in BIN_DIR on free loopback ports, runs a short `loadtest call`
# against it (real str0m participants over UDP through the public protocol), and exits with the
# load test's status: 0 when every participant got at least 90 % of the media it should have.
# Usage: scripts/loadtest-smoke.sh BIN_DIR [loadtest call options...]
set -euo pipefail
bin_dir="$1"
shift
data_dir=$(mktemp -d)
read -r http_port media_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
export KLASS_API_KEY="loadtest-api-key-$RANDOM$RANDOM"
export KLASS_JWT_SECRET="loadtest-jwt-secret-$RANDOM$RANDOM-0123456789abcdef"
# Every simulated user comes from 127.0.0.1: the per-address rate limits would count them as one
# household. Admission control stays on.
export KLASS_CONFIG_BODY='limits: { rate_limits: false }'
KLASS_DATA_DIR="$data_dir" KLASS_HTTP_ADDR="127.0.0.1:$http_port" \
  KLASS_SFU_UDP_ADDR="127.0.0.1:$media_port" KLASS_SFU_TCP_ADDR="127.0.0.1:$media_port" \
  KLASS_WORKER_CONCURRENCY=0 RUST_LOG=warn "$bin_dir/signaling" serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data_dir"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null && break
  sleep 0.1
done
"$bin_dir/loadtest" call --url "http://127.0.0.1:$http_port" --server-pid "$server" "$@"
