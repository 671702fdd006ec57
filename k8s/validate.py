#!/usr/bin/env python3
"""Renders every kustomize target in k8s/ and checks it offline.

1. `kubectl kustomize` renders base, overlays/dev and overlays/production.
2. Every object is validated (strictly: unknown fields are errors) against the Kubernetes JSON
   schemas bundled in the PyPI package kubernetes-validate. Custom resources have no bundled
   schema; they are checked here explicitly (CloudNativePG `Cluster` and `ScheduledBackup`, the
   Barman Cloud plugin's `ObjectStore`): in production every cluster archives its WAL through
   the plugin into a declared ObjectStore and has a ScheduledBackup.
3. Every Deployment keeps the invariants the platform team relies on: resource requests and
   limits, non-root, read-only root filesystem, no privilege escalation, all capabilities
   dropped; Orgplane's own Deployments also have native gRPC readiness and liveness probes on
   grpc.health.v1, two or more replicas in the base, and topology spread.

Exits non-zero with one line per violation. Run: python3 k8s/validate.py (see k8s/README.md).
"""

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

K8S_VERSION = "1.32.0"
ROOT = Path(__file__).resolve().parent
TARGETS = ["base", "overlays/dev", "overlays/production"]
ORGPLANE_SERVICES = {"identity", "organization", "workspace", "billing-access", "orgplane"}
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"

errors: list[str] = []


def fail(target: str, obj: dict, message: str) -> None:
    errors.append(f"{target}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {message}")


def render(target: str) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / target)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def check_cnpg_cluster(target: str, obj: dict) -> None:
    spec = obj.get("spec", {})
    if obj.get("apiVersion") != "postgresql.cnpg.io/v1":
        fail(target, obj, "unexpected apiVersion for a CloudNativePG Cluster")
    if not isinstance(spec.get("instances"), int) or spec["instances"] < 3:
        fail(target, obj, "a production cluster needs at least 3 instances")
    if not spec.get("storage", {}).get("size"):
        fail(target, obj, "storage.size is required")
    initdb = spec.get("bootstrap", {}).get("initdb", {})
    if not initdb.get("database") or not initdb.get("owner"):
        fail(target, obj, "bootstrap.initdb.database and owner are required")
    allowed = {"instances", "imageName", "primaryUpdateStrategy", "storage", "bootstrap",
               "resources", "affinity", "postgresql", "monitoring", "backup", "plugins",
               "externalClusters"}
    for key in spec:
        if key not in allowed:
            fail(target, obj, f"unknown Cluster spec field {key!r}")
    for plugin in spec.get("plugins", []):
        unknown = set(plugin) - {"name", "isWALArchiver", "enabled", "parameters"}
        if unknown:
            fail(target, obj, f"unknown plugin fields {sorted(unknown)}")


def wal_archive_store(obj: dict) -> str | None:
    """The ObjectStore a Cluster archives its WAL into through the Barman Cloud plugin."""
    for p in obj.get("spec", {}).get("plugins", []):
        if p.get("name") == BARMAN_PLUGIN and p.get("isWALArchiver"):
            return p.get("parameters", {}).get("barmanObjectName")
    return None


def check_object_store(target: str, obj: dict) -> None:
    spec = obj.get("spec", {})
    if obj.get("apiVersion") != "barmancloud.cnpg.io/v1":
        fail(target, obj, "unexpected apiVersion for an ObjectStore")
    config = spec.get("configuration", {})
    if not config.get("destinationPath"):
        fail(target, obj, "configuration.destinationPath is required")
    if config.get("serverName"):
        fail(target, obj, "serverName must be left empty in an ObjectStore (set it per cluster)")
    if not spec.get("retentionPolicy"):
        fail(target, obj, "a retentionPolicy is required")


def check_scheduled_backup(target: str, obj: dict) -> None:
    spec = obj.get("spec", {})
    if obj.get("apiVersion") != "postgresql.cnpg.io/v1":
        fail(target, obj, "unexpected apiVersion for a ScheduledBackup")
    if len(str(spec.get("schedule", "")).split()) != 6:
        fail(target, obj, "schedule must be a six-field cron expression (seconds first)")
    if not spec.get("cluster", {}).get("name"):
        fail(target, obj, "cluster.name is required")
    if spec.get("method") != "plugin" or spec.get("pluginConfiguration", {}).get("name") != BARMAN_PLUGIN:
        fail(target, obj, f"method must be plugin with pluginConfiguration.name {BARMAN_PLUGIN}")


def check_backups(target: str, objects: list[dict]) -> None:
    """Production: every Cluster archives WAL into a declared ObjectStore and is scheduled."""
    stores = {o["metadata"]["name"] for o in objects if o.get("kind") == "ObjectStore"}
    scheduled = {o.get("spec", {}).get("cluster", {}).get("name")
                 for o in objects if o.get("kind") == "ScheduledBackup"}
    clusters = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Cluster"}
    for name, cluster in clusters.items():
        store = wal_archive_store(cluster)
        if store is None:
            fail(target, cluster, f"no WAL archiving through {BARMAN_PLUGIN}")
        elif store not in stores:
            fail(target, cluster, f"archives into ObjectStore {store!r}, which is not declared")
        if name not in scheduled:
            fail(target, cluster, "no ScheduledBackup")
    for o in objects:
        if o.get("kind") == "ScheduledBackup" and o["spec"]["cluster"].get("name") not in clusters:
            fail(target, o, "backs up a Cluster that is not declared")


def check_deployment(target: str, obj: dict) -> None:
    name = obj["metadata"]["name"]
    spec = obj["spec"]
    pod = spec["template"]["spec"]
    pod_sc = pod.get("securityContext", {})
    ours = name in ORGPLANE_SERVICES
    if target == "base" and ours and spec.get("replicas", 1) < 2:
        fail(target, obj, "base Deployments run at least 2 replicas")
    if target == "base" and ours and not pod.get("topologySpreadConstraints"):
        fail(target, obj, "missing topologySpreadConstraints")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if not res.get(kind, {}).get(r):
                    fail(target, obj, f"container {c['name']}: resources.{kind}.{r} missing")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            fail(target, obj, f"container {c['name']}: not runAsNonRoot")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(target, obj, f"container {c['name']}: root filesystem not read-only")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(target, obj, f"container {c['name']}: privilege escalation not disabled")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            fail(target, obj, f"container {c['name']}: capabilities not dropped")
        if target == "base" and ours:
            stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            if not 0 < stop < pod.get("terminationGracePeriodSeconds", 30):
                fail(target, obj, f"container {c['name']}: no preStop sleep within the grace period")
        if ours:
            for probe in ("readinessProbe", "livenessProbe"):
                grpc = c.get(probe, {}).get("grpc")
                if not grpc or grpc.get("port") != 50051:
                    fail(target, obj, f"container {c['name']}: {probe} is not a gRPC health probe")


def main() -> int:
    counts = {}
    for target in TARGETS:
        objects = render(target)
        counts[target] = len(objects)
        for obj in objects:
            kind = obj.get("kind")
            if kind == "Cluster":
                check_cnpg_cluster(target, obj)
                continue
            if kind == "ObjectStore":
                check_object_store(target, obj)
                continue
            if kind == "ScheduledBackup":
                check_scheduled_backup(target, obj)
                continue
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(target, obj, f"schema: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                fail(target, obj, "no schema (an unhandled custom resource?)")
            if kind == "Deployment":
                check_deployment(target, obj)
        if target == "overlays/production":
            check_backups(target, objects)
    for target, n in counts.items():
        print(f"{target}: {n} objects rendered")
    for e in errors:
        print(f"violation: {e}")
    print(f"k8s: {sum(counts.values())} objects checked, {len(errors)} violations")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
