#!/usr/bin/env bash
# A call joined by a non-browser WebRTC client: two aiortc participants written from
# docs/protocol.md alone (signaling/tests/aiortc/call_test.py), against a fresh demo server on free
# loopback ports. They apply our SDP answers unmodified; 0 when both connect (ICE and DTLS) and each
# decodes the other's media from its slots.
#
# Usage: scripts/aiortc-test.sh SIGNALING_BIN [call_test.py options...]
# The Python packages (pinned in signaling/tests/aiortc/requirements.txt) go to a virtual
# environment in ${KLASS_CACHE:-~/.cache/klass}/venv-aiortc, made again when the pins change.
set -euo pipefail
bin=$(realpath "$1")
shift
here="$(cd "$(dirname "$0")/.." && pwd)"
requirements="$here/signaling/tests/aiortc/requirements.txt"
venv="${KLASS_CACHE:-$HOME/.cache/klass}/venv-aiortc"
started=$SECONDS

if ! cmp -s "$requirements" "$venv/requirements.txt"; then
  echo "== installing aiortc into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-virtualenv -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi

work=$(mktemp -d)
read -r http_port media_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
base="http://127.0.0.1:$http_port"
# The demo school on loopback: it prints the class backend's key; its home page links each
# member's call with a token (what the participants use).
# Media workers are not needed; rate limits and admission control stay on.
KLASS_DATA_DIR="$work/data" KLASS_HTTP_ADDR="127.0.0.1:$http_port" KLASS_PUBLIC_URL="$base" \
  KLASS_SFU_UDP_ADDR="127.0.0.1:$media_port" KLASS_SFU_TCP_ADDR="127.0.0.1:$media_port" \
  KLASS_WORKER_CONCURRENCY=0 RUST_LOG="${RUST_LOG:-warn}" \
  "$bin" serve --demo >"$work/demo.txt" 2>"$work/server.log" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 100); do
  curl -sf "$base/healthz" >/dev/null && grep -q 'KLASS_API_KEY' "$work/demo.txt" && break
  sleep 0.1
done
grep -q 'KLASS_API_KEY' "$work/demo.txt" || { cat "$work/server.log"; echo "aiortc test: no demo server"; exit 1; }

status=0
"$venv/bin/python" "$here/signaling/tests/aiortc/call_test.py" --base "$base" \
  --demo-output "$work/demo.txt" "$@" || status=$?
if [ "$status" != 0 ]; then
  echo "== server log (last 40 lines)"
  tail -40 "$work/server.log"
fi
echo "aiortc test: $([ "$status" = 0 ] && echo ok || echo FAILED) in $((SECONDS - started)) s"
exit "$status"
