#!/usr/bin/env bash
# `loadtest call` (real str0m participants with media, end-to-end encrypted) through an API replica
# in a cluster (docs/cluster.md): a throwaway PostgreSQL, one SFU node (`signaling sfu`) and one
# replica (`signaling serve`, KLASS_CLUSTER=true), each its own process. Media goes straight to
# the node, signaling through the replica; exits with the load test's status.
#   scripts/cluster-call.sh BIN_DIR [call options...]
set -euo pipefail
bin_dir="$1"
shift
source "$(dirname "$0")/lib/cluster.sh"
# Every simulated user comes from 127.0.0.1: the per-address rate limits would count them as one.
export KLASS_CONFIG_BODY='limits: { rate_limits: false }'
cluster_start_postgres
cluster_start_node "$bin_dir" node-a
cluster_start_replica "$bin_dir"
# The server's CPU is the node's: it forwards the media.
"$bin_dir/loadtest" call --url "$replica_url" --server-pid "$node_pid" "$@"
