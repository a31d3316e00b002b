#!/usr/bin/env bash
# The Monday-morning surge of docs/benchmarks.md: `loadtest surge` against one all-in-one process,
# then against two API replicas and two SFU nodes (docs/cluster.md), each a separate process on
# this machine, all on a throwaway PostgreSQL.
#   scripts/bench-surge.sh [BIN_DIR|""] [surge options...]
#     BIN_DIR defaults to the release build (built first); options go to `loadtest surge`
#     (default here: --classes 200 --people 5 --window-secs 60 --hold-secs 20).
# Needs PostgreSQL's server binaries (scripts/install-deps.sh). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -gt 0 && -n "$1" && -d "$1" ]]; then
  bin_dir="$1"
  shift
else
  # An empty first argument means "build it", as no argument does.
  if [[ $# -gt 0 && -z "$1" ]]; then shift; fi
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/klass/target}"
  cargo build --release --locked -p signaling -p loadtest
  bin_dir="$CARGO_TARGET_DIR/release"
fi
options=("$@")
[ ${#options[@]} -gt 0 ] || options=(--classes 200 --people 5 --window-secs 60 --hold-secs 20)

work=$(mktemp -d)
pids=()
# Stops the processes in reverse order (servers before PostgreSQL, so they can leave cleanly).
cleanup() {
  for ((idx = ${#pids[@]} - 1; idx >= 0; idx--)); do
    kill "${pids[idx]}" 2>/dev/null || true
    wait "${pids[idx]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
free_ports() {
  python3 -c "
import socket
socks = [socket.socket() for _ in range($1)]
for s in socks: s.bind(('127.0.0.1', 0))
print(*[s.getsockname()[1] for s in socks])"
}

# PostgreSQL, as the integration tests start it: Debian's binaries, as `postgres` when root.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=()
if [[ $(id -u) == 0 ]]; then
  as_pg=(runuser -u postgres --)
  chown postgres "$work"
fi
read -r pg_port < <(free_ports 1)
"${as_pg[@]}" "$pg_bin/initdb" -A trust -U postgres --no-sync -D "$work/pg" >/dev/null
"${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg" -p "$pg_port" -k "$work" \
  -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 >"$work/pg.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc 'select 1' >/dev/null 2>&1 && break
  sleep 0.1
done

export KLASS_API_KEY="surge-api-key-$RANDOM$RANDOM"
export KLASS_JWT_SECRET="surge-jwt-secret-$RANDOM$RANDOM-0123456789abcdef"
export KLASS_CLUSTER_SECRET="surge-cluster-secret-$RANDOM$RANDOM-0123456789abcdef"
# Every simulated user comes from 127.0.0.1: the per-address rate limits would count them as one
# household. Admission control (503 server_busy with Retry-After) stays on.
export KLASS_CONFIG_BODY='limits: { rate_limits: false }'
export KLASS_WORKER_CONCURRENCY=0 RUST_LOG=warn KLASS_NODE_DRAIN_TIMEOUT_SECS=5
wait_http() {
  for _ in $(seq 300); do curl -fs "$1" >/dev/null && return; sleep 0.1; done
  echo "$1 did not come up" >&2
  exit 1
}
database() {
  psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc "CREATE DATABASE $1"
  echo "postgres://postgres@127.0.0.1:$pg_port/$1"
}

echo "== one process (API and SFU), PostgreSQL"
url=$(database single)
read -r http < <(free_ports 1)
KLASS_DATABASE_URL="$url" KLASS_DATA_DIR="$work/single" KLASS_HTTP_ADDR="127.0.0.1:$http" \
  KLASS_SFU_UDP_ADDR="127.0.0.1:0" KLASS_SFU_TCP_ADDR="127.0.0.1:0" \
  "$bin_dir/signaling" serve &
single=$!
pids+=($single)
wait_http "http://127.0.0.1:$http/healthz"
"$bin_dir/loadtest" surge --url "http://127.0.0.1:$http" "${options[@]}" || true
kill "$single"
wait "$single" 2>/dev/null || true

echo "== two API replicas and two SFU nodes, PostgreSQL"
url=$(database cluster)
urls=()
for node in a b; do
  read -r internal < <(free_ports 1)
  KLASS_DATABASE_URL="$url" KLASS_DATA_DIR="$work/node-$node" KLASS_NODE_ID="node-$node" \
    KLASS_NODE_ADDR="127.0.0.1:$internal" KLASS_SFU_UDP_ADDR="127.0.0.1:0" KLASS_SFU_TCP_ADDR="127.0.0.1:0" \
    "$bin_dir/signaling" sfu &
  pids+=($!)
  wait_http "http://127.0.0.1:$internal/healthz"
done
for replica in 0 1; do
  read -r http < <(free_ports 1)
  KLASS_DATABASE_URL="$url" KLASS_DATA_DIR="$work/replica-$replica" KLASS_CLUSTER=true \
    KLASS_HTTP_ADDR="127.0.0.1:$http" "$bin_dir/signaling" serve &
  pids+=($!)
  wait_http "http://127.0.0.1:$http/healthz"
  urls+=(--url "http://127.0.0.1:$http")
done
# What each node reported in its heartbeats during the surge: its peak rooms, participants, CPU.
(while true; do
  psql -h 127.0.0.1 -p "$pg_port" -U postgres -d cluster -qAtF ' ' \
    -c "SELECT node_id, n_rooms, n_participants, cpu_permille FROM sfu_nodes" >>"$work/nodes.txt" 2>/dev/null || true
  sleep 2
done) &
pids+=($!)
"$bin_dir/loadtest" surge "${urls[@]}" "${options[@]}" || true
sort -k1,1 "$work/nodes.txt" | awk '
  { if ($2 > rooms[$1]) rooms[$1] = $2; if ($3 > people[$1]) people[$1] = $3; if ($4 > cpu[$1]) cpu[$1] = $4 }
  END { for (n in rooms) printf "node        %s: peak %d rooms, %d participants, %.0f %% of a core\n", n, rooms[n], people[n], cpu[n] / 10 }'
