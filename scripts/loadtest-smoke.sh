#!/usr/bin/env bash
# Starts the signaling server built in BIN_DIR on free loopback ports and runs a load test against
# it through the public protocol (real str0m participants over UDP, protocol v2: one offer with
# fixed receive slots each), exiting with its status.
#   scripts/loadtest-smoke.sh BIN_DIR [call options...]   one call: 0 when everyone was admitted
#                                                          and each participant's slots delivered
#                                                          at least --min-delivery (default 98 %)
#                                                          of what their announced publishers sent
#   scripts/loadtest-smoke.sh BIN_DIR soak [options...]   churn, API calls and uploads for
#                                                          --seconds: 0 when no attendance row or
#                                                          webhook was lost and memory stayed flat
set -euo pipefail
bin_dir="$1"
shift
command=call
if [[ "${1:-}" == soak ]]; then
  command=soak
  shift
fi
data_dir=$(mktemp -d)
read -r http_port media_port webhook_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
export KLASS_API_KEY="loadtest-api-key-$RANDOM$RANDOM"
export KLASS_JWT_SECRET="loadtest-jwt-secret-$RANDOM$RANDOM-0123456789abcdef"
extra=()
if [[ $command == soak ]]; then
  # The soak receives the server's webhooks itself, to count them.
  export KLASS_WEBHOOK_URL="http://127.0.0.1:$webhook_port/hooks"
  export KLASS_WEBHOOK_SECRET="loadtest-webhook-secret-$RANDOM$RANDOM-0123456789abcdef"
  extra=(--webhook-port "$webhook_port")
fi
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
"$bin_dir/loadtest" "$command" --url "http://127.0.0.1:$http_port" --server-pid "$server" "${extra[@]}" "$@"
