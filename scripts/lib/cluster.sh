# Sourced by scripts that run the cluster of docs/cluster.md on this machine, each part its own
# process on loopback: a throwaway PostgreSQL, SFU nodes (`signaling sfu`) and API replicas
# (`signaling serve`, KLASS_CLUSTER=true). Sets `work` (a scratch folder) and `pids` (what
# `cluster_cleanup` stops, newest first, on exit), and exports the shared secrets.
#   cluster_start_postgres            -> $pg_port; KLASS_DATABASE_URL names its `postgres` database
#   cluster_database NAME             -> prints the URL of a new database NAME
#   cluster_start_node BIN_DIR ID     -> $node_pid, $node_port (its internal listener)
#   cluster_start_replica BIN_DIR     -> $replica_pid, $replica_url
# The caller sets KLASS_CONFIG_BODY and the like before starting them.

work=$(mktemp -d)
pids=()
# Servers stop before PostgreSQL, so that they can leave the registry.
cluster_cleanup() {
  for ((idx = ${#pids[@]} - 1; idx >= 0; idx--)); do
    kill "${pids[idx]}" 2>/dev/null || true
    wait "${pids[idx]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cluster_cleanup EXIT

export KLASS_API_KEY="cluster-api-key-$RANDOM$RANDOM"
export KLASS_JWT_SECRET="cluster-jwt-secret-$RANDOM$RANDOM-0123456789abcdef"
export KLASS_CLUSTER_SECRET="cluster-secret-$RANDOM$RANDOM-0123456789abcdef-0123"
export KLASS_WORKER_CONCURRENCY=0 KLASS_NODE_DRAIN_TIMEOUT_SECS=3
export RUST_LOG="${RUST_LOG:-warn}"

cluster_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cluster_wait_http() {
  for _ in $(seq 300); do curl -fs "$1" >/dev/null && return; sleep 0.1; done
  echo "$1 did not come up" >&2
  exit 1
}

# PostgreSQL, as the integration tests start it: Debian's binaries, as `postgres` when root.
cluster_start_postgres() {
  local pg_bin as_pg=()
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  if [[ $(id -u) == 0 ]]; then
    as_pg=(runuser -u postgres --)
    chown postgres "$work"
  fi
  pg_port=$(cluster_free_port)
  "${as_pg[@]}" "$pg_bin/initdb" -A trust -U postgres --no-sync -D "$work/pg" >/dev/null
  "${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg" -p "$pg_port" -k "$work" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 >"$work/pg.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc 'select 1' >/dev/null 2>&1 && break
    sleep 0.1
  done
  export KLASS_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
}

cluster_database() {
  psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc "CREATE DATABASE $1"
  echo "postgres://postgres@127.0.0.1:$pg_port/$1"
}

# Media ports are the kernel's choice: the node's answers carry the ports it got.
cluster_start_node() {
  node_port=$(cluster_free_port)
  KLASS_DATA_DIR="$work/node-$2" KLASS_NODE_ID="$2" KLASS_NODE_ADDR="127.0.0.1:$node_port" \
    KLASS_SFU_UDP_ADDR="127.0.0.1:0" KLASS_SFU_TCP_ADDR="127.0.0.1:0" \
    "$1/signaling" sfu &
  node_pid=$!
  pids+=($node_pid)
  cluster_wait_http "http://127.0.0.1:$node_port/readyz"
}

cluster_start_replica() {
  local port
  port=$(cluster_free_port)
  KLASS_DATA_DIR="$work/replica-$port" KLASS_CLUSTER=true KLASS_HTTP_ADDR="127.0.0.1:$port" \
    "$1/signaling" serve &
  replica_pid=$!
  pids+=($replica_pid)
  replica_url="http://127.0.0.1:$port"
  cluster_wait_http "$replica_url/healthz"
}
