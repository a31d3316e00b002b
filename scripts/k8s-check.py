"""What kubernetes-validate's schemas cannot say about the rendered overlays (scripts/k8s-validate.sh).

Usage: python k8s-check.py RENDERED.yaml...   (PyYAML: the kubernetes-validate virtualenv has it)

Each file is one overlay's `kubectl kustomize` output. Checked on each:
- every container of a workload has resources (requests, a memory limit), a read-only root, no
  privilege escalation and no capability, and its pod runs as a non-root numeric user; every long-running container
  has a readiness or liveness probe; images went through the overlay's `images:`;
- every ConfigMap and Secret a pod reads exists in the overlay, or is one of the Secrets created
  beside it (EXTERNAL_SECRETS);
- every Service, HorizontalPodAutoscaler, PodDisruptionBudget and NetworkPolicy points at a
  workload that exists;
- the SFU's media ports, UDP and TCP 3478, are on the node in exactly one workload.
"""

import sys

import yaml

# Created by the operator before `kubectl apply -k` (k8s/base/secret.example.yaml, coturn.yaml).
EXTERNAL_SECRETS = {"klass-secrets", "klass-turn-tls"}
WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet"}


def check_overlay(path):
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    errors = []
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    n_media_workloads = 0
    for workload in workloads:
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = workload["spec"]["template"]["spec"]
        pod_security = pod.get("securityContext", {})
        if not pod_security.get("runAsNonRoot") or not pod_security.get("runAsUser"):
            errors.append(f"{where}: the pod does not run as a non-root numeric user")
        template_labels = workload["spec"]["template"]["metadata"].get("labels", {})
        if workload["spec"]["selector"]["matchLabels"].items() - template_labels.items():
            errors.append(f"{where}: the selector does not match the pod's labels")
        for container in pod.get("initContainers", []) + pod["containers"]:
            at = f"{where} container {container['name']}"
            resources = container.get("resources", {})
            if not resources.get("requests") or "memory" not in resources.get("limits", {}):
                errors.append(f"{at}: no requests or no memory limit")
            security = container.get("securityContext", {})
            if not security.get("readOnlyRootFilesystem") or security.get("allowPrivilegeEscalation", True):
                errors.append(f"{at}: the root filesystem is writable or privileges can escalate")
            if "ALL" not in security.get("capabilities", {}).get("drop", []):
                errors.append(f"{at}: capabilities are not all dropped")
            if not container["image"].startswith("localhost/") and "/" not in container["image"]:
                errors.append(f"{at}: image {container['image']} was not set by the overlay's images:")
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "configMapKeyRef" in source and ("ConfigMap", source["configMapKeyRef"]["name"]) not in names:
                    errors.append(f"{at}: {env['name']} reads a ConfigMap that is not rendered")
                if "secretKeyRef" in source and source["secretKeyRef"]["name"] not in EXTERNAL_SECRETS:
                    errors.append(f"{at}: {env['name']} reads an unknown Secret")
        for container in pod["containers"]:
            if not (container.get("readinessProbe") or container.get("livenessProbe")):
                errors.append(f"{where} container {container['name']}: no probe")
            media = {
                (p.get("protocol", "TCP"), p.get("hostPort"))
                for p in container.get("ports", [])
                if p["containerPort"] == 3478 and p.get("hostPort")
            }
            if media:
                n_media_workloads += 1
                if media != {("UDP", 3478), ("TCP", 3478)}:
                    errors.append(f"{where}: the SFU's ports on the node are {sorted(media)}")
        for volume in pod.get("volumes", []):
            if "configMap" in volume and ("ConfigMap", volume["configMap"]["name"]) not in names:
                errors.append(f"{where}: volume {volume['name']} mounts a ConfigMap that is not rendered")
            if "secret" in volume and volume["secret"]["secretName"] not in EXTERNAL_SECRETS:
                errors.append(f"{where}: volume {volume['name']} mounts an unknown Secret")
            claim = volume.get("persistentVolumeClaim")
            if claim and ("PersistentVolumeClaim", claim["claimName"]) not in names:
                errors.append(f"{where}: volume {volume['name']} claims a volume that is not rendered")
    if n_media_workloads != 1:
        errors.append(f"{n_media_workloads} workloads put the SFU's media ports on the node, not one")

    def selects_a_workload(selector):
        return any(
            selector.items() <= w["spec"]["template"]["metadata"].get("labels", {}).items() for w in workloads
        )

    for o in objects:
        where = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "Service" and not selects_a_workload(o["spec"]["selector"]):
            errors.append(f"{where}: selects no workload")
        if o["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = o["spec"]["selector" if o["kind"] == "PodDisruptionBudget" else "podSelector"]
            if not selects_a_workload(selector.get("matchLabels", {})):
                errors.append(f"{where}: selects no workload")
        if o["kind"] == "HorizontalPodAutoscaler":
            target = o["spec"]["scaleTargetRef"]
            if (target["kind"], target["name"]) not in names:
                errors.append(f"{where}: scales {target['kind']}/{target['name']}, which is not rendered")
    return len(objects), errors


def main():
    failed = False
    for path in sys.argv[1:]:
        n_objects, errors = check_overlay(path)
        for error in errors:
            print(f"{path}: {error}", file=sys.stderr)
        failed |= bool(errors)
        if not errors:
            print(f"   k8s-check: {path}: {n_objects} objects pass")
    if failed or len(sys.argv) < 2:
        sys.exit(1)


if __name__ == "__main__":
    main()
