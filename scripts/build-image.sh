#!/usr/bin/env bash
# Builds the container images without any image registry: localhost/klass (k8s/image/Containerfile,
# every workload of the server) and localhost/klass-coturn (k8s/image/coturn.Containerfile):
#   1. the release binaries `signaling` and `media-worker` (cargo, a no-op when they are current);
#   2. the base, Debian 12 bookworm from debootstrap (minbase) on the mirror apt uses here, kept
#      as a tarball under ~/.cache/klass/image and imported as localhost/klass-base:bookworm;
#   3. the image, with buildah: the runtime libraries from Debian, the binaries, the CenterFace
#      model, user 10001; tagged localhost/klass:latest and localhost/klass:<version>-<commit>;
#   4. a check from the image's own filesystem (buildah mount + chroot): both binaries run
#      `--version` and `ldd` finds every library; coturn and mtail start;
#   5. where podman can run containers (here with runc: crun refuses hybrid cgroups), the image
#      runs `serve --demo` as user 10001 on a read-only root and answers /healthz and /readyz.
#
#   bash scripts/build-image.sh               # all of the above
#   bash scripts/build-image.sh --prebuilt    # the binaries already in $CARGO_TARGET_DIR/release
#   bash scripts/build-image.sh --new-base    # debootstrap again (e.g. after a Debian point release)
#   bash scripts/build-image.sh --check [DIR] # no image: every library DIR's binaries link to (default
#                                             # the debug build) comes from a package the
#                                             # Containerfile installs or from the base
#   bash scripts/build-image.sh --smoke DIR   # steps 2 to 5 with DIR's binaries (test.sh: the debug
#                                             # build), as localhost/klass-smoke{,-coturn}:latest
#
# Needs root (debootstrap, buildah's storage under /var/lib/containers), as CI has. Push the image
# elsewhere with e.g. `buildah push localhost/klass:latest docker-archive:klass.tar` or to a
# registry, then set it in the overlay (`images:` in k8s/overlays/*/kustomization.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."

KLASS_CACHE="${KLASS_CACHE:-$HOME/.cache/klass}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KLASS_CACHE/target}"
export PATH="$HOME/.cargo/bin:$PATH"
CONTAINERFILE=k8s/image/Containerfile
IMAGE=localhost/klass
BASE_IMAGE=localhost/klass-base:bookworm
IMAGE_CACHE="$KLASS_CACHE/image"
BASE_TAR="$IMAGE_CACHE/bookworm-minbase.tar"
# Packages of the base that binaries link to: the Containerfile need not list them.
BASE_PACKAGES=(libc6 libgcc-s1 libstdc++6)
BINARIES=(signaling media-worker)

sudo_if_needed() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

# The Debian package of each shared library a binary names in its NEEDED entries.
needed_packages() {
  local binary=$1 lib path pkg
  for lib in $(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    path=$(ldconfig -p | awk -v lib="$lib" '$1 == lib && /x86-64/ { print $NF; exit }')
    [ -n "$path" ] || { echo "$binary: $lib is not installed here" >&2; return 1; }
    # Merged /usr: dpkg knows a library under one of its two names.
    pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null || dpkg -S "${path#/usr}" 2>/dev/null) \
      || { echo "$binary: no package owns $path" >&2; return 1; }
    echo "${pkg%%:*}"
  done
}

# The packages the Containerfile's `apt-get install` names.
containerfile_packages() {
  awk '/apt-get install/ { on = 1; sub(/.*apt-get install/, ""); print; next }
       on && /^ *&&/ { exit }
       on { print }' "$CONTAINERFILE" | tr ' \\' '\n\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u
}

check_spec() {
  local dir=${1:-$CARGO_TARGET_DIR/debug} binary pkg pkgs missing=0
  local listed
  listed=$(containerfile_packages)
  for name in "${BINARIES[@]}"; do
    binary="$dir/$name"
    [ -x "$binary" ] || { echo "no $binary: build it first" >&2; return 1; }
    pkgs=$(needed_packages "$binary") || return 1
    for pkg in $(sort -u <<<"$pkgs"); do
      if ! grep -qx "$pkg" <<<"$listed" && ! printf '%s\n' "${BASE_PACKAGES[@]}" | grep -qx "$pkg"; then
        echo "$CONTAINERFILE does not install $pkg, which $name links to" >&2
        missing=1
      fi
    done
  done
  [ "$missing" = 0 ] || return 1
  echo "$CONTAINERFILE installs every library that ${BINARIES[*]} link to: $(echo $listed)"
}

# The Debian mirror (and the security one) that apt uses on this machine.
apt_uri() {
  local want=$1 uri
  uri=$(grep -hs -A3 '^Types:' /etc/apt/sources.list.d/*.sources | awk '/^URIs:/ { print $2 }' | grep -E "$want" | head -n 1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | sed 's/\[[^]]*\]//' \
      | awk '{ print $2 }' | grep -E "$want" | head -n 1 || true)
  fi
  echo "$uri"
}

make_base() {
  local mirror security root started
  mirror="${KLASS_DEBIAN_MIRROR:-$(apt_uri '/debian/?$')}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  security="${KLASS_DEBIAN_SECURITY_MIRROR:-$(apt_uri 'security')}"
  security="${security:-http://deb.debian.org/debian-security}"
  started=$(date +%s)
  echo "== base: debootstrap --variant=minbase bookworm from $mirror"
  root=$(mktemp -d "$IMAGE_CACHE/rootfs.XXXXXX")
  sudo_if_needed debootstrap --variant=minbase --components=main bookworm "$root" "$mirror" >"$IMAGE_CACHE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$IMAGE_CACHE/debootstrap.log" >&2; sudo_if_needed rm -rf "$root"; return 1; }
  # Updates and security fixes for what the Containerfile installs; no documentation or
  # translations in the image.
  sudo_if_needed tee "$root/etc/apt/sources.list" >/dev/null <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
  sudo_if_needed tee "$root/etc/dpkg/dpkg.cfg.d/01-klass-nodoc" >/dev/null <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
  sudo_if_needed tee "$root/etc/apt/apt.conf.d/01-klass-minimal" >/dev/null <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
  # What the container runtime provides or what only the build needed.
  sudo_if_needed sh -c "rm -rf '$root'/dev/* '$root'/proc/* '$root'/sys/* '$root'/run/* '$root'/tmp/* \
    '$root'/var/cache/apt/archives/*.deb '$root'/var/lib/apt/lists/* '$root'/var/log/*.log \
    '$root'/usr/share/doc/* '$root'/usr/share/man/* '$root'/usr/share/info/*"
  sudo_if_needed find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  sudo_if_needed tar --numeric-owner --xattrs -C "$root" -cf "$BASE_TAR.tmp" .
  sudo_if_needed rm -rf "$root"
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  echo "   base: $BASE_TAR ($(du -m "$BASE_TAR" | cut -f1) MB) in $(elapsed "$started")"
}

import_base() {
  local ctr mnt
  echo "== base: importing $BASE_TAR as $BASE_IMAGE"
  ctr=$(sudo_if_needed buildah from scratch)
  mnt=$(sudo_if_needed buildah mount "$ctr")
  sudo_if_needed tar --numeric-owner --xattrs -xpf "$BASE_TAR" -C "$mnt"
  sudo_if_needed buildah umount "$ctr" >/dev/null
  sudo_if_needed buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  sudo_if_needed buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
}

# The image's filesystem, mounted: both binaries start, and ldd finds every library, as user 10001.
verify_image() {
  local ctr mnt status=0 name help
  ctr=$(sudo_if_needed buildah from --pull=never "$IMAGE:latest")
  mnt=$(sudo_if_needed buildah mount "$ctr")
  for name in "${BINARIES[@]}"; do
    echo "   chroot: $(sudo_if_needed chroot --userspec=10001:10001 "$mnt" "/usr/local/bin/$name" --version)" || status=1
    if sudo_if_needed chroot "$mnt" ldd "/usr/local/bin/$name" | grep 'not found'; then
      echo "$name: a library is missing from the image" >&2
      status=1
    fi
  done
  [ -s "$mnt/usr/share/klass/models/centerface.onnx" ] || { echo "no face model in the image" >&2; status=1; }
  sudo_if_needed buildah umount "$ctr" >/dev/null
  sudo_if_needed buildah rm "$ctr" >/dev/null
  ctr=$(sudo_if_needed buildah from --pull=never "$IMAGE-coturn:latest")
  mnt=$(sudo_if_needed buildah mount "$ctr")
  echo "   chroot: $(sudo_if_needed chroot --userspec=10001:10001 "$mnt" mtail --version | head -n 1)" || status=1
  # Read whole: `grep -q` would close the pipe under turnserver, and pipefail count that.
  help=$(sudo_if_needed chroot --userspec=10001:10001 "$mnt" turnserver -h 2>&1 || true)
  if grep -q -- '--use-auth-secret' <<<"$help"; then
    echo "   chroot: turnserver -h lists --use-auth-secret"
  else
    echo "turnserver does not start: $help" >&2
    status=1
  fi
  sudo_if_needed buildah umount "$ctr" >/dev/null
  sudo_if_needed buildah rm "$ctr" >/dev/null
  return "$status"
}

# Runs the image as Kubernetes would (user 10001, read-only root, a data volume) where podman can
# run containers here; says why not otherwise. A check beyond verify_image, so never fatal.
run_image() {
  local runtime=() data port udp name=klass-image-check n_tries
  if ! command -v podman >/dev/null 2>&1; then
    echo "   run: skipped (no podman)"
    return 0
  fi
  command -v runc >/dev/null 2>&1 && runtime=(--runtime runc)
  # One left by an interrupted run.
  sudo_if_needed podman rm -f "$name" >/dev/null 2>&1 || true
  data=$(mktemp -d)
  chown 10001:10001 "$data"
  read -r port udp < <(python3 -c '
import socket
tcp, udp = socket.socket(), socket.socket(type=socket.SOCK_DGRAM)
tcp.bind(("127.0.0.1", 0)); udp.bind(("127.0.0.1", 0))
print(tcp.getsockname()[1], udp.getsockname()[1])')
  # Explicit limits: podman's defaults are above what an unprivileged sandbox may set.
  if ! sudo_if_needed podman "${runtime[@]}" run -d --name "$name" --network host --read-only \
      --tmpfs /tmp -v "$data:/var/lib/klass" --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
      --no-healthcheck -e "KLASS_HTTP_ADDR=127.0.0.1:$port" -e "KLASS_SFU_UDP_ADDR=127.0.0.1:$udp" \
      -e "KLASS_SFU_TCP_ADDR=127.0.0.1:$udp" "$IMAGE:latest" serve --demo >"$IMAGE_CACHE/run.log" 2>&1; then
    echo "   run: podman cannot run containers here ($(tail -n 1 "$IMAGE_CACHE/run.log")); the chroot check stands"
    sudo_if_needed podman "${runtime[@]}" rm -f "$name" >/dev/null 2>&1 || true
    rm -rf "$data"
    return 0
  fi
  for n_tries in $(seq 1 50); do
    curl -fsS -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  if curl -fsS -m 2 "http://127.0.0.1:$port/healthz" >/dev/null && curl -fsS -m 2 "http://127.0.0.1:$port/readyz" >/dev/null; then
    echo "   run: podman run $IMAGE:latest serve --demo as $(sudo_if_needed podman exec "$name" id -u) on a read-only root: /healthz and /readyz answer"
  else
    echo "   run: the container did not answer /readyz: $(sudo_if_needed podman logs "$name" 2>&1 | tail -n 5)" >&2
    sudo_if_needed podman "${runtime[@]}" rm -f -t 10 "$name" >/dev/null 2>&1 || true
    rm -rf "$data"
    return 1
  fi
  sudo_if_needed podman "${runtime[@]}" stop -t 10 "$name" >/dev/null
  sudo_if_needed podman "${runtime[@]}" rm "$name" >/dev/null
  rm -rf "$data"
}

# buildah bud CONTAINERFILE NAME CONTEXT: tagged NAME:latest and NAME:<version>-<commit>. Layers
# are cached: a rebuild with new binaries repeats only the COPY steps. RUN steps are chrooted
# (--isolation chroot) rather than run by an OCI runtime, which needs cgroups this machine and CI
# containers may not offer (crun: "cgroups in hybrid mode not supported"), and share the host's
# network to reach the Debian mirror. --format docker keeps the HEALTHCHECK.
build_one() {
  local containerfile=$1 name=$2 context=$3
  local tags=(-t "$name:latest")
  [ -z "$version_tag" ] || tags+=(-t "$name:$version_tag")
  echo "== image: buildah bud -f $containerfile -t $name"
  sudo_if_needed buildah bud --quiet --format docker --layers --pull=never \
    --isolation "${KLASS_BUILDAH_ISOLATION:-chroot}" --network host \
    --build-arg "BASE=$BASE_IMAGE" --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$commit" \
    -f "$containerfile" "${tags[@]}" "$context" >/dev/null
}

prebuilt=0
new_base=0
bin_dir="$CARGO_TARGET_DIR/release"
case "${1:-}" in
  --check) check_spec "${2:-}"; exit ;;
  --prebuilt) prebuilt=1 ;;
  --new-base) new_base=1 ;;
  --smoke)
    # Any build of the binaries, e.g. the debug one test.sh has: the same libraries, the same
    # Containerfile, another name, so that it is never taken for the release image.
    prebuilt=1
    bin_dir=${2:?--smoke needs the directory of the binaries}
    IMAGE=localhost/klass-smoke
    ;;
  "") ;;
  *) echo "usage: $0 [--prebuilt | --new-base | --check [DIR] | --smoke DIR]" >&2; exit 2 ;;
esac

started=$(date +%s)
# Idempotent: the build's Debian packages, Rust, the face model, buildah and debootstrap.
bash scripts/install-deps.sh --image
mkdir -p "$IMAGE_CACHE"

if [ "$prebuilt" = 0 ]; then
  echo "== release binaries (cargo build --release)"
  # One package per command: `signaling` built alone, as scripts/demo.sh builds it, reuses that
  # build; with `-p media-worker` in the same command, features may unify differently.
  cargo build --release --locked -p signaling
  cargo build --release --locked -p media-worker
fi
model="${KLASS_FACE_MODEL:-$KLASS_CACHE/models/centerface.onnx}"
check_spec "$bin_dir"

if [ "$new_base" = 1 ] || [ ! -s "$BASE_TAR" ]; then
  make_base
  sudo_if_needed buildah rmi "$BASE_IMAGE" >/dev/null 2>&1 || true
fi
sudo_if_needed buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1 || import_base

context="$IMAGE_CACHE/context"
rm -rf "$context"
mkdir -p "$context"
for name in "${BINARIES[@]}"; do cp "$bin_dir/$name" "$context/"; done
cp "$model" "$context/centerface.onnx"
version=$("$bin_dir/signaling" --version | awk '{ print $2 }')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The release images also get :<version>-<commit>; a smoke image only :latest.
version_tag=""
[ "$IMAGE" != localhost/klass ] || version_tag="$version-$commit"
build_one "$CONTAINERFILE" "$IMAGE" "$context"
rm -rf "$context"/*
build_one k8s/image/coturn.Containerfile "$IMAGE-coturn" "$context"
rm -rf "$context"

# Older <version>-<commit> tags of both images, and the layers only they held, go.
for old in $(sudo_if_needed buildah images --format '{{.Name}}:{{.Tag}}' --filter "reference=$IMAGE*" \
  | grep -E ":[0-9][^:]*-[0-9a-f]+$" | grep -v ":$version-$commit$" || true); do
  sudo_if_needed buildah rmi "$old" >/dev/null 2>&1 || true
done
sudo_if_needed buildah rmi --prune >/dev/null 2>&1 || true

echo "== check from the images' filesystems"
verify_image
run_image
echo "== built $IMAGE and $IMAGE-coturn (:latest${version_tag:+ and :$version_tag}) in $(elapsed "$started")"
sudo_if_needed buildah images --filter "reference=$IMAGE*"
