#!/usr/bin/env python3
"""Renders every kustomize target in k8s/ and checks it offline.

1. `kubectl kustomize` renders base, overlays/dev and overlays/production.
2. Every object is validated (strictly: unknown fields are errors) against the Kubernetes JSON
   schemas bundled in the PyPI package kubernetes-validate. Custom resources have no bundled
   schema; they are checked here explicitly (CloudNativePG `Cluster` and `ScheduledBackup`, the
   Barman Cloud plugin's `ObjectStore`): in production every cluster archives its WAL through
   the plugin into a declared ObjectStore and has a ScheduledBackup. cert-manager's
   `Certificate` and `Issuer` are checked the same way: a Certificate has secretName, issuerRef,
   dnsNames, usages with "server auth" and "client auth" and privateKey.rotationPolicy Always
   (a CA Certificate, isCA, needs secretName, issuerRef and a commonName instead), and its
   issuerRef names a rendered Issuer (or a ClusterIssuer); an Issuer is exactly one of ca (with
   secretName), selfSigned, acme, vault, venafi.
3. Every Deployment keeps the invariants the platform team relies on: resource requests and
   limits, non-root, read-only root filesystem, no privilege escalation, all capabilities
   dropped; Orgplane's own Deployments also have readiness and liveness probes on
   grpc.health.v1 (startup probes too when present), two or more replicas in the base, and
   topology spread. A probe is either the kubelet's native gRPC probe on port 50051 (plaintext
   targets) or an `exec` of `orgplane health --service NAME` with a timeoutSeconds above 1;
   liveness and startup ask for `liveness`, readiness for something else.
4. Production serves TLS (overlays/production, with cert-manager): every Orgplane Deployment
   uses `exec` probes (the native gRPC probe speaks no TLS); its container gets
   ORGPLANE_TLS_CERT, ORGPLANE_TLS_KEY and ORGPLANE_TLS_CA (from its ConfigMaps, envFrom
   resolved against the rendered ConfigMaps, or env values) pointing into a read-only,
   non-subPath mount of a Secret that is the secretName of a rendered Certificate whose
   dnsNames include the Deployment's Service's name and every host the service URLs use for
   that Service; every ORGPLANE_*_URL in the ConfigMaps is https://; ORGPLANE_ALLOW_PLAINTEXT is
   absent or false; a service with ORGPLANE_SERVICE_AUTH=certificate is mapped, by a URI or DNS
   name of its Certificate, to its own account in ORGPLANE_TLS_CLIENT_ACCOUNTS of every other
   service, which verify client certificates (ORGPLANE_TLS_CLIENT_CA); Prometheus scrapes with
   `prometheus.io/scheme: https`.
5. Observability (see "Observability" in k8s/README.md): the Grafana dashboard
   observability/grafana-dashboard.json parses; its schemaVersion is 36 or later; it has a
   `datasource` variable (type datasource, query prometheus) and `namespace` and `grpc_service`
   variables from label_values; every panel has a unique id, a title, a type and a gridPos inside
   the 24-column grid, overlapping no other panel; every panel but a row has a datasource that is
   the variable and targets, each with an expr and a unique refId; expressions use only defined
   variables. Production ships it as the ConfigMap orgplane-grafana-dashboard (label
   grafana_dashboard: "1", no name hash) whose content is the file's. The Prometheus Operator's
   `PrometheusRule` (a custom resource, checked explicitly) has groups with unique names, and
   every rule an alert name, an expr, a valid `for` duration, labels.severity in info, warning,
   critical and the annotations summary, description and runbook_url, the runbook a section of
   k8s/README.md. Every PromQL expression has balanced parentheses, brackets, braces and quotes.
   With `promtool` on PATH, `promtool check rules` also checks the rule groups and the
   dashboard's expressions (as recording rules, variables substituted); without it, a note.
   The metric names the expressions use (see metric_names) must be exactly those listed in
   observability/metrics-used.txt; `--write-metrics-used` rewrites that file.

Exits non-zero with one line per violation. Run: python3 k8s/validate.py (see k8s/README.md).
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml

K8S_VERSION = "1.32.0"
ROOT = Path(__file__).resolve().parent
TARGETS = ["base", "overlays/dev", "overlays/production"]
ORGPLANE_SERVICES = {"identity", "organization", "workspace", "billing-access", "orgplane"}
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"
CERT_MANAGER = "cert-manager.io/v1"
GRPC_PORT = 50051
# clap reads a boolean flag's environment variable as false only for these values.
FALSEY = {"", "false", "no", "off", "n", "f", "0"}
DASHBOARD = ROOT / "observability" / "grafana-dashboard.json"
METRICS_USED = ROOT / "observability" / "metrics-used.txt"
README = ROOT / "README.md"
DASHBOARD_CONFIGMAP = "orgplane-grafana-dashboard"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1"
RUNBOOK_PREFIX = "https://github.com/orgplane/orgplane/blob/main/k8s/README.md#"
SEVERITIES = {"info", "warning", "critical"}
# Prometheus' duration syntax (as the PrometheusRule CRD's pattern for `for`).
DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")
# The metric names an expression uses: this exact rule is shared with the Rust test that checks
# that a running orgplane exports every name in observability/metrics-used.txt.
METRIC_NAME = re.compile(r"\b(grpc_server_[a-z_]+|grpc_client_[a-z_]+|orgplane_[a-z_]+|process_[a-z_]+)\b")
HISTOGRAMS = ("grpc_server_handling_seconds", "grpc_client_handling_seconds",
              "orgplane_http_duration_seconds")
# Grafana's own variables, and the values promtool sees in their place.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

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


def check_certificate(target: str, obj: dict) -> None:
    spec = obj.get("spec", {})
    if obj.get("apiVersion") != CERT_MANAGER:
        fail(target, obj, f"unexpected apiVersion for a cert-manager Certificate (want {CERT_MANAGER})")
    if not spec.get("secretName"):
        fail(target, obj, "secretName is required")
    ref = spec.get("issuerRef", {})
    if not ref.get("name"):
        fail(target, obj, "issuerRef.name is required")
    if ref.get("kind", "Issuer") not in ("Issuer", "ClusterIssuer") or ref.get("group", "cert-manager.io") != "cert-manager.io":
        fail(target, obj, "issuerRef must name a cert-manager.io Issuer or ClusterIssuer")
    allowed = {"secretName", "issuerRef", "dnsNames", "uris", "ipAddresses", "emailAddresses",
               "commonName", "subject", "usages", "privateKey", "duration", "renewBefore",
               "isCA", "secretTemplate", "revisionHistoryLimit", "keystores", "literalSubject",
               "encodeUsagesInRequest", "additionalOutputFormats", "nameConstraints",
               "otherNames", "renewBeforePercentage"}
    for key in spec:
        if key not in allowed:
            fail(target, obj, f"unknown Certificate spec field {key!r}")
    if spec.get("isCA"):
        if not spec.get("commonName"):
            fail(target, obj, "a CA Certificate needs a commonName")
        return
    if not spec.get("dnsNames"):
        fail(target, obj, "dnsNames are required")
    usages = spec.get("usages", [])
    for usage in ("server auth", "client auth"):
        if usage not in usages:
            fail(target, obj, f"usages must include {usage!r}")
    key = spec.get("privateKey", {})
    if key.get("rotationPolicy") != "Always":
        fail(target, obj, "privateKey.rotationPolicy must be Always (a new key on every renewal)")


def check_issuer(target: str, obj: dict) -> None:
    spec = obj.get("spec", {})
    if obj.get("apiVersion") != CERT_MANAGER:
        fail(target, obj, f"unexpected apiVersion for a cert-manager Issuer (want {CERT_MANAGER})")
    kinds = [k for k in ("ca", "selfSigned", "acme", "vault", "venafi") if k in spec]
    if len(kinds) != 1 or set(spec) != set(kinds):
        fail(target, obj, "an Issuer has exactly one of ca, selfSigned, acme, vault, venafi")
    if "ca" in spec and not spec["ca"].get("secretName"):
        fail(target, obj, "ca.secretName is required")


def check_issuer_refs(target: str, objects: list[dict]) -> None:
    issuers = {o["metadata"]["name"] for o in objects if o.get("kind") == "Issuer"}
    for o in objects:
        if o.get("kind") != "Certificate":
            continue
        ref = o.get("spec", {}).get("issuerRef", {})
        if ref.get("kind", "Issuer") == "Issuer" and ref.get("name") not in issuers:
            fail(target, o, f"issued by Issuer {ref.get('name')!r}, which is not declared")


def health_probe_service(probe: dict) -> str | None:
    """The service an `exec` probe running `orgplane health --service NAME` asks about."""
    cmd = probe.get("exec", {}).get("command", [])
    if len(cmd) < 2 or Path(cmd[0]).name != "orgplane" or cmd[1] != "health":
        return None
    for i, arg in enumerate(cmd[2:], start=2):
        if arg == "--service" and i + 1 < len(cmd):
            return cmd[i + 1]
        if arg.startswith("--service="):
            return arg.split("=", 1)[1]
    return None


def check_probes(target: str, obj: dict, c: dict) -> None:
    """Native gRPC on 50051 (plaintext targets) or `orgplane health --service` (required in
    production, where the kubelet's gRPC probe cannot speak TLS)."""
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        p = c.get(probe)
        if p is None:
            if probe != "startupProbe":
                fail(target, obj, f"container {c['name']}: no {probe}")
            continue
        grpc, service = p.get("grpc"), health_probe_service(p)
        if grpc is not None:
            if target == "overlays/production":
                fail(target, obj, f"container {c['name']}: {probe} is a native gRPC probe, which "
                                  "speaks no TLS: use exec `orgplane health --service`")
            if grpc.get("port") != GRPC_PORT:
                fail(target, obj, f"container {c['name']}: {probe} is not a gRPC health probe "
                                  f"on port {GRPC_PORT}")
            service = grpc.get("service", "")
        elif service is not None:
            if p.get("timeoutSeconds", 1) < 2:
                fail(target, obj, f"container {c['name']}: {probe} runs `orgplane health` with "
                                  "timeoutSeconds under 2")
        else:
            fail(target, obj, f"container {c['name']}: {probe} is neither a native gRPC probe "
                              "nor an exec of `orgplane health --service NAME`")
            continue
        if probe == "readinessProbe" and service == "liveness":
            fail(target, obj, f"container {c['name']}: readinessProbe asks for liveness")
        if probe != "readinessProbe" and service != "liveness":
            fail(target, obj, f"container {c['name']}: {probe} asks for {service!r}, not liveness")


def container_env(c: dict, configmaps: dict[str, dict]) -> dict[str, str]:
    """The literal environment of a container: its ConfigMaps (envFrom) then its env values.
    Values from Secrets are unknown and left out."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            prefix = source.get("prefix", "")
            data = configmaps.get(ref.get("name"), {}).get("data", {})
            env.update({prefix + k: str(v) for k, v in data.items()})
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            env.pop(e["name"], None)
    return env


def url_host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]


def check_tls(target: str, objects: list[dict]) -> None:
    """Production: every Orgplane Deployment serves TLS from a cert-manager certificate it
    mounts, the services call each other on https:// and know each other by certificate."""
    configmaps = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "ConfigMap"}
    certs = {o["spec"].get("secretName"): o for o in objects
             if o.get("kind") == "Certificate" and o.get("apiVersion") == CERT_MANAGER
             and o.get("spec", {}).get("secretName")}
    services = [o for o in objects if o.get("kind") == "Service"]
    deployments = [o for o in objects if o.get("kind") == "Deployment"
                   and o["metadata"]["name"] in ORGPLANE_SERVICES]
    # Every ORGPLANE_*_URL an Orgplane ConfigMap holds: https, and by host, per Service name.
    hosts: dict[str, set[str]] = {}
    for d in deployments:
        for c in d["spec"]["template"]["spec"]["containers"]:
            for source in c.get("envFrom", []):
                name = source.get("configMapRef", {}).get("name")
                cm = configmaps.get(name)
                if name and cm is None:
                    fail(target, d, f"container {c['name']}: envFrom ConfigMap {name!r} is not rendered")
                    continue
                for key, value in (cm or {}).get("data", {}).items():
                    if key.startswith("ORGPLANE_") and key.endswith("_URL"):
                        if not str(value).startswith("https://"):
                            fail(target, cm, f"{key} is not https:// ({value})")
                        host = url_host(str(value))
                        hosts.setdefault(host.split(".", 1)[0], set()).add(host)
    identities: dict[str, tuple[str, set[str]]] = {}  # deployment -> (account, certificate names)
    client_accounts: dict[str, str | None] = {}       # deployment -> ORGPLANE_TLS_CLIENT_ACCOUNTS
    for d in deployments:
        name = d["metadata"]["name"]
        pod = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        annotations = d["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/scheme") != "https":
            fail(target, d, "metrics are served over TLS: prometheus.io/scheme must be https")
        own_services = [s["metadata"]["name"] for s in services
                        if s["spec"].get("selector") and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())]
        if not own_services:
            fail(target, d, "no Service selects its pods")
        secret_volumes = {v["name"]: v["secret"].get("secretName") for v in pod.get("volumes", []) if "secret" in v}
        for c in pod["containers"]:
            env = container_env(c, configmaps)
            if env.get("ORGPLANE_ALLOW_PLAINTEXT", "").strip().lower() not in FALSEY:
                fail(target, d, f"container {c['name']}: ORGPLANE_ALLOW_PLAINTEXT is "
                                f"{env['ORGPLANE_ALLOW_PLAINTEXT']!r} in production")
            paths = {k: env.get(k) for k in ("ORGPLANE_TLS_CERT", "ORGPLANE_TLS_KEY", "ORGPLANE_TLS_CA")}
            for k, v in paths.items():
                if not v:
                    fail(target, d, f"container {c['name']}: {k} is not set")
            client_accounts[name] = env.get("ORGPLANE_TLS_CLIENT_ACCOUNTS", "") \
                if env.get("ORGPLANE_TLS_CLIENT_CA") else None
            cert = None
            for k, path in paths.items():
                if not path:
                    continue
                mount = next((m for m in c.get("volumeMounts", [])
                              if path == m["mountPath"]
                              or path.startswith(m["mountPath"].rstrip("/") + "/")), None)
                secret = secret_volumes.get(mount["name"]) if mount else None
                if secret is None:
                    fail(target, d, f"container {c['name']}: {k} ({path}) is not in a mounted Secret")
                    continue
                if mount.get("subPath") or mount.get("subPathExpr"):
                    fail(target, d, f"container {c['name']}: {k} is in a subPath mount, which "
                                    "never receives renewed certificates")
                if mount.get("readOnly") is not True:
                    fail(target, d, f"container {c['name']}: the TLS mount is not readOnly")
                if secret not in certs:
                    fail(target, d, f"container {c['name']}: {k} comes from Secret {secret!r}, "
                                    "which no cert-manager Certificate issues")
                    continue
                cert = certs[secret]
            if cert is None:
                continue
            spec = cert["spec"]
            dns = set(spec.get("dnsNames", []))
            for svc in own_services:
                if svc not in dns:
                    fail(target, cert, f"dnsNames lack the Service name {svc!r} of Deployment {name}")
                for host in sorted(hosts.get(svc, set()) - dns):
                    fail(target, cert, f"dnsNames lack {host!r}, which the service URLs dial")
            if env.get("ORGPLANE_SERVICE_AUTH") == "certificate":
                account = env.get("ORGPLANE_SERVICE_CLIENT_ID", name)
                identities[name] = (account, dns | set(spec.get("uris", [])))
    # Services known by their certificates must be known as such by every other service.
    for caller, (account, names) in identities.items():
        for d in deployments:
            callee = d["metadata"]["name"]
            if callee == caller:
                continue
            mapping = client_accounts.get(callee)
            if mapping is None:
                fail(target, d, f"{caller} calls with its certificate, but {callee} has no "
                                "ORGPLANE_TLS_CLIENT_CA")
                continue
            entries = dict(e.split("=", 1) for e in mapping.split(",") if "=" in e)
            if not any(entries.get(n, "").split(":", 1)[0] == account for n in names):
                fail(target, d, f"ORGPLANE_TLS_CLIENT_ACCOUNTS maps none of {caller}'s certificate "
                                f"names to its account {account!r}")


def metric_names(expr: str) -> set[str]:
    names = set()
    for m in METRIC_NAME.finditer(expr):
        name = m.group(1)
        for h in HISTOGRAMS:
            if name in (h + "_bucket", h + "_sum", h + "_count"):
                name = h
        names.add(name)
    return names


def bracket_problem(expr: str) -> str | None:
    """Unbalanced (), [], {} or an unterminated string: brackets in strings and comments do
    not count."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[tuple[str, int]] = []
    quote, i = None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\" and quote != "`":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c == "#":
            while i < len(expr) and expr[i] != "\n":
                i += 1
        elif c in "([{":
            stack.append((c, i))
        elif c in closing:
            if not stack or stack[-1][0] != closing[c]:
                return f"unbalanced {c!r} at offset {i}"
            stack.pop()
        i += 1
    if quote:
        return f"unterminated {quote} string"
    if stack:
        return f"unclosed {stack[-1][0]!r} at offset {stack[-1][1]}"
    return None


def readme_anchors() -> set[str]:
    """GitHub's anchors for the headings of k8s/README.md."""
    anchors, seen, fenced = set(), {}, False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            anchor = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(anchor, 0)
            seen[anchor] = n + 1
            anchors.add(anchor if n == 0 else f"{anchor}-{n}")
    return anchors


def is_datasource_variable(ds) -> bool:
    uid = ds.get("uid") if isinstance(ds, dict) else ds
    return uid in ("$datasource", "${datasource}")


def check_expr(where: str, expr) -> bool:
    if not isinstance(expr, str) or not expr.strip():
        errors.append(f"{where}: no expr")
        return False
    problem = bracket_problem(expr)
    if problem:
        errors.append(f"{where}: expr has {problem}: {expr}")
    return True


def check_dashboard() -> tuple[dict | None, list[tuple[str, str]], list[tuple[str, str]]]:
    """The dashboard, its expressions (where, expr) and its panels' expressions as promtool
    can read them (name, expr)."""
    where = "observability/grafana-dashboard.json"
    try:
        dash = json.loads(DASHBOARD.read_text())
    except (OSError, ValueError) as e:
        errors.append(f"{where}: does not parse: {e}")
        return None, [], []
    if not isinstance(dash, dict):
        errors.append(f"{where}: not a JSON object")
        return None, [], []
    exprs: list[tuple[str, str]] = []
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        errors.append(f"{where}: schemaVersion must be 36 or later")
    for key in ("title", "uid"):
        if not isinstance(dash.get(key), str) or not dash[key]:
            errors.append(f"{where}: no {key}")
    if len(str(dash.get("uid", ""))) > 40:
        errors.append(f"{where}: uid longer than 40 characters")
    variables = {}
    for v in dash.get("templating", {}).get("list", []):
        name = v.get("name")
        if not name or name in variables:
            errors.append(f"{where}: template variable without a name or twice: {name!r}")
        variables[name] = v
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append(f"{where}: needs a template variable `datasource` of type datasource, "
                      "query prometheus")
    for name in ("namespace", "grpc_service"):
        v = variables.get(name)
        query = v.get("query") if v else None
        query = query.get("query") if isinstance(query, dict) else query
        if not v or v.get("type") != "query" or not isinstance(query, str) \
                or not query.startswith("label_values("):
            errors.append(f"{where}: needs a template variable `{name}` of type query from label_values")
            continue
        if not is_datasource_variable(v.get("datasource")):
            errors.append(f"{where}: variable {name}: datasource is not the variable $datasource")
        if check_expr(f"{where}: variable {name}", query):
            exprs.append((f"variable {name}", query))
    promtool_exprs: list[tuple[str, str]] = []
    ids: set = set()
    occupied: list[tuple[int, int, int, int, str]] = []

    def check_panel(p: dict, nested: bool) -> None:
        pid, title, kind = p.get("id"), p.get("title"), p.get("type")
        here = f"{where}: panel {pid} ({title})"
        if not isinstance(pid, int) or isinstance(pid, bool):
            errors.append(f"{here}: id is not an integer")
        elif pid in ids:
            errors.append(f"{here}: id {pid} is not unique")
        ids.add(pid)
        if not isinstance(title, str) or not title.strip():
            errors.append(f"{here}: no title")
        if not isinstance(kind, str) or not kind:
            errors.append(f"{here}: no type")
        g = p.get("gridPos")
        if not isinstance(g, dict) or not all(isinstance(g.get(k), int) for k in "hwxy"):
            errors.append(f"{here}: gridPos needs integers h, w, x, y")
        elif g["w"] < 1 or g["h"] < 1 or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > 24:
            errors.append(f"{here}: gridPos {g} is outside the 24-column grid")
        elif not nested:
            for x, y, w, h, other in occupied:
                if g["x"] < x + w and x < g["x"] + g["w"] and g["y"] < y + h and y < g["y"] + g["h"]:
                    errors.append(f"{here}: overlaps panel {other}")
            occupied.append((g["x"], g["y"], g["w"], g["h"], f"{pid} ({title})"))
        if kind == "row":
            if p.get("targets"):
                errors.append(f"{here}: a row has no targets")
            if not p.get("collapsed") and p.get("panels"):
                errors.append(f"{here}: an expanded row holds no panels (they follow it)")
            for child in p.get("panels", []) if p.get("collapsed") else []:
                check_panel(child, True)
            return
        if not is_datasource_variable(p.get("datasource")):
            errors.append(f"{here}: datasource is not the variable $datasource")
        targets = p.get("targets")
        if not isinstance(targets, list) or not targets:
            errors.append(f"{here}: no targets")
            return
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if not isinstance(ref, str) or not ref:
                errors.append(f"{here}: a target has no refId")
            elif ref in refs:
                errors.append(f"{here}: refId {ref} twice")
            refs.add(ref)
            if "datasource" in t and not is_datasource_variable(t["datasource"]):
                errors.append(f"{here}: target {ref}: datasource is not the variable $datasource")
            if check_expr(f"{here}: target {ref}", t.get("expr")):
                exprs.append((f"panel {pid} target {ref}", t["expr"]))
                promtool_exprs.append((f"dashboard:panel_{pid}:{ref}", t["expr"]))

    panels = dash.get("panels")
    if not isinstance(panels, list) or not panels:
        errors.append(f"{where}: no panels")
        panels = []
    for p in panels:
        check_panel(p, False)
    for w, expr in exprs:
        for m in re.finditer(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", expr):
            name = next(n for n in m.groups() if n)
            if name not in variables and name not in GRAFANA_BUILTINS:
                errors.append(f"{where}: {w}: undefined variable ${name}")
    return dash, exprs, promtool_exprs


def check_dashboard_configmap(target: str, objects: list[dict], dash: dict | None) -> None:
    """Production ships the dashboard file as the sidecar's ConfigMap."""
    cms = [o for o in objects if o.get("kind") == "ConfigMap"
           and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if [o["metadata"]["name"] for o in cms] != [DASHBOARD_CONFIGMAP]:
        errors.append(f"{target}: want exactly one ConfigMap labelled grafana_dashboard: \"1\", named "
                      f"{DASHBOARD_CONFIGMAP} (no name suffix hash); found "
                      f"{[o['metadata']['name'] for o in cms]}")
        return
    cm = cms[0]
    data = cm.get("data", {})
    if len(data) != 1 or not next(iter(data)).endswith(".json"):
        fail(target, cm, f"want one *.json key, the dashboard; has {sorted(data)}")
        return
    try:
        shipped = json.loads(next(iter(data.values())))
    except ValueError as e:
        fail(target, cm, f"the dashboard does not parse: {e}")
        return
    if dash is not None and shipped != dash:
        fail(target, cm, "content differs from observability/grafana-dashboard.json")
    if len(json.dumps(cm)) >= 262144:
        fail(target, cm, "too large for the last-applied annotation of `kubectl apply` (256 KiB)")


def check_prometheus_rule(target: str, obj: dict, anchors: set[str], group_names: set[str],
                          exprs: list[tuple[str, str]]) -> None:
    spec = obj.get("spec", {})
    if obj.get("apiVersion") != PROMETHEUS_RULE_API:
        fail(target, obj, f"unexpected apiVersion for a PrometheusRule (want {PROMETHEUS_RULE_API})")
    if set(spec) != {"groups"} or not isinstance(spec["groups"], list) or not spec["groups"]:
        fail(target, obj, "spec has exactly `groups`, a non-empty list")
        return
    alerts = set()
    for group in spec["groups"]:
        name = group.get("name")
        unknown = set(group) - {"name", "interval", "rules", "limit", "partial_response_strategy",
                                "query_offset", "labels"}
        if unknown:
            fail(target, obj, f"group {name}: unknown fields {sorted(unknown)}")
        if not isinstance(name, str) or not name:
            fail(target, obj, "a group has no name")
        elif name in group_names:
            fail(target, obj, f"group name {name!r} is not unique")
        group_names.add(name)
        if "interval" in group and not DURATION.match(str(group["interval"])):
            fail(target, obj, f"group {name}: interval {group['interval']!r} is not a duration")
        if not isinstance(group.get("rules"), list) or not group["rules"]:
            fail(target, obj, f"group {name}: no rules")
            continue
        for rule in group["rules"]:
            alert = rule.get("alert")
            here = f"group {name}: alert {alert}"
            unknown = set(rule) - {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if unknown:
                fail(target, obj, f"{here}: unknown fields {sorted(unknown)}")
            if not isinstance(alert, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", alert):
                fail(target, obj, f"{here}: `alert` is not a valid alert name")
            expr = rule.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                fail(target, obj, f"{here}: no expr")
            else:
                problem = bracket_problem(expr)
                if problem:
                    fail(target, obj, f"{here}: expr has {problem}")
                exprs.append((f"alert {alert}", expr))
            for key in ("for", "keep_firing_for"):
                if key in rule or key == "for":
                    value = rule.get(key)
                    if not isinstance(value, str) or not value or not DURATION.match(value):
                        fail(target, obj, f"{here}: `{key}` {value!r} is not a duration (like 5m)")
            labels = rule.get("labels") or {}
            if labels.get("severity") not in SEVERITIES:
                fail(target, obj, f"{here}: labels.severity {labels.get('severity')!r} is not one of "
                                  f"{sorted(SEVERITIES)}")
            if (alert, labels.get("severity")) in alerts:
                fail(target, obj, f"{here}: twice with severity {labels.get('severity')}")
            alerts.add((alert, labels.get("severity")))
            for k, v in {**labels, **(rule.get("annotations") or {})}.items():
                if not isinstance(v, str):
                    fail(target, obj, f"{here}: label or annotation {k} is not a string")
                elif v.count("{{") != v.count("}}"):
                    fail(target, obj, f"{here}: {k} has unbalanced {{{{ }}}}")
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description", "runbook_url"):
                if not isinstance(annotations.get(key), str) or not annotations[key].strip():
                    fail(target, obj, f"{here}: annotation {key} is missing")
            url = annotations.get("runbook_url", "")
            if isinstance(url, str) and url:
                if not url.startswith(RUNBOOK_PREFIX):
                    fail(target, obj, f"{here}: runbook_url must start with {RUNBOOK_PREFIX}")
                elif url[len(RUNBOOK_PREFIX):] not in anchors:
                    fail(target, obj, f"{here}: runbook_url names no section of k8s/README.md "
                                      f"(#{url[len(RUNBOOK_PREFIX):]})")


def run_promtool(groups: list[dict], dashboard_exprs: list[tuple[str, str]]) -> None:
    """`promtool check rules` on the alert groups and, as recording rules with Grafana's
    variables replaced by plain values, on the dashboard's expressions."""
    promtool = shutil.which("promtool")
    if promtool is None:
        print("note: promtool is not on PATH; PromQL was checked for balanced brackets only")
        return

    def substitute(expr: str) -> str:
        expr = re.sub(r"\$\{?(__\w+)\}?", lambda m: GRAFANA_BUILTINS.get(m.group(1), "5m"), expr)
        return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", ".+", expr)

    dashboard_group = {"name": "grafana-dashboard",
                       "rules": [{"record": name, "expr": substitute(e)} for name, e in dashboard_exprs]}
    with tempfile.TemporaryDirectory() as tmp:
        for label, content in (("alert rules", groups), ("dashboard expressions", [dashboard_group])):
            path = Path(tmp) / "rules.yaml"
            path.write_text(yaml.safe_dump({"groups": content}, sort_keys=False))
            out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
            if out.returncode != 0:
                for line in (out.stdout + out.stderr).strip().splitlines():
                    errors.append(f"promtool check rules ({label}): {line}")
            else:
                print(f"promtool check rules ({label}): ok")


def check_metrics_used(exprs: list[tuple[str, str]], write: bool) -> None:
    names = sorted(set().union(*(metric_names(e) for _, e in exprs)))
    content = "".join(f"{n}\n" for n in names)
    if write:
        METRICS_USED.write_text(content)
        print(f"wrote {METRICS_USED.relative_to(ROOT.parent)}: {len(names)} metric names")
        return
    try:
        listed = METRICS_USED.read_text()
    except OSError:
        listed = None
    if listed != content:
        have = set(listed.splitlines()) if listed is not None else set()
        errors.append(f"observability/metrics-used.txt is not up to date (run python3 k8s/validate.py "
                      f"--write-metrics-used): missing {sorted(set(names) - have)}, "
                      f"not used {sorted(have - set(names))}"
                      + (", not sorted or not one per line" if have == set(names) else ""))


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
            check_probes(target, obj, c)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-metrics-used", action="store_true",
                        help="rewrite observability/metrics-used.txt from the expressions")
    args = parser.parse_args()
    counts = {}
    dash, exprs, dashboard_exprs = check_dashboard()
    anchors = readme_anchors()
    groups: list[dict] = []
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
            if kind == "Certificate":
                check_certificate(target, obj)
                continue
            if kind == "Issuer":
                check_issuer(target, obj)
                continue
            if kind == "PrometheusRule":
                if target != "overlays/production":
                    fail(target, obj, "alert rules belong to overlays/production")
                check_prometheus_rule(target, obj, anchors, {g.get("name") for g in groups}, exprs)
                groups.extend(obj.get("spec", {}).get("groups") or [])
                continue
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(target, obj, f"schema: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                fail(target, obj, "no schema (an unhandled custom resource?)")
            if kind == "Deployment":
                check_deployment(target, obj)
        check_issuer_refs(target, objects)
        if target == "overlays/production":
            check_backups(target, objects)
            check_tls(target, objects)
            check_dashboard_configmap(target, objects, dash)
            if not any(o.get("kind") == "PrometheusRule" for o in objects):
                errors.append(f"{target}: no PrometheusRule (alerts.yaml)")
    run_promtool(groups, dashboard_exprs)
    if dash is None:
        errors.append("observability/metrics-used.txt: not checked, the dashboard does not parse")
    else:
        check_metrics_used(exprs, args.write_metrics_used)
    for target, n in counts.items():
        print(f"{target}: {n} objects rendered")
    for e in errors:
        print(f"violation: {e}")
    print(f"observability: {len(exprs)} PromQL expressions checked ({len(groups)} rule groups, "
          f"{len(dashboard_exprs)} dashboard targets)")
    print(f"k8s: {sum(counts.values())} objects checked, {len(errors)} violations")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
