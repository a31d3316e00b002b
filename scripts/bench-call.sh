#!/usr/bin/env bash
# The call benchmark of docs/benchmarks.md: `loadtest call` against a fresh release server for
# each size, 3 speakers changing every 4 s, every camera on, and one line of figures per size.
#   scripts/bench-call.sh [SECONDS] [SIZES...]     default: 20 s, sizes 8 (Standard) 20 30 50 70
# Extra server settings come from the environment (e.g. KLASS_SFU_BATCH_SENDS=false,
# KLASS_SFU_MEDIA_THREAD=false); extra `loadtest call` options from LOADTEST_ARGS (e.g.
# LOADTEST_ARGS=--no-e2ee: participants in clear, the baseline of end-to-end encryption);
# BIN_DIR=dir runs the binaries there instead of building a release. Run it on an otherwise idle
# machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/klass/target}"
seconds="${1:-20}"
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(8 20 30 50 70)
bin_dir="${BIN_DIR:-$CARGO_TARGET_DIR/release}"
[ -n "${BIN_DIR:-}" ] || cargo build --release --locked -p signaling -p loadtest
read -r -a loadtest_args <<<"${LOADTEST_ARGS:-}"
printf '%-6s %-9s %-8s %-22s %-16s %-16s %-11s %-8s %s\n' people tier admitted "delivery min/median" "join p50/p95" "ICE p50/p95" "server CPU" "µs/pkt" "slots switch p95, speakers p95"
for n in "${sizes[@]}"; do
  tier=plus
  [ "$n" -le 8 ] && tier=standard
  log=$(mktemp)
  status=PASS
  bash scripts/loadtest-smoke.sh "$bin_dir" --participants "$n" --tier "$tier" --seconds "$seconds" "${loadtest_args[@]}" >"$log" 2>&1 || status=FAIL
  field() { grep -E "$1" "$log" | head -1; }
  admitted=$(field '^admitted' | awk '{print $2}')
  delivery=$(field '^delivery' | sed -E 's/.*min ([0-9.]+), p5 [0-9.]+, median ([0-9.]+).*/\1 \/ \2/')
  join=$(field '^join' | sed -E 's/.*p50 ([0-9]+) ms, p95 ([0-9]+) ms.*/\1 \/ \2 ms/')
  ice=$(field '^ICE' | sed -E 's/.*p50 ([0-9]+) ms, p95 ([0-9]+) ms.*/\1 \/ \2 ms/')
  cpu=$(field '^server CPU  ' | sed -E 's/.* ([0-9.]+) % of one core.*/\1 %/')
  per=$(field 'per forwarded packet' | sed -E 's/.*: ([0-9.]+) µs.*/\1/')
  slots=$(field 'to `slots`' | sed -E 's/.*p95 ([0-9]+).*/\1 ms/')
  speakers=$(field 'to `speakers`' | sed -E 's/.*p95 ([0-9]+).*/\1 ms/')
  printf '%-6s %-9s %-8s %-22s %-16s %-16s %-11s %-8s %s, %s %s\n' "$n" "$tier" "$admitted" "$delivery" "$join" "$ice" "$cpu" "$per" "$slots" "$speakers" "$status"
  [ "$status" = PASS ] || tail -30 "$log"
  rm -f "$log"
done
