#!/usr/bin/env bash
# Renders each Kustomize overlay under k8s/overlays and validates what it renders, offline:
#   - rendering: `kubectl kustomize` of Debian's kubernetes-client (kubectl 1.20, kustomize v2.0.3),
#     unpacked from its .deb into ~/.cache/klass/kubectl (not installed: it would take the place of
#     another kubectl);
#   - schemas: `kubernetes-validate --strict` (PyPI, schemas inside the package, pinned, in its own
#     virtualenv) against the oldest and the newest Kubernetes we support: unknown fields, wrong
#     types and missing required fields fail;
#   - what the schemas cannot say (scripts/k8s-check.py): probes, resources, non-root and read-only
#     root on every container, references to ConfigMaps and Secrets that exist or are the named
#     external ones, selectors of Services, autoscalers and disruption budgets that match a
#     workload, the SFU's UDP port.
# Usage: scripts/k8s-validate.sh [OUT_DIR]   (the rendered overlays are kept in OUT_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
KLASS_CACHE="${KLASS_CACHE:-$HOME/.cache/klass}"
validate_version=1.37.0
# The oldest Kubernetes the manifests are for (UDP and TCP on one LoadBalancer: 1.26), the newest
# kubernetes-validate knows.
k8s_versions=(1.29.0 1.37.0)
kubectl_dir="$KLASS_CACHE/kubectl"
kubectl="$kubectl_dir/usr/bin/kubectl"
venv="$KLASS_CACHE/venv-k8s"
started=$SECONDS

if [ ! -x "$kubectl" ]; then
  echo "== unpacking Debian's kubernetes-client into $kubectl_dir"
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt's sandbox user must be able to write the .deb file here
  (cd "$tmp" && { apt-get download kubernetes-client >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download kubernetes-client >/dev/null; }; })
  rm -rf "$kubectl_dir"
  dpkg -x "$tmp"/kubernetes-client_*.deb "$kubectl_dir"
  rm -rf "$tmp"
fi

installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null || true)
if [ "$installed" != "$validate_version" ]; then
  echo "== installing kubernetes-validate $validate_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$validate_version"
fi

if [ -n "${1:-}" ]; then
  out=$1
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
overlays=()
for dir in k8s/overlays/*/; do
  overlay=$(basename "$dir")
  "$kubectl" kustomize "$dir" >"$out/$overlay.yaml"
  overlays+=("$out/$overlay.yaml")
  echo "   rendered $dir: $(grep -c '^kind:' "$out/$overlay.yaml") objects"
done
[ ${#overlays[@]} -ge 2 ] || { echo "expected the one-node and cluster overlays" >&2; exit 1; }

for version in "${k8s_versions[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${overlays[@]}" k8s/base/secret.example.yaml
  echo "   kubernetes-validate --strict -k $version: valid"
done
"$venv/bin/python" scripts/k8s-check.py "${overlays[@]}"
echo "== k8s manifests valid in $((SECONDS - started)) s"
