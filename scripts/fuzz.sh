#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/, docs/fuzzing.md) for SECONDS_PER_TARGET seconds each (20 by
# default: a smoke run for CI; hours for a real campaign) and fails if any of them crashes.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# KLASS_FUZZ_MEDIA=0 leaves out media_probe, and with it media-worker (FFmpeg, OpenCV...): two
# thirds of a cold build (docs/fuzzing.md).
#
# Works on the stable toolchain: cargo-fuzz passes nightly flags (-Zsanitizer=address), which
# RUSTC_BOOTSTRAP=1 lets stable rustc accept; stable ships the AddressSanitizer runtime.
# Corpora grow in $KLASS_CACHE/fuzz-corpus/<target> and are kept between runs; crashing inputs go
# to $KLASS_CACHE/fuzz-artifacts/<target>, logs to $KLASS_CACHE/fuzz-logs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
export PATH="$HOME/.cargo/bin:$PATH"
cache="${KLASS_CACHE:-$HOME/.cache/klass}"
# Its own target directory: instrumented builds would otherwise evict the normal ones.
export CARGO_TARGET_DIR="$cache/fuzz-target"
export RUSTC_BOOTSTRAP=1
features=()
targets=(client_message sdp_offer ranges media_probe)
if [ "${KLASS_FUZZ_MEDIA:-1}" = 0 ]; then
  features=(--no-default-features)
  targets=(client_message sdp_offer ranges)
fi
if [ "$#" -gt 1 ]; then targets=("${@:2}"); fi
toolchain=()
if command -v rustup >/dev/null; then toolchain=(+stable); fi

if ! command -v cargo-fuzz >/dev/null; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

started=$(date +%s)
echo "== cargo fuzz build (address sanitizer, ${targets[*]})"
# `cargo fuzz` has no --locked: check the fuzz workspace's lock file first.
cargo "${toolchain[@]}" fetch --locked --manifest-path fuzz/Cargo.toml --quiet
cargo "${toolchain[@]}" fuzz build --sanitizer address "${features[@]}"
echo "   built in $(( $(date +%s) - started )) s"

# Seeds: text ones from fuzz/seeds, byte ranges and media files made here (no media in git).
seed() {
  local target="$1"
  local corpus="$cache/fuzz-corpus/$target"
  mkdir -p "$corpus"
  if [ -d "fuzz/seeds/$target" ]; then cp -n fuzz/seeds/"$target"/* "$corpus"/; fi
  case "$target" in
    ranges)
      # 8 bytes of file size (little endian), then the header value.
      local size='\xe8\x03\x00\x00\x00\x00\x00\x00'
      printf "${size}bytes=0-99" >"$corpus/range"
      printf "${size}bytes=-100" >"$corpus/suffix"
      printf "${size}bytes=900-" >"$corpus/open"
      printf "${size}bytes 0-99/1000" >"$corpus/content-range"
      ;;
    media_probe)
      if ! command -v ffmpeg >/dev/null; then
        echo "   no ffmpeg: media_probe starts from its corpus as it is"
        return
      fi
      local src=(-hide_banner -loglevel error -y -f lavfi -i testsrc=duration=0.2:size=64x48:rate=10)
      local tone=(-f lavfi -i sine=duration=0.2:sample_rate=8000)
      [ -s "$corpus/seed.mp4" ] || ffmpeg "${src[@]}" "${tone[@]}" -c:v libx264 -preset ultrafast -c:a aac -shortest "$corpus/seed.mp4"
      [ -s "$corpus/seed.webm" ] || ffmpeg "${src[@]}" -c:v libvpx -b:v 50k "$corpus/seed.webm"
      [ -s "$corpus/seed.avi" ] || ffmpeg "${src[@]}" -c:v mjpeg "$corpus/seed.avi"
      [ -s "$corpus/seed.ts" ] || ffmpeg "${src[@]}" -c:v mpeg2video "$corpus/seed.ts"
      [ -s "$corpus/seed.jpg" ] || ffmpeg "${src[@]}" -frames:v 1 "$corpus/seed.jpg"
      [ -s "$corpus/seed.png" ] || ffmpeg "${src[@]}" -frames:v 1 "$corpus/seed.png"
      [ -s "$corpus/seed.webp" ] || ffmpeg "${src[@]}" -frames:v 1 -c:v libwebp "$corpus/seed.webp" 2>/dev/null || true
      ;;
  esac
}

# libFuzzer options of one target: dictionaries of the formats' tokens; media files longer than
# libFuzzer's default 4 KB.
target_options() {
  case "$1" in
    client_message) echo "-dict=fuzz/dicts/client_message.dict" ;;
    sdp_offer) echo "-dict=fuzz/dicts/sdp.dict" ;;
    media_probe) echo "-max_len=65536" ;;
  esac
}

# FFmpeg wants a file: media_probe writes its input under $TMPDIR, removed on the way out.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$cache/fuzz-logs"
failed=()
summary=()
for target in "${targets[@]}"; do
  seed "$target"
  corpus="$cache/fuzz-corpus/$target"
  artifacts="$cache/fuzz-artifacts/$target"
  log="$cache/fuzz-logs/$target.log"
  mkdir -p "$artifacts"
  echo "== $target: ${seconds} s"
  status=0
  # shellcheck disable=SC2046 # `target_options` prints words without spaces.
  TMPDIR="$scratch" cargo "${toolchain[@]}" fuzz run --sanitizer address "${features[@]}" "$target" "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" $(target_options "$target") >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # libFuzzer's status lines: "#1234 DONE cov: 567 ft: 890 corp: 12/3Kb ...".
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  line="$target: ${execs:-?} executions, cov ${cov:-?}, features ${ft:-?}, corpus ${corp:-?}"
  if [ "$status" -ne 0 ]; then
    line="$line: FAILED (exit $status), log $log, inputs in $artifacts"
    failed+=("$target")
    grep -E -A30 '^==[0-9]+==ERROR|panicked at|^SUMMARY|Test unit written' "$log" | head -60 || tail -40 "$log"
  fi
  summary+=("$line")
done

echo "== fuzzing summary (${seconds} s per target, $(( $(date +%s) - started )) s in all)"
printf '   %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "== fuzz targets that crashed: ${failed[*]}" >&2
  echo "   reproduce: RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo fuzz run TARGET INPUT" >&2
  exit 1
fi
