#!/usr/bin/env bash
# First README command: install what is missing, then run the all-in-one server on its embedded
# defaults (SQLite, local files) with a demo school, printing tokens and links.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/klass/target}"
export KLASS_DATA_DIR="${KLASS_DATA_DIR:-$PWD/data}"
exec cargo run --release -p signaling -- serve --demo "$@"
