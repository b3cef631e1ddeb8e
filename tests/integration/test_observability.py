"""Observability on the real broker: the endpoints, the metrics text, lag, readiness, and a real
Prometheus that scrapes the bridge, ingest and ingest-sqs (fed from ElasticMQ) and evaluates every
dashboard query and alert rule.

The broker-stopping test is the last one of this module: it stops the session's shared broker
(and always starts it again).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import Broker, require_tool
from tests.ingest_helpers import IngestProcess, JwksServer, SigningKey, canvas_claims
from tests.integration._prom import Prometheus
from tests.kafka_helpers import REPO, BridgeProcess, catalog_lines, create_topics, produce, run, unique, wait_until
from tests.sqs_helpers import ElasticMQ, IngestSqsProcess, SqsFeeder

ALERTS = REPO / "config" / "alerts.yml"
DASHBOARD = REPO / "config" / "grafana" / "dashboards" / "canvas-bridge.json"
JOB = "canvas-bridge"  # the job name the dashboard and the alerts select
SQS_JOB = "canvas-bridge-ingest-sqs"  # and for canvas-bridge ingest-sqs
INGEST_JOB = "canvas-bridge-ingest"  # the same, for canvas-bridge ingest

CANVAS = catalog_lines()
CALIPER = catalog_lines("caliper-examples.jsonl")
SEED = next(line for line in CANVAS if b'"outcomes.retry_outcome_alignment_clone"' in line)
GARBAGE = [b"{not json at all", b"[1, 2, 3]", b"\xff\xfe not utf-8", b'{"metadata": 1, "body": {}}']


# -- helpers ------------------------------------------------------------------------------------


def bridge_process(bootstrap: str, raw_topic: str, tmp_path: Path, **settings: str) -> BridgeProcess:
    """The bridge with this test's own output topics and consumer group."""
    ns = unique("obs")
    return BridgeProcess(
        bootstrap, raw_topic, unique("group"), tmp_path / "bridge.log",
        BRIDGE_TOPICS_PREFIX=f"{ns}.",
        BRIDGE_TOPICS_CALIPER_PREFIX=f"{ns}.caliper.",
        BRIDGE_TOPICS_DEAD_LETTER=f"{ns}.dlq",
        **settings,
    )


def fresh(line: bytes) -> tuple[bytes, bytes]:
    """A catalog event made new (its own request_id, so its own dedupe key): (key, value)."""
    event = json.loads(line)
    rid = str(uuid.uuid4())
    event["metadata"]["request_id"] = rid
    return rid.encode(), json.dumps(event).encode()


def sample_load(copies: int = 2, duplicates: int = 40, garbage: int = 20) -> list[tuple[bytes, bytes]]:
    """Fresh copies of the whole Canvas catalog, the Caliper catalog, duplicates, garbage.

    A duplicate repeats key and value of an earlier record: same key, same raw partition, so
    the per-partition dedupe window suppresses it.
    """
    records = [fresh(line) for _ in range(copies) for line in CANVAS]
    records += [(f"caliper-{i}".encode(), line) for i, line in enumerate(CALIPER)]
    records += records[:duplicates]
    records += [(f"garbage-{i}".encode(), GARBAGE[i % len(GARBAGE)] + str(i).encode()) for i in range(garbage)]
    return records


def produce_records(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> int:
    return int(run(produce(bootstrap, topic, [v for _, v in records], keys=[k for k, _ in records])))


class Feeder:
    """Keeps producing at a low rate (fresh events, their duplicates, some garbage) in a thread,
    so that every rate over the last minute is non-zero."""

    def __init__(self, bootstrap: str, topic: str, period: float = 0.25) -> None:
        self.bootstrap, self.topic, self.period = bootstrap, topic, period
        self.sent = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="feeder", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._loop())
        except BaseException as exc:  # reported by stop()
            self._error = exc

    async def _loop(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            i = 0
            while not self._stop.is_set():
                key, value = fresh(CANVAS[i % len(CANVAS)])
                batch = [(key, value), (key, value)]  # the second is a duplicate
                if i % 4 == 0:
                    batch.append((b"garbage", GARBAGE[i % len(GARBAGE)]))
                for k, v in batch:
                    await producer.send_and_wait(self.topic, v, key=k)
                    self.sent += 1
                i += 1
                await asyncio.sleep(self.period)  # pacing the load, not synchronization
        finally:
            await producer.stop()

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the feeder thread did not stop"
        if self._error is not None and exc[0] is None:
            raise AssertionError(f"the feeder failed: {self._error!r}") from self._error


class CanvasPoster:
    """Posts signed events to ingest in a thread (a few per second, one forged now and then)."""

    def __init__(self, ingest: IngestProcess, key: SigningKey) -> None:
        self._stop = threading.Event()
        self.answers: list[int] = []

        def main() -> None:
            n = 0
            while not self._stop.wait(0.2):
                event = json.loads(SEED)
                event["metadata"]["request_id"] = str(uuid.uuid4())
                token = key.sign(canvas_claims(event))
                self.answers.append(ingest.post("/events", token if n % 10 else token[:-4] + "AAAA").status)
                n += 1

        self._thread = threading.Thread(target=main, name="canvas-poster", daemon=True)

    def __enter__(self) -> CanvasPoster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert 200 in self.answers and 401 in self.answers, self.answers[:20]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, nested rows included."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((str(panel.get("title", "?")), str(target["expr"])))
            walk(panel.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return out


def alert_names_in_file() -> set[str]:
    return set(re.findall(r"(?m)^\s*-\s*alert:\s*['\"]?([A-Za-z0-9_]+)", ALERTS.read_text()))


def http_status(method: str, url: str) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class HealthWatch:
    """Polls /healthz in a thread and records every answer that is not 200 "ok"."""

    def __init__(self, bridge: BridgeProcess) -> None:
        self.bridge = bridge
        self.bad: list[tuple[float, int, str]] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="healthz", daemon=True)

    def _main(self) -> None:
        while not self._stop.wait(0.2):
            status, body = self.bridge.get("/healthz")
            self.checks += 1
            if status != 200 or body.strip() != "ok":
                self.bad.append((time.monotonic(), status, body))

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def running_bridge(bootstrap: str, raw_topic: str, tmp_path: Path) -> Iterator[BridgeProcess]:
    with bridge_process(bootstrap, raw_topic, tmp_path) as bridge:
        bridge.wait_ready()
        yield bridge


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.broker
@pytest.mark.timeout(90)
def test_endpoints(running_bridge: BridgeProcess) -> None:
    bridge = running_bridge
    assert bridge.get("/healthz") == (200, "ok\n")
    status, body = bridge.get("/readyz")
    assert status == 200 and body.startswith("ready"), (status, body)
    assert bridge.get("/readyz?verbose=1")[0] == 200  # a query string does not change the route
    # The gauge follows /readyz with the broker probe (every ~2 s).
    wait_until(lambda: bridge.metric("canvas_bridge_ready") == 1, 10, "canvas_bridge_ready == 1")
    # Before any event: the labelled series docs/operations.md (Metrics) says are created at start are
    # there at 0 (rates show zeros, not gaps); the families it names as exceptions are empty.
    status, text = bridge.get("/metrics")
    assert status == 200
    for series in ('canvas_bridge_events_published_total{event_name="account_created",format="canvas"} 0.0',
                   'canvas_bridge_duplicates_suppressed_total{event_name="account_created"} 0.0',
                   'canvas_bridge_unknown_fields_total{event_name="account_created"} 0.0',
                   'canvas_bridge_missing_fields_total{event_name="account_created"} 0.0',
                   'canvas_bridge_dead_letters_total{reason="invalid_json"} 0.0',
                   'canvas_bridge_generic_events_total{format="caliper"} 0.0'):
        assert series in text.splitlines(), f"not declared at start: {series}"
    for family in ("canvas_bridge_malformed_fields_total", "canvas_bridge_misfiled_events_total"):
        assert not re.search(rf"(?m)^{family}\{{", text), f"{family} has series before any event"
    assert bridge.get("/no/such/path")[0] == 404
    assert bridge.get("/")[0] == 404
    # http.admin is off by default: the admin routes do not exist.
    for path in ("/admin/pause", "/admin/resume"):
        assert http_status("POST", bridge.url(path))[0] == 404, path
        assert http_status("GET", bridge.url(path))[0] == 404, path
    # Still consuming after the refused admin calls.
    assert bridge.get("/readyz")[0] == 200


@pytest.mark.broker
@pytest.mark.timeout(90)
def test_first_assignment_counts_no_revocation(running_bridge: BridgeProcess) -> None:
    """One join of a fresh group: one "assigned" rebalance, and nothing was revoked.

    aiokafka calls on_partitions_revoked with an empty set before the first assignment; that
    is not a revocation, and the "Rebalances" panel should not show one at every start.
    """
    bridge = running_bridge
    assert bridge.metric("canvas_bridge_assigned_partitions") == 3
    assert bridge.metric("canvas_bridge_rebalances_total", 'change="assigned"') == 1
    assert bridge.metric("canvas_bridge_rebalances_total", 'change="revoked"') == 0, (
        "canvas_bridge_rebalances_total{change=\"revoked\"} counted although no partition was revoked")


@pytest.mark.broker
@pytest.mark.timeout(120)
def test_metrics_output_passes_promtool_check_metrics(bootstrap: str, raw_topic: str,
                                                      running_bridge: BridgeProcess) -> None:
    promtool = require_tool("promtool")
    bridge = running_bridge
    # A few event types of both formats (few typed topics to create), duplicates, garbage.
    records = [fresh(line) for line in CANVAS[:12]] + [(b"caliper", line) for line in CALIPER[:4]]
    records += records[:6] + [(b"garbage", g) for g in GARBAGE]
    n = produce_records(bootstrap, raw_topic, records)
    wait_until(lambda: bridge.metric("canvas_bridge_events_consumed_total") >= n, 60, f"{n} records consumed")
    wait_until(lambda: bridge.metric("canvas_bridge_dead_letters_total") > 0
               and bridge.metric("canvas_bridge_duplicates_suppressed_total") > 0
               and bridge.metric("canvas_bridge_events_published_total") > 0, 30, "every kind of outcome counted")

    # The lag reporter runs every ~2 s: wait for its first round too.
    wait_until(lambda: re.search(r"(?m)^canvas_bridge_consumer_lag_records\{", bridge.get("/metrics")[1]), 15,
               "the consumer lag series")
    status, text = bridge.get("/metrics")
    assert status == 200
    # Labelled series of every family this run produced are there (not only the declared zeros).
    for name in ("canvas_bridge_batch_duration_seconds_bucket", "canvas_bridge_event_freshness_seconds_bucket",
                 "canvas_bridge_consumer_lag_records", "canvas_bridge_build_info"):
        assert re.search(rf"(?m)^{name}\{{", text), f"{name} missing from /metrics"
    # The core's strategy counts reach /metrics: the catalog examples take the exact Struct.
    exact = re.search(r'(?m)^canvas_bridge_decode_strategy_events_total\{strategy="exact"\} (\S+)$', text)
    assert exact and float(exact.group(1)) > 0, "no event counted for the exact decoding strategy"

    out = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    problems = (out.stdout + out.stderr).decode().strip()
    assert out.returncode == 0 and not problems, f"promtool check metrics (exit {out.returncode}):\n{problems}"


@pytest.mark.broker
@pytest.mark.timeout(150)
def test_lag_rises_while_paused_and_drains_to_zero(bootstrap: str, raw_topic: str, tmp_path: Path) -> None:
    backlog = 2000
    lag_of = 'topic="' + raw_topic + '"'
    with bridge_process(bootstrap, raw_topic, tmp_path, BRIDGE_HTTP_ADMIN="true") as bridge:
        bridge.wait_ready()
        assert bridge.post("/admin/pause") == 200
        consumed_before = bridge.metric("canvas_bridge_events_consumed_total")
        published_before = bridge.metric("canvas_bridge_events_published_total")

        # Distinct events of one type (one typed topic), spread over the 3 raw partitions.
        records = [fresh(SEED) for _ in range(backlog)]
        assert produce_records(bootstrap, raw_topic, records) == backlog

        def lag() -> float:
            return bridge.metric("canvas_bridge_consumer_lag_records", lag_of)

        wait_until(lambda: lag() == backlog, 30, f"lag to reach the backlog of {backlog}", interval=0.5)
        # Paused: nothing was consumed, so the lag holds (checked over two lag updates, ~2 s each).
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            assert lag() == backlog
            time.sleep(0.5)
        assert bridge.metric("canvas_bridge_events_consumed_total") == consumed_before, "consumed while paused"
        assert bridge.get("/readyz")[0] == 200, "a paused bridge still owns its partitions"

        assert bridge.post("/admin/resume") == 200
        wait_until(lambda: lag() == 0, 60, "lag to drain to 0 after resume", interval=0.5)
        assert bridge.metric("canvas_bridge_events_consumed_total") - consumed_before == backlog
        published = bridge.metric("canvas_bridge_events_published_total") - published_before
        assert published == backlog, f"{published} of {backlog} distinct events published"
        # Per partition, too: every series of the raw topic is at 0.
        status, text = bridge.get("/metrics")
        assert status == 200
        series = [line for line in text.splitlines()
                  if line.startswith("canvas_bridge_consumer_lag_records{") and lag_of in line]
        assert len(series) == 3 and all(float(s.rsplit(" ", 1)[1]) == 0 for s in series), series


@pytest.mark.broker
@pytest.mark.timeout(200)
def test_prometheus_evaluates_every_dashboard_and_alert_query(bootstrap: str, raw_topic: str, tmp_path: Path,
                                                              elasticmq: ElasticMQ) -> None:
    binary = require_tool("prometheus")
    exprs = dashboard_exprs()
    assert len(exprs) >= 20, "the dashboard lost its queries"
    alert_names = alert_names_in_file()
    assert alert_names, "no alert rules found in config/alerts.yml"

    key = SigningKey("obs")
    # Both ingest paths feed the same raw topic: HTTPS from a Canvas-like poster, SQS from a queue.
    sqs = elasticmq.client()
    queue = sqs.create_queue()
    with bridge_process(bootstrap, raw_topic, tmp_path) as bridge, JwksServer([key]) as jwks, \
            IngestProcess(bootstrap, raw_topic, tmp_path / "ingest.log", jwks.url) as ingest, \
            IngestSqsProcess(bootstrap, raw_topic, [queue], tmp_path / "ingest-sqs.log") as ingest_sqs:
        for process in (bridge, ingest, ingest_sqs):
            process.wait_ready()
        prom_dir = tmp_path / "prometheus"
        prom_dir.mkdir()
        prom = Prometheus(binary, prom_dir, scrape_targets={JOB: [f"127.0.0.1:{bridge.http_port}"],
                                                            INGEST_JOB: [f"127.0.0.1:{ingest.http_port}"],
                                                            SQS_JOB: [f"127.0.0.1:{ingest_sqs.http_port}"]},
                          rule_files=[ALERTS])
        with prom, Feeder(bootstrap, raw_topic) as feeder, CanvasPoster(ingest, key), \
                SqsFeeder(sqs, queue, lambda: fresh(SEED)[1]) as sqs_feeder:
            # A few hundred records at once (while Prometheus starts scraping), then the feeder's trickle.
            n = produce_records(bootstrap, raw_topic, sample_load())
            wait_until(lambda: bridge.metric("canvas_bridge_events_consumed_total") >= n, 60,
                       f"{n} records consumed")

            def up() -> bool:
                return prom.samples(f'up{{job="{JOB}"}}') == [
                    ({"__name__": "up", "instance": f"127.0.0.1:{bridge.http_port}", "job": JOB}, 1.0)]

            wait_until(up, 30, "Prometheus to scrape the bridge (up == 1)", interval=0.5)

            def scrapes() -> float:
                found = prom.samples(f'count_over_time(up{{job="{JOB}"}}[1m])')
                return found[0][1] if found else 0.0

            wait_until(lambda: scrapes() >= 3, 30, "several scrapes", interval=0.5)
            # The dashboard's [1m] windows filled: close to 60 scrapes at 1 s in the last minute.
            wait_until(lambda: scrapes() >= 55, 90, "a full minute of scrapes", interval=1.0)
            assert prom.samples(f'min_over_time(up{{job="{JOB}"}}[1m])')[0][1] == 1.0, "a scrape failed"

            # Rules: the file's group loaded, every rule evaluated without error.
            def rules_ok() -> list[dict[str, Any]] | None:
                answer = prom.api("/api/v1/rules")
                assert answer["status"] == "success", answer
                rules = [r for g in answer["data"]["groups"] for r in g["rules"]]
                return rules if rules and all(r.get("health") == "ok" for r in rules) else None

            try:
                rules = wait_until(rules_ok, 20, "every rule evaluated with health ok", interval=0.5)
            except AssertionError:
                raise AssertionError(f"rules: {json.dumps(prom.api('/api/v1/rules'), indent=1)}") from None
            groups = prom.api("/api/v1/rules")["data"]["groups"]
            assert [g["name"] for g in groups] == ["canvas-bridge"]
            assert groups[0]["file"] == str(ALERTS.resolve())
            assert {r["name"] for r in rules} == alert_names
            assert all(r["type"] == "alerting" for r in rules)

            # Every dashboard query returns data: non-empty, no NaN (a histogram quantile with no
            # observations in the window would be NaN: an empty graph).
            problems = []
            for title, expr in exprs:
                answer = prom.query(expr)
                if answer.get("status") != "success":
                    problems.append(f"{title}: {expr}\n    error: {answer.get('error')}")
                    continue
                result = answer["data"]["result"]
                if not result:
                    problems.append(f"{title}: {expr}\n    empty result")
                elif any(math.isnan(float(r["value"][1])) for r in result):
                    problems.append(f"{title}: {expr}\n    NaN in {result}")
            assert not problems, "dashboard queries without data:\n" + "\n".join(problems)

            # Every alert expression (as Prometheus loaded it) is a valid query; empty is fine.
            for rule in rules:
                answer = prom.query(rule["query"])
                assert answer.get("status") == "success", f"alert {rule['name']}: {rule['query']}: {answer}"

            # The data behind the queries is real traffic, over the last minute.
            def rate(metric: str) -> float:
                found = prom.samples(f'sum(rate({metric}{{job="{JOB}"}}[1m]))')
                return found[0][1] if found else 0.0

            for metric in ("canvas_bridge_events_consumed_total", "canvas_bridge_events_published_total",
                           "canvas_bridge_dead_letters_total", "canvas_bridge_duplicates_suppressed_total"):
                assert rate(metric) > 0, f"rate of {metric} over the last minute is 0"
            for metric in ("canvas_bridge_sqs_messages_received_total", "canvas_bridge_sqs_messages_deleted_total"):
                found = prom.samples(f'sum(rate({metric}{{job="{SQS_JOB}"}}[1m]))')
                assert found and found[0][1] > 0, f"rate of {metric} over the last minute is 0"
            assert sqs_feeder.sent > 0
            lag = prom.samples(f'sum(canvas_bridge_consumer_lag_records{{job="{JOB}"}})')
            assert lag and lag[0][1] < 1000, f"the bridge does not keep up with the feeder: lag {lag}"
            assert feeder.sent > 0
        assert prom.proc is not None and prom.proc.poll() is not None, "Prometheus still running"


def restart_broker(broker: Broker) -> None:
    try:
        t0 = time.monotonic()
        broker.start()
        print(f"broker started in {time.monotonic() - t0:.1f}s")
    except subprocess.CalledProcessError as exc:
        raise AssertionError(f"scripts/kafka-local start failed ({exc.returncode}):\n"
                             f"{exc.stdout}\n{exc.stderr}") from exc


# Last in the module: stops and restarts the session's shared broker.
@pytest.mark.broker
@pytest.mark.chaos
@pytest.mark.timeout(240)
def test_readyz_follows_the_broker(broker: Broker, tmp_path: Path) -> None:
    if not broker.controllable:
        pytest.skip("an external broker (KAFKA_BOOTSTRAP_SERVERS) is not stopped by the tests")
    raw_topic = unique("raw")
    run(create_topics(broker.bootstrap, [raw_topic], partitions=3))
    t_start = time.monotonic()
    with bridge_process(broker.bootstrap, raw_topic, tmp_path) as bridge:
        bridge.wait_ready()
        print(f"\nbridge ready in {time.monotonic() - t_start:.1f}s")
        wait_until(lambda: bridge.metric("canvas_bridge_ready") == 1, 10, "canvas_bridge_ready == 1")
        with HealthWatch(bridge) as health:
            stopped = False
            try:
                stopped = True
                t0 = time.monotonic()
                broker.stop()
                went_down = time.monotonic()
                print(f"broker stopped in {went_down - t0:.1f}s")
                _, body = wait_until(lambda: (s := bridge.get("/readyz"))[0] == 503 and s, 30,
                                          "/readyz to answer 503 with the broker down", interval=0.2)
                print(f"/readyz 503 {time.monotonic() - went_down:.1f}s after the broker stopped: {body.strip()}")
                wait_until(lambda: bridge.metric("canvas_bridge_ready") == 0, 10, "canvas_bridge_ready == 0")

                print(f"ready gauge 0 after {time.monotonic() - went_down:.1f}s")
                restart_broker(broker)
                stopped = False
                back = time.monotonic()
                wait_until(lambda: bridge.get("/readyz")[0] == 200, 120,
                           "/readyz to answer 200 after the broker restarted", interval=0.5)
                print(f"/readyz 200 {time.monotonic() - back:.1f}s after the broker was back")
                wait_until(lambda: bridge.metric("canvas_bridge_ready") == 1, 10, "canvas_bridge_ready == 1")
                # Ready means working: a new event is consumed and published.
                produce_records(broker.bootstrap, raw_topic, [fresh(SEED)])
                wait_until(lambda: bridge.metric("canvas_bridge_events_published_total") >= 1, 60,
                           "an event published after the broker restart")
                print(f"published {time.monotonic() - back:.1f}s after the broker was back")
                assert bridge.proc is not None and bridge.proc.poll() is None, "the bridge exited"
            finally:
                if stopped:
                    restart_broker(broker)
    print(f"bridge stopped; test body took {time.monotonic() - t_start:.1f}s")
    assert health.checks > 10
    assert not health.bad, f"/healthz was not 200 'ok' throughout: {health.bad[:5]}"
