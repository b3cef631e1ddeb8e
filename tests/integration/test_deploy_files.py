"""Static checks of the deployment and observability files.

Checked here, without a Docker engine: the compose file is valid and pins Kafka to the
project's version, the Dockerfile passes hadolint, Prometheus accepts its config and the
alert rules, and every PromQL expression in the Grafana dashboard and the alert rules uses
only metrics that canvas-bridge (bridge/metrics.py) or prometheus_client actually export.

The tools (docker-compose or the docker compose plugin, hadolint, promtool) are installed in
CI; a test is skipped, saying which tool is missing, only when it cannot be found.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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

JOB_SELECTOR = 'job="canvas-bridge"'

EXPECTED_ROWS = [
    "Throughput",
    "Dead letters",
    "Duplicates suppressed",
    "Consumer lag",
    "Latency",
    "Freshness",
    "Rebalances, partitions and in-flight",
    "Process",
]

EXPECTED_ALERTS = {
    "CanvasBridgeDown",
    "CanvasBridgeNotReady",
    "CanvasBridgeDeadLettersRising",
    "CanvasBridgeLagGrowing",
    "CanvasBridgeNoEvents",
    "CanvasBridgeFreshnessDegraded",
    "CanvasBridgeCommitFailures",
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


def _yaml_rules_fallback(text: str) -> list[dict[str, str]]:
    """Alert rules (alert, expr, for, severity, summary, description) without PyYAML.

    Understands what config/alerts.yml uses: ``key: value`` on one line, or a block scalar
    (``|``, ``|-``, ``>``, ``>-``) whose lines are indented deeper than the key.
    """
    rules: list[dict[str, str]] = []
    lines = text.splitlines()
    i = 0
    current: dict[str, str] | None = None
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)(?:-\s+)?([A-Za-z_]+):\s*(.*?)\s*$", line)
        i += 1
        if not m or line.lstrip().startswith("#"):
            continue
        indent, key, value = len(m.group(1)), m.group(2), m.group(3)
        if key == "alert":
            current = {"alert": value.strip("'\"")}
            rules.append(current)
            continue
        if current is None or key not in ("expr", "for", "severity", "summary", "description"):
            continue
        if value in ("|", "|-", "|+", ">", ">-", ">+"):
            block: list[str] = []
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                block.append(lines[i].strip())
                i += 1
            value = ("\n" if value.startswith("|") else " ").join(b for b in block if b)
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        current[key] = value
    return rules


def alert_rules() -> list[dict[str, str]]:
    text = ALERTS.read_text(encoding="utf-8")
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        return _yaml_rules_fallback(text)
    doc = yaml.safe_load(text)
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
    for service in ("kafka", "topics", "bridge", "producer", "prometheus", "grafana"):
        assert re.search(rf"(?m)^  {re.escape(service)}:\s*$", text), f"service {service} missing"


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
        assert JOB_SELECTOR in rule["expr"], f"alert {rule['alert']} does not select {JOB_SELECTOR}"
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
        assert JOB_SELECTOR in expr or "vector(" in expr, f"panel {title!r} does not select {JOB_SELECTOR}"
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
