#!/usr/bin/env bash
# The Monday 9:00 surge of docs/benchmarks.md: `loadtest surge` (hundreds of classes starting their
# calls within a minute) against a fresh server on loopback, or against servers already running.
#   scripts/bench-surge.sh [surge options...]       e.g. --classes 300 --window 60 (loadtest surge --help)
# Environment:
#   BIN_DIR=dir          run the binaries there (e.g. target/debug) instead of building a release
#   SOURCE_ADDRESSES=n   class c comes from address c % n of 127.77.0.0/16, as a school's classes
#                        come from many networks (default 250; 0: everyone from 127.0.0.1, which
#                        the per-address rate limits count as one household)
#   SERVER_CONFIG=yaml   the server's KLASS_CONFIG_BODY (default: none, i.e. production limits:
#                        rate limits on, 32 joins negotiated at once)
#   TOPOLOGY=cluster     start two API replicas and two SFU nodes (docs/cluster.md), each its own
#                        process, on a throwaway PostgreSQL (scripts/lib/cluster.sh), instead of
#                        one process; TOPOLOGY=one DATABASE=postgres: the one process on PostgreSQL
#                        too, to compare like with like
#   URLS=u1,u2           run against servers already running (several API replicas) instead of
#                        starting one; then KLASS_API_KEY and KLASS_JWT_SECRET must be theirs, and
#                        SERVER_PIDS="pid1 pid2" (optional) names the processes to sample
# Exit status: loadtest's (1 when someone never got in or a request timed out).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/klass/target}"
bin_dir="${BIN_DIR:-$CARGO_TARGET_DIR/release}"
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release --locked -p loadtest $([ -n "${URLS:-}" ] || echo -p signaling)
fi
# Each participant holds a UDP socket, a call WebSocket and HTTP connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
extra=(--source-addresses "${SOURCE_ADDRESSES:-250}")

if [ -n "${URLS:-}" ]; then
  : "${KLASS_API_KEY:?the replicas' class backend API key}" "${KLASS_JWT_SECRET:?the replicas' token secret}"
  for pid in ${SERVER_PIDS:-}; do extra+=(--server-pid "$pid"); done
  exec "$bin_dir/loadtest" surge --url "$URLS" "${extra[@]}" "$@"
fi

if [ -n "${SERVER_CONFIG:-}" ]; then export KLASS_CONFIG_BODY="$SERVER_CONFIG"; fi
source scripts/lib/cluster.sh
if [ "${TOPOLOGY:-one}" = cluster ]; then
  cluster_start_postgres
  urls=()
  for node in node-a node-b; do
    cluster_start_node "$bin_dir" "$node"
    extra+=(--server-pid "$node_pid")
  done
  for _ in 0 1; do
    cluster_start_replica "$bin_dir"
    urls+=("$replica_url")
    extra+=(--server-pid "$replica_pid")
  done
  url=$(IFS=,; echo "${urls[*]}")
else
  if [ "${DATABASE:-sqlite}" = postgres ]; then cluster_start_postgres; fi
  read -r http_port media_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
  # The server listens on 127.0.0.1 (every 127/8 source address reaches it).
  KLASS_DATA_DIR="$work/one" KLASS_HTTP_ADDR="127.0.0.1:$http_port" \
    KLASS_SFU_UDP_ADDR="127.0.0.1:$media_port" KLASS_SFU_TCP_ADDR="127.0.0.1:$media_port" \
    "$bin_dir/signaling" serve &
  pids+=($!)
  extra+=(--server-pid "$!")
  url="http://127.0.0.1:$http_port"
  cluster_wait_http "$url/healthz"
fi
"$bin_dir/loadtest" surge --url "$url" "${extra[@]}" "$@"
