"""Static checks of the deployment and observability files.

Checked here, without a Docker engine or a cluster: the compose file is valid and pins Kafka to
the project's version, the Dockerfile passes hadolint, Prometheus accepts its config and the
alert rules, and every PromQL expression in the Grafana dashboard and the alert rules uses
only metrics that canvas-bridge (bridge/metrics.py) or prometheus_client actually export.

The Kubernetes manifests (deploy/kubernetes) are rendered with kustomize (scripts/kustomize,
a pinned version built from its Go module) for the base and every overlay, then:

- every resource of a built-in kind passes strict schema validation (unknown fields refused)
  for two Kubernetes versions, with the schemas the pinned PyPI package kubernetes-validate
  bundles;
- every custom resource (KEDA, Prometheus Operator) is checked against the models that the
  pinned npm packages @kubernetes-models/keda and @kubernetes-models/prometheus-operator
  generate from those operators' Go API types (tests/kubernetes/validate-crs.mjs);
- the rendered PrometheusRule equals config/alerts.yml, the ConfigMap's files equal config/,
  the settings of every Deployment (run, ingest, ingest-sqs) of every overlay load with the
  bridge's own config loader, and the pieces fit together (selectors, ports, probes, secrets, the
  drain timeout, KEDA's bounds, one ServiceMonitor per alerted job);
- the ingest commands: ingest's Service and Ingress reach only its ingest port (/events and
  /caliper, with TLS), its autoscaler scales it on CPU from 2 replicas, no Service or Ingress
  exposes /metrics beyond the cluster, and ingest-sqs has its own ServiceAccount for its AWS role.

The image built and run is tests/integration/test_container.py. The tools (docker-compose or
the docker compose plugin, hadolint, promtool, go, node and npm) are installed in CI; a test is
skipped, saying which tool is missing, only when it cannot be found.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bridge.config import load_config
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS = ROOT / "config" / "prometheus.yml"
ALERTS = ROOT / "config" / "alerts.yml"
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "canvas-bridge.json"
DATASOURCE = ROOT / "config" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = ROOT / "config" / "grafana" / "provisioning" / "dashboards" / "canvas-bridge.yml"
METRICS_PY = ROOT / "bridge" / "metrics.py"
KAFKA_POM = ROOT / "scripts" / "kafka" / "pom.xml"
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUSTOMIZE = ROOT / "scripts" / "kustomize"
CRD_CHECKS = ROOT / "tests" / "kubernetes"

JOB_SELECTOR = 'job="canvas-bridge"'
#: Selectors of the bridge's job and of the ingest commands' (the dashboard's ingest rows, their alerts).
JOB_SELECTORS = (JOB_SELECTOR, 'job="canvas-bridge-ingest"', 'job=~"canvas-bridge|canvas-bridge-ingest"',
                 'job="canvas-bridge-ingest-sqs"')

EXPECTED_ROWS = [
    "Throughput",
    "Dead letters",
    "Duplicates suppressed",
    "Consumer lag",
    "Latency",
    "Freshness",
    "Rebalances, partitions and in-flight",
    "Process",
    "Ingest (HTTPS from Canvas)",
    "Ingest: SQS",
]

EXPECTED_ALERTS = {
    "CanvasBridgeDown",
    "CanvasBridgeNotReady",
    "CanvasBridgeDeadLettersRising",
    "CanvasBridgeRecordsRefused",
    "CanvasBridgeLagGrowing",
    "CanvasBridgeNoEvents",
    "CanvasBridgeFreshnessDegraded",
    "CanvasBridgeCommitFailures",
    "CanvasBridgeIngestDown",
    "CanvasBridgeIngestUnavailable",
    "CanvasBridgeIngestRejectionsRising",
    "CanvasBridgeIngestKeysStale",
    "CanvasBridgeSqsDown",
    "CanvasBridgeSqsNotReady",
    "CanvasBridgeSqsReceiveErrors",
    "CanvasBridgeSqsBacklogGrowing",
    "CanvasBridgeSqsMessagesTooLarge",
    "CanvasBridgeSqsNoMessages",
}


# -- helpers --------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """A tool on PATH, or installed next to this interpreter (a virtualenv's bin/)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return None


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def require(name: str) -> str:
    tool = find_tool(name)
    if tool is None:
        pytest.skip(f"{name} is not installed (not on PATH nor next to {sys.executable})")
    return tool


def declared_metric_series() -> set[str]:
    """Every series name bridge/metrics.py exports, derived from the constructor calls.

    prometheus_client suffixes: Counter ``<name>_total`` (the declared name may already end
    in ``_total``) and ``_created``; Histogram ``_bucket``, ``_sum``, ``_count``, ``_created``;
    Summary ``_sum``, ``_count``, ``_created``; Info ``_info``; Gauge as declared.
    """
    source = METRICS_PY.read_text(encoding="utf-8")
    found = re.findall(
        r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*['\"]([A-Za-z_:][\w:]*)['\"]", source
    )
    assert found, f"no metric declarations found in {METRICS_PY}"
    series: set[str] = set()
    for kind, name in found:
        if kind == "Counter":
            base = name.removesuffix("_total")
            series |= {f"{base}_total", f"{base}_created"}
        elif kind == "Histogram":
            series |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif kind == "Summary":
            series |= {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif kind == "Info":
            series.add(f"{name}_info")
        else:  # Gauge, Enum
            series.add(name)
    return series


def is_external_metric(name: str) -> bool:
    """Series that are not declared in bridge/metrics.py but always exist."""
    return name == "up" or name.startswith(("process_", "python_"))


_PROMQL_WORDS = {
    # aggregation modifiers, binary operators and literals that look like identifiers
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (good enough for our own expressions).

    Removes string literals, label matchers ``{...}``, range/subquery brackets ``[...]`` and
    label lists of ``by``/``without``/``on``/``ignoring``/``group_*``; what remains that is
    an identifier not followed by ``(`` (a function or aggregation) and not a keyword is a
    metric name. Durations and numbers are excluded because they start with a digit.
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"`[^`]*`", "``", s)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    names: set[str] = set()
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)", s):
        token = m.group(1)
        if s[m.end() :].lstrip().startswith("("):
            continue
        if token.lower() in _PROMQL_WORDS:
            continue
        names.add(token)
    return names


def alert_rules() -> list[dict[str, str]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    rules = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            rules.append(
                {
                    "alert": rule["alert"],
                    "expr": str(rule.get("expr", "")),
                    "for": str(rule.get("for", "")),
                    "severity": str(rule.get("labels", {}).get("severity", "")),
                    "summary": str(rule.get("annotations", {}).get("summary", "")),
                    "description": str(rule.get("annotations", {}).get("description", "")),
                }
            )
    return rules


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_panels() -> list[dict]:
    """All panels, including any nested in a row's ``panels``."""
    out: list[dict] = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (panel.get("title", "?"), target.get("expr", ""))
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
    ]


# -- docker-compose -------------------------------------------------------------------------


def test_compose_config_is_valid() -> None:
    compose = find_tool("docker-compose")
    if compose is not None:
        cmd = [compose, "-f", str(COMPOSE), "config", "-q"]
    else:
        docker = find_tool("docker")
        if docker is None or run([docker, "compose", "version"]).returncode != 0:
            pytest.skip("neither docker-compose nor the docker compose plugin is installed")
        cmd = [docker, "compose", "-f", str(COMPOSE), "config", "-q"]
    result = run(cmd)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"


def test_compose_pins_images_and_kafka_version() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert not re.search(r"(?m)^version\s*:", text), "obsolete top-level `version:` in docker-compose.yml"
    pom = KAFKA_POM.read_text(encoding="utf-8")
    m = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom)
    assert m, f"no <kafka.version> in {KAFKA_POM}"
    kafka_version = m.group(1)
    kafka_tags = re.findall(r"(?m)^\s*image:\s*['\"]?apache/kafka:([^'\"\s]+)", text)
    assert kafka_tags, "no apache/kafka image in docker-compose.yml"
    assert set(kafka_tags) == {kafka_version}, (
        f"docker-compose.yml uses apache/kafka:{sorted(set(kafka_tags))}, "
        f"scripts/kafka/pom.xml pins {kafka_version}"
    )
    for image in re.findall(r"(?m)^\s*image:\s*['\"]?([^'\"\s]+)", text):
        if image == "canvas-bridge:local":  # built from the Dockerfile
            continue
        assert ":" in image and not image.endswith(":latest"), f"image {image} is not pinned to a tag"
    for service in ("kafka", "topics", "bridge", "ingest", "producer", "prometheus", "grafana"):
        assert re.search(rf"(?m)^  {re.escape(service)}:\s*$", text), f"service {service} missing"


def test_compose_gives_the_bridge_file_descriptor_headroom() -> None:
    bridge = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["bridge"]
    nofile = bridge["ulimits"]["nofile"]
    assert nofile["soft"] >= 65536 and nofile["hard"] >= nofile["soft"], nofile


def test_compose_runs_ingest_with_file_descriptor_headroom() -> None:
    ingest = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["ingest"]
    assert ingest["command"] == ["ingest"]
    nofile = ingest["ulimits"]["nofile"]
    assert nofile["soft"] >= 65536 and nofile["hard"] >= nofile["soft"], nofile


# -- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = require("hadolint")
    result = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, f"hadolint reported:\n{result.stdout}{result.stderr}"


def test_dockerfile_essentials() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"(?mi)^FROM\s+(\S+)", text)
    assert len(froms) >= 2, "the Dockerfile should be multi-stage"
    # One base for both stages (the venv's interpreter path must exist in the final stage), a build
    # argument whose default is what users pull.
    assert re.search(r"(?m)^ARG BASE_IMAGE=python:3\.11-slim\s*$", text), "BASE_IMAGE: python:3.11-slim"
    assert set(froms) == {"${BASE_IMAGE}"}, f"every stage should build FROM ${{BASE_IMAGE}}: {froms}"
    assert re.search(r"(?m)^USER\s+(?!root\b|0\b)\S+", text), "the image must run as a non-root user"
    assert "BRIDGE_HTTP_HOST=0.0.0.0" in text
    assert re.search(r"(?m)^EXPOSE\s+8080\b", text)
    assert re.search(r"(?m)^HEALTHCHECK\b", text) and "/healthz" in text
    assert re.search(r'(?m)^\s+CMD \["python", "-c"', text), "the HEALTHCHECK should be exec form (no shell)"
    assert re.search(r'(?m)^ENTRYPOINT \["canvas-bridge"\]\s*$', text)
    assert re.search(r'(?m)^CMD \["run"\]\s*$', text)
    assert "[fast]" in text, "the image should install the `fast` extra (uvloop)"


# -- Prometheus -----------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    promtool = require("promtool")
    result = run([promtool, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"


def test_promtool_check_config() -> None:
    promtool = require("promtool")
    # rule_files are resolved relative to the config file, so this also loads alerts.yml.
    result = run([promtool, "check", "config", str(PROMETHEUS)])
    assert result.returncode == 0, f"promtool check config failed:\n{result.stdout}{result.stderr}"


def test_prometheus_config_scrapes_the_bridge() -> None:
    text = PROMETHEUS.read_text(encoding="utf-8")
    assert re.search(r"job_name:\s*['\"]?canvas-bridge['\"]?\s*$", text, re.M)
    assert re.search(r"scrape_interval:\s*5s", text)
    assert re.search(r"(?m)^rule_files:\s*\n\s*-\s*['\"]?alerts\.yml", text)


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    names = {r["alert"] for r in rules}
    assert names >= EXPECTED_ALERTS, f"missing alerts: {sorted(EXPECTED_ALERTS - names)}"
    for rule in rules:
        for key in ("expr", "for", "severity", "summary", "description"):
            assert rule.get(key, "").strip(), f"alert {rule['alert']} has no {key}"
        assert any(sel in rule["expr"] for sel in JOB_SELECTORS), f"alert {rule['alert']} selects no job"
    down = next(r for r in rules if r["alert"] == "CanvasBridgeDown")
    assert re.sub(r"\s+", "", down["expr"]) == 'up{job="canvas-bridge"}==0'


# -- Grafana --------------------------------------------------------------------------------


def test_grafana_provisioning_files() -> None:
    ds = DATASOURCE.read_text(encoding="utf-8")
    assert re.search(r"(?m)^\s*uid:\s*['\"]?prometheus['\"]?\s*$", ds)
    assert "url: http://prometheus:9090" in ds
    provider = DASHBOARD_PROVIDER.read_text(encoding="utf-8")
    assert re.search(r"(?m)^\s*type:\s*file\s*$", provider)
    assert "path: /var/lib/grafana/dashboards" in provider


def test_dashboard_structure() -> None:
    dash = dashboard()
    assert dash["uid"] == "canvas-bridge"
    assert dash["schemaVersion"] == 39
    rows = [p for p in dash["panels"] if p.get("type") == "row"]
    assert [r["title"] for r in rows] == EXPECTED_ROWS
    assert all(r.get("collapsed") is False for r in rows), "rows must not be collapsed"
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    want_ds = {"type": "prometheus", "uid": "prometheus"}
    graphs = [p for p in dashboard_panels() if p.get("type") != "row"]
    assert graphs, "the dashboard has no panels"
    for panel in graphs:
        assert panel.get("datasource") == want_ds, f"panel {panel.get('title')!r}: datasource"
        assert panel.get("targets"), f"panel {panel.get('title')!r} has no targets"
        for target in panel["targets"]:
            assert target.get("datasource") == want_ds, f"panel {panel.get('title')!r}: target datasource"
            assert str(target.get("expr", "")).strip(), f"panel {panel.get('title')!r}: empty expr"


def test_dashboard_exprs_are_plain_promql() -> None:
    for title, expr in dashboard_exprs():
        assert "$" not in expr, f"panel {title!r} uses a Grafana variable: {expr}"
        assert any(sel in expr for sel in JOB_SELECTORS) or "vector(" in expr, f"panel {title!r} selects no job"
        assert expr.count("(") == expr.count(")"), f"panel {title!r}: unbalanced parentheses: {expr}"
        assert expr.count("{") == expr.count("}"), f"panel {title!r}: unbalanced braces: {expr}"


# -- metric names ---------------------------------------------------------------------------


def test_promql_metric_name_extraction() -> None:
    assert promql_metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="x", le=~"1e-3"}[5m])))'
    ) == {"a_bucket"}
    assert promql_metric_names('time() - max(b{job="x"}) or vector(0)') == {"b"}
    assert promql_metric_names("sum(c) / on (instance) group_left (d) e offset 5m > bool 1e-9") == {"c", "e"}


def test_every_metric_used_is_exported() -> None:
    declared = declared_metric_series()
    used: dict[str, set[str]] = {}
    for title, expr in dashboard_exprs():
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add(f"dashboard panel {title!r}")
    for rule in alert_rules():
        for name in promql_metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    assert used, "no metric names found in the dashboard or the alerts"
    unknown = {
        name: sorted(where)
        for name, where in used.items()
        if name not in declared and not is_external_metric(name)
    }
    assert not unknown, f"metrics not exported by canvas-bridge: {unknown}"
    # The dashboard should cover the service's own metrics, not only process ones.
    assert any(name.startswith("canvas_bridge_") for name in used)


# -- Kubernetes -----------------------------------------------------------------------------

#: Kubernetes versions whose schemas the rendered resources must pass (kubernetes-validate bundles them).
KUBERNETES_VERSIONS = ("1.30", "1.33")
#: The custom resources the manifests use, checked against their operators' models instead.
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
#: The Secrets a user creates, and the keys the manifests read from them (docs/deployment.md, "Kubernetes").
SECRET_KEYS = {
    "canvas-bridge-kafka": {"username", "password"},
    "canvas-bridge-kafka-tls": {"ca.crt"},
    "canvas-bridge-pii": {"secret"},
    "canvas-bridge-ingest": {"caliper-tokens", "unsigned-token"},
}
IMAGE_USER = 10001
#: Each command's Deployment (by its args) and the Prometheus job its metrics must be scraped as
#: (config/alerts.yml selects these jobs).
COMMANDS = {
    "run": ("canvas-bridge", "canvas-bridge"),
    "ingest": ("canvas-bridge-ingest", "canvas-bridge-ingest"),
    "ingest-sqs": ("canvas-bridge-ingest-sqs", "canvas-bridge-ingest-sqs"),
}


def kubernetes_targets() -> list[str]:
    """The base and every overlay, as paths below deploy/kubernetes."""
    return ["base", *sorted(f"overlays/{d.name}" for d in (KUBERNETES / "overlays").iterdir() if d.is_dir())]


@functools.cache
def _rendered(target: str) -> tuple[dict[str, Any], ...]:
    version = re.search(r"(?m)^VERSION=(\S+)", KUSTOMIZE.read_text(encoding="utf-8"))
    assert version, "scripts/kustomize pins no VERSION"
    if not (ROOT / ".cache" / "bin" / f"kustomize-{version.group(1)}").is_file():
        require_tool("go")  # scripts/kustomize builds it once
    result = subprocess.run([str(KUSTOMIZE), "build", str(KUBERNETES / target)], cwd=ROOT, capture_output=True,
                            text=True, timeout=900, check=False)
    assert result.returncode == 0, f"kustomize build {target} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def rendered(target: str) -> list[dict[str, Any]]:
    """``kustomize build`` of a target, as a fresh copy of its resources (a test may change it)."""
    return copy.deepcopy(list(_rendered(target)))


def all_rendered() -> list[tuple[str, dict[str, Any]]]:
    return [(target, doc) for target in kubernetes_targets() for doc in rendered(target)]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def is_custom(doc: dict[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def image_env() -> dict[str, str]:
    """The ``BRIDGE_*`` variables the image's final stage sets (``ENV``)."""
    final_stage = re.split(r"(?m)^FROM\b", DOCKERFILE.read_text(encoding="utf-8"))[-1]
    return dict(re.findall(r"\b(BRIDGE_[A-Z_]+)=(\S+)", final_stage))


def pod_env(deployment: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """A Deployment's container's environment: the image's, its ConfigMaps (envFrom), then its own
    env (secrets: a dummy)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(docs, "ConfigMap")}
    env = image_env()
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "from-a-secret")
    return env


def test_kubernetes_generated_files_are_current() -> None:
    """The ConfigMap's files equal config/, the PrometheusRule's spec is config/alerts.yml."""
    result = run([sys.executable, str(ROOT / "scripts" / "kubernetes_manifests.py"), "--check"])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("target", kubernetes_targets())
def test_kustomize_renders_the_bridge(target: str) -> None:
    docs = rendered(target)
    kinds = sorted(d["kind"] for d in docs)
    for kind in ("ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"):
        assert kind in kinds, f"{target}: no {kind}"
    assert "StatefulSet" not in kinds
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), f"{target}: a resource twice"
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        if doc["kind"] != "Namespace":
            assert labels.get("app.kubernetes.io/part-of") == "canvas-bridge", f"{target}: {doc['kind']} unlabelled"


def test_every_component_is_used_by_an_overlay() -> None:
    components = {d.name for d in (KUBERNETES / "components").iterdir() if d.is_dir()}
    used = set()
    for overlay in (KUBERNETES / "overlays").iterdir():
        spec = yaml.safe_load((overlay / "kustomization.yaml").read_text(encoding="utf-8"))
        used |= {Path(c).name for c in spec.get("components", [])}
    assert components <= used, f"components no overlay renders (so no test checks): {sorted(components - used)}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_resources_pass_strict_schema_validation(version: str) -> None:
    checked = 0
    for target, doc in all_rendered():
        if is_custom(doc):
            assert (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS, (
                f"{target}: {doc['kind']} ({doc['apiVersion']}) has no schema check: add it to CUSTOM_KINDS "
                "and to tests/kubernetes/validate-crs.mjs")
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{target}: {doc['kind']}/{doc['metadata']['name']} is invalid for "
                                 f"Kubernetes {version}: {exc.message} at {list(exc.path)}") from None
        checked += 1
    assert checked >= 6 * len(kubernetes_targets())


def test_strict_schema_validation_refuses_an_unknown_field() -> None:
    """The check above bites: a misspelt field of the Deployment fails it."""
    deployment = one(rendered("base"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def _check_custom_resources(resources: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    node = require_tool("node")
    npm = require_tool("npm")
    lock = (CRD_CHECKS / "package-lock.json").read_bytes()
    stamp = CRD_CHECKS / "node_modules" / ".canvas-bridge-lock"
    if not stamp.is_file() or stamp.read_bytes() != lock:
        installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--engine-strict=false"], cwd=CRD_CHECKS,
                                   capture_output=True, text=True, timeout=600, check=False)
        assert installed.returncode == 0, f"npm ci in tests/kubernetes failed:\n{installed.stderr}"
        stamp.write_bytes(lock)
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(resources), encoding="utf-8")
    return subprocess.run([node, str(CRD_CHECKS / "validate-crs.mjs"), str(path)], cwd=CRD_CHECKS,
                          capture_output=True, text=True, timeout=300, check=False)


def test_custom_resources_match_their_operators_models(tmp_path: Path) -> None:
    unique: dict[str, dict[str, Any]] = {}
    for _, doc in all_rendered():
        if is_custom(doc):
            unique[json.dumps(doc, sort_keys=True)] = doc
    resources = list(unique.values())
    assert {(d["apiVersion"], d["kind"]) for d in resources} == CUSTOM_KINDS
    result = _check_custom_resources(resources, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(resources)} custom resources checked, 0 errors" in result.stdout

    # The check bites: an unknown field (a typo) and a wrong type are both refused.
    scaled = next(d for d in resources if d["kind"] == "ScaledObject")
    misspelt = copy.deepcopy(scaled)
    misspelt["spec"]["maxReplicaCont"] = misspelt["spec"].pop("maxReplicaCount")
    mistyped = copy.deepcopy(next(d for d in resources if d["kind"] == "ServiceMonitor"))
    mistyped["spec"]["endpoints"][0]["interval"] = 15
    result = _check_custom_resources([misspelt, mistyped], tmp_path)
    assert result.returncode == 1, result.stdout
    assert "maxReplicaCont" in result.stdout and "interval" in result.stdout, result.stdout


def test_prometheus_rule_equals_the_alert_rules() -> None:
    rule = one(rendered("overlays/prometheus-operator"), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} >= EXPECTED_ALERTS


def test_configmap_files_equal_the_config_folder() -> None:
    for target in kubernetes_targets():
        docs = rendered(target)
        files = next(c for c in of_kind(docs, "ConfigMap") if "bridge.toml" in c.get("data", {}))["data"]
        assert files["bridge.toml"] == (ROOT / "config" / "bridge.toml").read_text(encoding="utf-8")
        assert files["ferpa.toml"] == (ROOT / "config" / "ferpa.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("target", kubernetes_targets())
def test_every_deployment_is_hardened_probed_and_bounded(target: str, tmp_path: Path) -> None:
    docs = rendered(target)
    deployments = of_kind(docs, "Deployment")
    assert deployments
    dockerfile_user = re.search(r"(?m)^USER\s+(\d+):(\d+)", DOCKERFILE.read_text(encoding="utf-8"))
    assert dockerfile_user and int(dockerfile_user.group(1)) == IMAGE_USER
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == IMAGE_USER, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, f"{name}: service links would add BRIDGE_* variables"
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), name
        spreads = pod["topologySpreadConstraints"]
        assert {s["topologyKey"] for s in spreads} >= {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for spread in spreads:
            assert spread["labelSelector"]["matchLabels"] == selector, name
        mounts = {v["name"] for c in pod["containers"] for v in c.get("volumeMounts", [])}
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp and "tmp" in mounts, f"{name}: no writable /tmp"
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] == "tmp"} == {"/tmp"}
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][kind].keys(), f"{name}: {kind}"
        # Longer than the preStop hook and the drain: SIGTERM finishes and commits before the
        # kubelet's SIGKILL (which comes terminationGracePeriodSeconds after the hook started).
        config = load_pod_config(deployment, docs, tmp_path / name)
        grace = pod["terminationGracePeriodSeconds"]
        pre_stop = max(c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
                       for c in pod["containers"])
        assert grace > pre_stop + config.delivery.drain_timeout_s + 5, (
            f"{name}: terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + "
            f"drain_timeout_s {config.delivery.drain_timeout_s} + 5")


def command(deployment: dict[str, Any]) -> str:
    """The canvas-bridge command a Deployment runs (its container's args)."""
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert len(args) == 1 and args[0] in COMMANDS, f"{deployment['metadata']['name']}: args {args}"
    return str(args[0])


def container_ports(deployment: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}


def selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    return selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def load_pod_config(deployment: dict[str, Any], docs: list[dict[str, Any]], root: Path) -> Any:
    """The bridge's config as the pod would load it: its env, its mounted config file, and its
    secret files (stand-ins, created below ``root``), through bridge.config.load_config."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(docs, "ConfigMap")}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            for key, text in configmaps[volume["configMap"]["name"]].items():
                (target / key).write_text(text, encoding="utf-8")
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            keys = [i["key"] for i in volume["secret"].get("items", [])] or sorted(SECRET_KEYS[name])
            assert set(keys) <= SECRET_KEYS[name], f"{name}: keys {keys} beyond {SECRET_KEYS[name]}"
            for item in volume["secret"].get("items", []) or [{"key": k, "path": k} for k in keys]:
                (target / item["path"]).write_text("a-secret-of-at-least-16-characters\n", encoding="utf-8")
    env = {k: (str(root / v.lstrip("/")) if v.startswith("/") else v) for k, v in pod_env(deployment, docs).items()}
    for var, value in env.items():
        if var.startswith("BRIDGE_") and value.startswith(str(root)):
            assert Path(value).is_file(), f"{var}={value.removeprefix(str(root))}: no such file in the pod"
    return load_config(env=env)


@pytest.mark.parametrize("target", kubernetes_targets())
def test_settings_of_every_target_load_with_the_bridges_loader(target: str, tmp_path: Path) -> None:
    """Every BRIDGE_* variable of every Deployment is a real setting with a valid value, every file
    it names is mounted (config file, secrets), and the ports the settings listen on are the
    container's: a typo would stop every pod at start, a wrong host or port fail every probe."""
    docs = rendered(target)
    components = set(yaml.safe_load((KUBERNETES / target / "kustomization.yaml").read_text()).get("components", []))
    exactly_once = any(Path(c).name == "exactly-once" for c in components)
    deployments = of_kind(docs, "Deployment")
    assert {command(d) for d in deployments} == {"run"} | {Path(c).name for c in components if
                                                           Path(c).name in COMMANDS}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        config = load_pod_config(deployment, docs, tmp_path / name)
        assert config.kafka.security_protocol == "SASL_SSL", name
        assert config.kafka.sasl_password_file.endswith("/kafka/password"), name
        assert config.kafka.ssl_cafile.endswith("/kafka-tls/ca.crt"), name
        assert config.pii.secret_file.endswith("/pii/secret"), name
        assert config.delivery.guarantee == ("exactly-once" if exactly_once else "at-least-once"), name
        # Every command serves its probes and /metrics on http.host:http.port, reachable from the kubelet.
        ports = container_ports(deployment)
        assert config.http.host == "0.0.0.0" and config.http.port == ports["metrics"], name
        served = {config.http.port}
        if command(deployment) == "ingest":
            assert config.ingest.host == "0.0.0.0", f"{name}: ingest.host must listen beyond the pod's loopback"
            assert config.ingest.port == ports["ingest"], name
            served.add(config.ingest.port)
        if command(deployment) == "ingest-sqs":
            assert config.sqs.queue_urls, f"{name}: no queue (BRIDGE_SQS_QUEUE_URLS): it would stop at start"
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = container[probe]["httpGet"]["port"]
            assert ports.get(port, port) in served, f"{name}: {probe} on port {port}, which serves no probe"


def test_exactly_once_stays_a_deployment() -> None:
    """One transactional producer per input partition fences a partition's previous owner,
    whatever its pod name: no StatefulSet, no stable replica id."""
    docs = rendered("overlays/exactly-once")
    assert not of_kind(docs, "StatefulSet")
    deployment = one(docs, "Deployment")
    env = pod_env(deployment, docs)
    assert env["BRIDGE_DELIVERY_GUARANTEE"] == "exactly-once"
    assert "BRIDGE_DELIVERY_REPLICA_ID" not in env


def _raw_partitions_in_compose() -> int:
    m = re.search(r"--topic canvas\.raw --partitions (\d+)", COMPOSE.read_text(encoding="utf-8"))
    assert m, "docker-compose.yml no longer creates canvas.raw with --partitions"
    return int(m.group(1))


def test_keda_scales_the_bridge_within_the_raw_partitions(tmp_path: Path) -> None:
    docs = rendered("overlays/keda")
    deployment, scaled = one(docs, "Deployment"), one(docs, "ScaledObject")
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert spec["scaleTargetRef"]["envSourceContainerName"] in {
        c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= _raw_partitions_in_compose()
    trigger = one([{"kind": t["type"], **t} for t in spec["triggers"]], "kafka")
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    env = pod_env(deployment, docs)
    for key in ("bootstrapServersFromEnv", "consumerGroupFromEnv", "topicFromEnv"):
        assert trigger["metadata"][key] in env, f"{key} names no variable of the bridge container"
    config = load_pod_config(deployment, docs, tmp_path)
    # KEDA's Kafka connection matches the bridge's: SCRAM-SHA-512 over TLS, from the same Secrets.
    keda_sasl = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
    assert trigger["metadata"]["sasl"] == keda_sasl[config.kafka.sasl_mechanism]
    assert trigger["metadata"]["tls"] == "enable" and config.kafka.security_protocol.endswith("SSL")
    auth = one(docs, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in SECRET_KEYS[ref["name"]], ref


# -- the ingest commands -------------------------------------------------------------------------

#: The targets that render each ingest command (the test below checks that every one does).
INGEST_TARGETS = ("overlays/ingest", "overlays/example")
INGEST_SQS_TARGETS = ("overlays/ingest-sqs", "overlays/example")


def deployment_of(docs: list[dict[str, Any]], cmd: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, "Deployment") if command(d) == cmd]
    assert len(found) == 1, f"expected one Deployment running {cmd}, found {len(found)}"
    assert found[0]["metadata"]["name"] == COMMANDS[cmd][0]
    return found[0]


def service_targets(service: dict[str, Any], deployment: dict[str, Any]) -> dict[str | int, int]:
    """A Service's ports (by name and number) -> the container port each reaches on ``deployment``."""
    ports = container_ports(deployment)
    out: dict[str | int, int] = {}
    for port in service["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        number = ports[target] if isinstance(target, str) else target
        out[port["port"]] = number
        if "name" in port:
            out[port["name"]] = number
    return out


def test_the_ingest_overlays_render_their_commands() -> None:
    for target in kubernetes_targets():
        commands = {command(d) for d in of_kind(rendered(target), "Deployment")}
        assert ("ingest" in commands) == (target in INGEST_TARGETS), target
        assert ("ingest-sqs" in commands) == (target in INGEST_SQS_TARGETS), target


def test_pods_of_every_command_share_the_bridges_hardening_files_and_settings() -> None:
    """ingest and ingest-sqs run the bridge's pod: same image, user, securityContext, config files,
    settings and secrets (their own additions aside), so a change to one cannot miss the others."""
    docs = rendered("overlays/example")
    bridge = deployment_of(docs, "run")["spec"]["template"]["spec"]
    for cmd in ("ingest", "ingest-sqs"):
        pod = deployment_of(docs, cmd)["spec"]["template"]["spec"]
        assert pod["securityContext"] == bridge["securityContext"], cmd
        assert pod["terminationGracePeriodSeconds"] >= bridge["terminationGracePeriodSeconds"], cmd
        own, theirs = pod["containers"][0], bridge["containers"][0]
        for key in ("image", "imagePullPolicy", "securityContext", "envFrom"):
            assert own[key] == theirs[key], f"{cmd}: {key}"
        assert all(var in own["env"] for var in theirs["env"]), f"{cmd}: env"
        assert all(mount in own["volumeMounts"] for mount in theirs["volumeMounts"]), f"{cmd}: volumeMounts"
        assert all(volume in pod["volumes"] for volume in bridge["volumes"]), f"{cmd}: volumes"


@pytest.mark.parametrize("target", INGEST_TARGETS)
def test_ingest_service_and_ingress_reach_only_the_ingest_port_with_tls(target: str) -> None:
    docs = rendered(target)
    ingest = deployment_of(docs, "ingest")
    ingress = one(docs, "Ingress")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    spec = ingress["spec"]
    assert "defaultBackend" not in spec, "a default backend would route every other path"
    hosts = [rule["host"] for rule in spec["rules"]]
    assert hosts and all(hosts), "every rule names its host"
    tls_hosts = {h for t in spec["tls"] for h in t["hosts"]}
    assert set(hosts) <= tls_hosts and all(t["secretName"] for t in spec["tls"]), "TLS for every host"
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    routes = set()
    for rule in spec["rules"]:
        for path in rule["http"]["paths"]:
            routes.add((path["path"], path["pathType"]))
            backend = path["backend"]["service"]
            service = services[backend["name"]]
            assert selects(service["spec"]["selector"], ingest), f"{backend['name']} does not select ingest's pods"
            assert not any(selects(service["spec"]["selector"], d) for d in of_kind(docs, "Deployment")
                           if d is not ingest), f"{backend['name']} selects other pods too"
            reached = service_targets(service, ingest)[backend["port"].get("name") or backend["port"]["number"]]
            assert reached == container_ports(ingest)["ingest"], f"{path['path']} reaches port {reached}"
    # /events (and /events/<token>, the unsigned URL) and /caliper: nothing else of the pods.
    assert routes == {("/events", "Prefix"), ("/caliper", "Exact")}, routes
    # The Service deliveries go through carries the ingest port alone.
    traffic = services[spec["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]]
    assert set(service_targets(traffic, ingest).values()) == {container_ports(ingest)["ingest"]}
    assert traffic["spec"].get("clusterIP") != "None", "load-balanced over the ready replicas"
    readiness = ingest["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert readiness["port"] == "ingest", "readiness is probed where deliveries arrive"


@pytest.mark.parametrize("target", INGEST_TARGETS)
def test_ingest_scales_on_cpu_from_two_replicas(target: str) -> None:
    docs = rendered(target)
    ingest = deployment_of(docs, "ingest")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": ingest["metadata"]["name"]}
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
    cpu = [m for m in spec["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert len(cpu) == 1 and cpu[0]["resource"]["target"]["type"] == "Utilization"
    assert 0 < cpu[0]["resource"]["target"]["averageUtilization"] <= 100
    # Utilization is of the CPU request; and the autoscaler owns the replica count.
    assert ingest["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    assert "replicas" not in ingest["spec"], "kubectl apply would reset the autoscaler's replica count"
    # Rollouts never take a replica away before its successor is ready.
    assert ingest["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("target", kubernetes_targets())
def test_no_service_or_ingress_exposes_metrics_outside_the_cluster(target: str) -> None:
    """/metrics (http.port) is reachable only through headless ClusterIP Services, which no
    Ingress routes to; ingest-sqs, which takes no traffic, has no other port."""
    docs = rendered(target)
    deployments = of_kind(docs, "Deployment")
    routed = {p["backend"]["service"]["name"] for i in of_kind(docs, "Ingress") for r in i["spec"]["rules"]
              for p in r["http"]["paths"]}
    for service in of_kind(docs, "Service"):
        name = service["metadata"]["name"]
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", f"{name}: exposed beyond the cluster"
        pods = [d for d in deployments if selects(service["spec"]["selector"], d)]
        assert pods, f"{name} selects no pods"
        for deployment in pods:
            reached = set(service_targets(service, deployment).values())
            if container_ports(deployment)["metrics"] in reached:
                assert service["spec"].get("clusterIP") == "None", f"{name}: metrics behind a load-balanced address"
                assert name not in routed, f"{name}: an Ingress routes to the metrics port"
                assert reached == {container_ports(deployment)["metrics"]}, f"{name}: metrics beside other ports"
            if command(deployment) == "ingest-sqs":
                assert reached == {container_ports(deployment)["metrics"]}, f"{name}: ingest-sqs takes no traffic"
    for deployment in deployments:
        if command(deployment) == "ingest-sqs":
            assert set(container_ports(deployment)) == {"metrics"}


def test_service_monitors_scrape_each_command_once_as_the_job_its_alerts_select() -> None:
    docs = rendered("overlays/example")
    jobs_alerted = set(re.findall(r'job="([^"]+)"', ALERTS.read_text(encoding="utf-8")))
    assert jobs_alerted == {job for _, job in COMMANDS.values()}
    services = of_kind(docs, "Service")
    scraped: dict[str, str] = {}
    for monitor in of_kind(docs, "ServiceMonitor"):
        endpoint = one([{"kind": "endpoint", **e} for e in monitor["spec"]["endpoints"]], "endpoint")
        job = one([{"kind": r["targetLabel"], **r} for r in endpoint["relabelings"]], "job")["replacement"]
        # The Services it selects that carry the endpoint's port: exactly one, headless, whose
        # pods are one command's.
        chosen = [s for s in services if monitor["spec"]["selector"]["matchLabels"].items()
                  <= s["metadata"]["labels"].items() and any(p.get("name") == endpoint["port"]
                                                             for p in s["spec"]["ports"])]
        assert len(chosen) == 1, f"ServiceMonitor {monitor['metadata']['name']}: {len(chosen)} Services"
        assert chosen[0]["spec"]["clusterIP"] == "None"
        pods = [d for d in of_kind(docs, "Deployment") if selects(chosen[0]["spec"]["selector"], d)]
        assert len(pods) == 1
        assert job not in scraped.values()
        scraped[command(pods[0])] = job
        reached = service_targets(chosen[0], pods[0])[endpoint["port"]]
        assert reached == container_ports(pods[0])["metrics"]
    assert scraped == {cmd: job for cmd, (_, job) in COMMANDS.items()}


@pytest.mark.parametrize("target", kubernetes_targets())
def test_every_deployment_has_its_own_disruption_budget(target: str) -> None:
    docs = rendered(target)
    budgets = of_kind(docs, "PodDisruptionBudget")
    for deployment in of_kind(docs, "Deployment"):
        mine = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], deployment)]
        assert len(mine) == 1, f"{deployment['metadata']['name']}: {len(mine)} PodDisruptionBudgets"
        assert mine[0]["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert mine[0]["spec"]["maxUnavailable"] == 1
        assert mine[0]["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


@pytest.mark.parametrize("target", INGEST_SQS_TARGETS)
def test_ingest_sqs_has_its_own_service_account_for_its_aws_role(target: str) -> None:
    docs = rendered(target)
    pod = deployment_of(docs, "ingest-sqs")["spec"]["template"]["spec"]
    accounts = {a["metadata"]["name"]: a for a in of_kind(docs, "ServiceAccount")}
    account = accounts[pod["serviceAccountName"]]
    assert pod["serviceAccountName"] != deployment_of(docs, "run")["spec"]["template"]["spec"]["serviceAccountName"]
    # No Kubernetes API token: IRSA and EKS Pod Identity mount their own token volume.
    assert account["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is False
    if target == "overlays/example":
        role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", role), role
