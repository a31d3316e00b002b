#!/usr/bin/env bash
# `loadtest call` (real str0m participants with media, end-to-end encrypted) through an API replica
# in a cluster (docs/cluster.md): a throwaway PostgreSQL, one SFU node (`signaling sfu`) and one
# replica (`signaling serve`, KLASS_CLUSTER=true), each its own process. Media goes straight to
# the node, signaling through the replica; exits with the load test's status.
#   scripts/cluster-call.sh BIN_DIR [call options...]
set -euo pipefail
bin_dir="$1"
shift
work=$(mktemp -d)
pids=()
# Servers stop before PostgreSQL, so that they can leave the registry.
cleanup() {
  for ((idx = ${#pids[@]} - 1; idx >= 0; idx--)); do
    kill "${pids[idx]}" 2>/dev/null || true
    wait "${pids[idx]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
read -r pg_port node_port http_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
wait_http() {
  for _ in $(seq 300); do curl -fs "$1" >/dev/null && return; sleep 0.1; done
  echo "$1 did not come up" >&2
  exit 1
}

# PostgreSQL, as the integration tests start it: Debian's binaries, as `postgres` when root.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=()
if [[ $(id -u) == 0 ]]; then
  as_pg=(runuser -u postgres --)
  chown postgres "$work"
fi
"${as_pg[@]}" "$pg_bin/initdb" -A trust -U postgres --no-sync -D "$work/pg" >/dev/null
"${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg" -p "$pg_port" -k "$work" \
  -c listen_addresses=127.0.0.1 -c fsync=off >"$work/pg.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc 'select 1' >/dev/null 2>&1 && break
  sleep 0.1
done

export KLASS_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export KLASS_API_KEY="cluster-api-key-$RANDOM$RANDOM"
export KLASS_JWT_SECRET="cluster-jwt-secret-$RANDOM$RANDOM-0123456789abcdef"
export KLASS_CLUSTER_SECRET="cluster-secret-$RANDOM$RANDOM-0123456789abcdef-0123"
# Every simulated user comes from 127.0.0.1: the per-address rate limits would count them as one.
export KLASS_CONFIG_BODY='limits: { rate_limits: false }'
export KLASS_WORKER_CONCURRENCY=0 RUST_LOG=warn KLASS_NODE_DRAIN_TIMEOUT_SECS=3
# Media ports are the kernel's choice: the node's answers carry the ports it got.
KLASS_DATA_DIR="$work/node" KLASS_NODE_ID=node-a KLASS_NODE_ADDR="127.0.0.1:$node_port" \
  KLASS_SFU_UDP_ADDR="127.0.0.1:0" KLASS_SFU_TCP_ADDR="127.0.0.1:0" \
  "$bin_dir/signaling" sfu &
node=$!
pids+=($node)
wait_http "http://127.0.0.1:$node_port/readyz"
KLASS_DATA_DIR="$work/replica" KLASS_CLUSTER=true KLASS_HTTP_ADDR="127.0.0.1:$http_port" \
  "$bin_dir/signaling" serve &
pids+=($!)
wait_http "http://127.0.0.1:$http_port/healthz"
# The server's CPU is the node's: it forwards the media.
"$bin_dir/loadtest" call --url "http://127.0.0.1:$http_port" --server-pid "$node" "$@"
