"""``canvas-bridge ingest-sqs`` against the real ElasticMQ (scripts/sqs-local) and the real broker.

The catalog scenario runs once for the module: 1,000 distinct catalog events, one of them sent
twice, and one body that is not JSON, go through the queue, ``ingest-sqs``, the raw topic and the
real bridge process to the typed topics and the dead-letter topic.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.ingest.raw import raw_key
from tests.chaos._util import GARBAGE, Input, Report, Topics, all_committed, check, make_workload, read_outputs
from tests.conftest import Broker, require_tool
from tests.kafka_helpers import BridgeProcess, Record, create_topics, free_port, read_all, run, unique, wait_until
from tests.sqs_helpers import ACCESS_KEY_ID, SECRET_ACCESS_KEY, ElasticMQ, IngestSqsProcess, ThrottlingProxy

pytestmark = pytest.mark.broker

EVENTS = 1_000


@dataclass
class CatalogRun:
    topics: Topics
    queue: str
    bodies: list[bytes]  # as sent, the duplicate twice
    duplicate: bytes
    garbage: bytes
    raw: list[Record]
    report: Report
    queue_left: int
    ingest_exit: int
    bridge_exit: int
    suppressed: float
    ingest_metrics: dict[str, float]


def _metrics(proc: BridgeProcess, *names: str) -> dict[str, float]:
    return {name: proc.metric(name) for name in names}


@pytest.fixture(scope="module")
def catalog_run(broker: Broker, elasticmq: ElasticMQ, tmp_path_factory: pytest.TempPathFactory) -> CatalogRun:
    bootstrap = broker.bootstrap
    logs = tmp_path_factory.mktemp("ingest-sqs")
    sqs = elasticmq.client()
    topics = Topics.create(bootstrap, "sqs-catalog", partitions=3)
    workload = make_workload(EVENTS, garbage_every=0)
    duplicate = workload.inputs[7]
    garbage_marker = f"gb-{workload.tag}-{EVENTS}"
    garbage = Input(f"{{not json at all: {garbage_marker}".encode(), GARBAGE, (garbage_marker,))
    workload.inputs += [duplicate, garbage]
    queue = sqs.create_queue()
    assert sqs.send(queue, [v.decode() for v in workload.values]) == EVENTS + 2

    ingest = IngestSqsProcess(bootstrap, topics.raw, [queue], logs / "ingest.log").start()
    bridge = topics.bridge(bootstrap, logs / "bridge.log").start()
    try:
        ingest.wait_ready()
        wait_until(lambda: sqs.total(queue) == 0, 120, "the queue to be drained")
        wait_until(lambda: ingest.metric("canvas_bridge_sqs_messages_deleted_total") >= EVENTS + 2, 30,
                   "every message deleted")
        ingest_metrics = _metrics(
            ingest, "canvas_bridge_sqs_messages_received_total", "canvas_bridge_sqs_messages_written_total",
            "canvas_bridge_sqs_messages_deleted_total", "canvas_bridge_ingest_records_written_total",
            "canvas_bridge_sqs_messages_in_flight")
        wait_until(lambda: all_committed(bootstrap, topics.group, topics.raw), 180,
                   "the bridge to commit the whole raw topic")
        suppressed = bridge.metric("canvas_bridge_duplicates_suppressed_total")
        ingest_exit = ingest.terminate(40)
        bridge_exit = bridge.terminate(40)
    finally:
        ingest.kill()
        bridge.kill()
    raw = run(read_all(bootstrap, topics.raw, min_count=EVENTS + 2))
    report = check(workload, run(read_outputs(bootstrap, topics)), topics)
    print(f"\nSQS catalog run: {len(raw)} raw records, {report.outputs} outputs, suppressed={suppressed}, "
          f"ingest metrics {ingest_metrics}")
    return CatalogRun(topics, queue, workload.values, duplicate.value, garbage.value, raw, report, sqs.total(queue),
                      ingest_exit, bridge_exit, suppressed, ingest_metrics)


@pytest.mark.timeout(400)
def test_catalog_events_sent_to_the_queue_reach_raw_and_their_typed_topics(catalog_run: CatalogRun) -> None:
    r = catalog_run
    assert r.queue_left == 0, "the queue is not empty"
    # Every body on the raw topic, as it was sent (SQS may redeliver: at least once).
    raw_values = {rec.value for rec in r.raw}
    missing = [b for b in r.bodies if b not in raw_values]
    assert not missing, f"{len(missing)} bodies not on the raw topic, e.g. {missing[:2]}"
    assert len(r.raw) >= len(r.bodies)
    # ... and every event on its typed topic, exactly once (the bridge's window takes redeliveries).
    r.report.assert_exactly_once()
    assert r.ingest_metrics["canvas_bridge_sqs_messages_deleted_total"] >= len(r.bodies)
    assert (r.ingest_metrics["canvas_bridge_sqs_messages_deleted_total"]
            <= r.ingest_metrics["canvas_bridge_sqs_messages_written_total"]), "deleted more than written"
    assert r.ingest_metrics["canvas_bridge_sqs_messages_in_flight"] == 0
    assert r.ingest_exit == 0 and r.bridge_exit == 0


def test_raw_records_carry_the_key_rule_and_the_ingest_headers(catalog_run: CatalogRun) -> None:
    for rec in catalog_run.raw:
        assert rec.value is not None
        assert rec.key == raw_key(rec.value)
        assert rec.headers["ingest_source"] == b"sqs"
        assert rec.headers["ingest_signed"] == b"false"
        assert int(rec.headers["ingest_received_ms"]) > 1_700_000_000_000
        assert "ingest_key_id" not in rec.headers


def test_a_duplicate_message_reaches_its_typed_topic_once(catalog_run: CatalogRun) -> None:
    r = catalog_run
    copies = [rec for rec in r.raw if rec.value == r.duplicate]
    assert len(copies) >= 2, "both copies are on the raw topic"
    assert len({rec.partition for rec in copies}) == 1, "the copies landed on different raw partitions"
    marker = json.loads(r.duplicate)
    marker = marker["metadata"]["request_id"] if "metadata" in marker else marker["data"][0]["id"]
    assert len(r.report.by_marker[marker]) == 1, "the duplicate reached its typed topic twice"
    assert r.suppressed >= 1


def test_a_non_json_body_reaches_the_dead_letter_topic(catalog_run: CatalogRun) -> None:
    r = catalog_run
    assert any(rec.value == r.garbage for rec in r.raw), "written to the raw topic as it came"
    dead = [o for copies in r.report.dlq_by_marker.values() for o in copies if o.value == r.garbage]
    assert dead, "not in the dead-letter topic"
    assert dead[0].headers["dlq_reason"] == b"invalid_json"


# -- drain, size limit, outages ------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_sigterm_finishes_what_it_holds_and_exits_0(bootstrap: str, raw_topic: str, elasticmq: ElasticMQ,
                                                   tmp_path: Path) -> None:
    """SIGTERM mid-drain: exit 0 in time; nothing written is left in the queue, nothing is lost.

    DEBUG logging, so that the check that neither credentials nor bodies are logged covers the
    chattiest level.
    """
    sqs = elasticmq.client()
    queue = sqs.create_queue(visibility_timeout_s=3)
    bodies = [json.dumps({"metadata": {"user_id": str(n), "event_name": "x"}, "body": {"n": f"body-{n:05d}"}})
              for n in range(4000)]
    sqs.send(queue, bodies)
    log = tmp_path / "ingest.log"
    ingest = IngestSqsProcess(bootstrap, raw_topic, [queue], log, BRIDGE_LOG_LEVEL="DEBUG",
                              BRIDGE_SQS_VISIBILITY_TIMEOUT_S="3", BRIDGE_DELIVERY_DRAIN_TIMEOUT_S="15").start()
    try:
        wait_until(lambda: (ingest.metric("canvas_bridge_sqs_messages_deleted_total")
                            if ingest.get("/metrics")[0] == 200 else 0) >= 500, 60, "500 messages deleted")
        signalled = time.monotonic()
        code = ingest.terminate(30)
        took = time.monotonic() - signalled
    finally:
        ingest.kill()
    assert code == 0, ingest.log_tail()
    assert took < 15, f"the drain took {took:.1f}s, over delivery.drain_timeout_s"
    # Messages a cancelled long poll may have taken come back after the visibility timeout.
    wait_until(lambda: sqs.counts(queue)[1] == 0, 30, "no message in flight any more")
    left = set(sqs.receive_all(queue))
    raw = {rec.value.decode() for rec in run(read_all(bootstrap, raw_topic, min_count=500)) if rec.value}
    assert not raw & left, f"{len(raw & left)} messages were written but not deleted"
    assert raw | left == set(bodies), f"{len(set(bodies) - raw - left)} messages lost"
    assert len(left) > 0, "the queue was drained completely before SIGTERM: the test proved nothing"
    text = log.read_text(errors="replace")
    assert SECRET_ACCESS_KEY not in text and ACCESS_KEY_ID not in text, "credentials in the log"
    assert "body-0" not in text, "a message body in the log"
    print(f"\nSIGTERM drain: exit {code} in {took:.2f}s; {len(raw)} written and deleted, {len(left)} left")


@pytest.mark.timeout(120)
def test_a_body_over_the_size_limit_stays_in_the_queue_until_its_redrive_policy_moves_it(
        bootstrap: str, raw_topic: str, elasticmq: ElasticMQ, tmp_path: Path) -> None:
    sqs = elasticmq.client()
    queue = sqs.create_queue(visibility_timeout_s=2, dead_letter_after=2)
    big = json.dumps({"metadata": {"user_id": "1"}, "body": {"text": "x" * 3000}})
    small = [json.dumps({"metadata": {"user_id": str(n)}, "body": {}}) for n in range(5)]
    sqs.send(queue, [big, *small])
    with IngestSqsProcess(bootstrap, raw_topic, [queue], tmp_path / "ingest.log",
                          BRIDGE_LIMITS_MAX_MESSAGE_BYTES="2000", BRIDGE_SQS_VISIBILITY_TIMEOUT_S="2") as ingest:
        dlq = sqs.dead_letter_queue(queue)
        wait_until(lambda: sqs.total(dlq) == 1, 60, "the big message to be moved to the dead-letter queue")
        wait_until(lambda: sqs.total(queue) == 0, 30, "the queue to be empty")
        left = ingest.metric("canvas_bridge_sqs_messages_left_total", 'reason="too_large"')
        refused = ingest.metric("canvas_bridge_ingest_write_failures_total", 'reason="too_large"')
        deleted = ingest.metric("canvas_bridge_sqs_messages_deleted_total")
    assert left >= 2 and refused >= 2, (left, refused)  # received twice (maxReceiveCount), left both times
    assert deleted == len(small)
    assert sqs.receive_all(dlq) == [big], "the dead-letter queue holds the big body, unchanged"
    raw = run(read_all(bootstrap, raw_topic, min_count=len(small)))
    assert sorted(r.value.decode() for r in raw if r.value) == sorted(small), "the big body was written"
    logged = [line for line in ingest.log_path.read_text().splitlines() if "left in the queue" in line]
    assert logged and "limits.max_message_bytes" in logged[0] and "xxxx" not in logged[0]


@pytest.mark.timeout(120)
def test_an_unreachable_kafka_stops_receiving(raw_topic: str, elasticmq: ElasticMQ, tmp_path: Path) -> None:
    """Backpressure: with no broker, nothing is received (the messages stay visible) and not ready."""
    sqs = elasticmq.client()
    queue = sqs.create_queue()
    sqs.send(queue, [json.dumps({"metadata": {"user_id": str(n)}, "body": {}}) for n in range(20)])
    with IngestSqsProcess(f"127.0.0.1:{free_port()}", raw_topic, [queue], tmp_path / "ingest.log") as ingest:
        wait_until(lambda: (s := ingest.get("/readyz"))[0] == 503 and "not receiving: " in s[1] and "Kafka" in s[1],
                   30, "/readyz 503 saying Kafka is not reached")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the whole time: nothing taken from the queue
            assert sqs.counts(queue) == (20, 0, 0)
            assert ingest.get("/readyz")[0] == 503
            time.sleep(0.5)
        assert ingest.metric("canvas_bridge_sqs_messages_received_total") == 0
        assert ingest.get("/healthz") == (200, "ok\n")
        assert ingest.metric("canvas_bridge_sqs_ready") == 0


@pytest.mark.timeout(180)
def test_an_unreachable_sqs_endpoint_is_retried_with_backoff_and_not_ready(
        bootstrap: str, raw_topic: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A private ElasticMQ goes away and comes back: 503 and backoff meanwhile, then it drains again."""
    server = ElasticMQ.start_in(tmp_path_factory.mktemp("sqs-outage"))
    try:
        sqs = server.client()
        queue = sqs.create_queue()
        name = queue.rsplit("/", 1)[1]
        log = tmp_path_factory.mktemp("sqs-outage-logs") / "ingest.log"
        with IngestSqsProcess(bootstrap, raw_topic, [queue], log) as ingest:
            ingest.wait_ready()
            server.stop()
            stopped = time.monotonic()
            _, body = wait_until(lambda: (s := ingest.get("/readyz"))[0] == 503 and s, 40, "/readyz 503")
            not_ready_after = time.monotonic() - stopped
            assert "receiving fails" in body and name in body and "unreachable" in body, body
            errors_at = ingest.metric("canvas_bridge_sqs_receive_errors_total", 'error="unreachable"')
            time.sleep(4)  # measuring a rate over a fixed window, not synchronizing
            errors = ingest.metric("canvas_bridge_sqs_receive_errors_total", 'error="unreachable"') - errors_at
            # 2 pollers backing off to retry_backoff_max_s=2 s (BridgeProcess): a few per poller, not a hot loop.
            assert 1 <= errors <= 14, f"{errors} receive errors in 4 s"
            assert ingest.get("/healthz") == (200, "ok\n")
            server.start()
            assert sqs.create_queue(name) == queue  # its queues lived in memory
            sqs.send(queue, [json.dumps({"metadata": {"user_id": "back"}, "body": {}})])
            wait_until(lambda: ingest.metric("canvas_bridge_sqs_messages_deleted_total") == 1, 60,
                       "the message sent after the outage to be written and deleted")
            assert ingest.get("/readyz")[0] == 200
            print(f"\nSQS outage: 503 {not_ready_after:.1f}s after ElasticMQ was gone; {errors:.0f} errors in 4 s")
        raw = run(read_all(bootstrap, raw_topic, min_count=1))
        assert [json.loads(r.value or b"")["metadata"]["user_id"] for r in raw] == ["back"]
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_a_throttling_sqs_endpoint_is_retried_with_backoff_and_not_ready(
        bootstrap: str, raw_topic: str, elasticmq: ElasticMQ, tmp_path: Path) -> None:
    """SQS answers RequestThrottled (through a proxy in front of ElasticMQ): 503 and backoff, then it drains."""
    sqs = elasticmq.client()
    queue = sqs.create_queue()
    with ThrottlingProxy(elasticmq.endpoint) as proxy, IngestSqsProcess(
            bootstrap, raw_topic, [queue], tmp_path / "ingest.log", BRIDGE_SQS_ENDPOINT_URL=proxy.endpoint,
            BRIDGE_SQS_WAIT_TIME_S="1") as ingest:
        ingest.wait_ready()
        proxy.throttle = True
        _, body = wait_until(lambda: (s := ingest.get("/readyz"))[0] == 503 and s, 30, "/readyz 503")
        assert "receiving fails" in body and "(throttled)" in body, body
        errors_at = ingest.metric("canvas_bridge_sqs_receive_errors_total", 'error="throttled"')
        time.sleep(4)  # measuring a rate over a fixed window, not synchronizing
        errors = ingest.metric("canvas_bridge_sqs_receive_errors_total", 'error="throttled"') - errors_at
        assert 1 <= errors <= 14, f"{errors} throttled receives in 4 s: not backing off"
        assert ingest.get("/healthz") == (200, "ok\n")
        proxy.throttle = False
        sqs.send(queue, [json.dumps({"metadata": {"user_id": str(n)}, "body": {}}) for n in range(30)])
        wait_until(lambda: ingest.metric("canvas_bridge_sqs_messages_deleted_total") == 30, 60,
                   "30 messages written and deleted once SQS stopped throttling")
        assert ingest.get("/readyz")[0] == 200
    print(f"\nSQS throttling: {errors:.0f} throttled receives in 4 s ({proxy.throttled} answers in all)")
    assert len(run(read_all(bootstrap, raw_topic, min_count=30))) == 30


@pytest.mark.timeout(60)
def test_sigterm_while_the_queues_do_not_answer_exits_0_at_once(bootstrap: str, raw_topic: str,
                                                                tmp_path: Path) -> None:
    """An endpoint that accepts connections and never answers: not ready, and SIGTERM does not wait
    for the request's 30 s read timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # never accepted: requests hang
        port = silent.getsockname()[1]
        ingest = IngestSqsProcess(bootstrap, raw_topic, [f"http://127.0.0.1:{port}/000000000000/canvas-live-events-x"],
                                  tmp_path / "ingest.log").start()
        try:
            _, body = wait_until(lambda: (s := ingest.get("/readyz"))[0] == 503 and s, 30, "/readyz 503")
            assert body.startswith("starting"), body
            time.sleep(1)  # let the first GetQueueAttributes hang (not a synchronization)
            signalled = time.monotonic()
            assert ingest.terminate(20) == 0, ingest.log_tail()
            took = time.monotonic() - signalled
        finally:
            ingest.kill()
    assert took < 3, f"SIGTERM took {took:.1f}s"


@pytest.mark.timeout(60)
def test_a_missing_queue_fails_at_start_naming_it(bootstrap: str, raw_topic: str, elasticmq: ElasticMQ,
                                                  tmp_path: Path) -> None:
    name = unique("canvas-live-events-nope")
    ingest = IngestSqsProcess(bootstrap, raw_topic, [f"{elasticmq.endpoint}/000000000000/{name}"],
                              tmp_path / "ingest.log").start()
    assert ingest.proc is not None
    assert ingest.proc.wait(30) == 1
    assert re.search(rf"queue {name}: no such queue", ingest.log_tail()), ingest.log_tail()


@pytest.mark.timeout(120)
def test_two_queues_are_drained_labelled_by_name_and_the_metrics_pass_promtool(
        bootstrap: str, elasticmq: ElasticMQ, tmp_path: Path) -> None:
    raw_topic = unique("raw")
    run(create_topics(bootstrap, [raw_topic], partitions=3))
    sqs = elasticmq.client()
    queues = [sqs.create_queue(), sqs.create_queue()]
    sent: dict[str, list[str]] = defaultdict(list)
    for i, q in enumerate(queues):
        sent[q] = [json.dumps({"metadata": {"user_id": f"{i}-{n}"}, "body": {}}) for n in range(30)]
        sqs.send(q, sent[q])
    with IngestSqsProcess(bootstrap, raw_topic, queues, tmp_path / "ingest.log") as ingest:
        wait_until(lambda: all(sqs.total(q) == 0 for q in queues), 60, "both queues drained")
        _, text = ingest.get("/metrics")
    for q in queues:
        name = q.rsplit("/", 1)[1]
        assert f'canvas_bridge_sqs_messages_deleted_total{{queue="{name}"}} 30.0' in text
    label_values = re.findall(r'="([^"]*)"', text)
    assert label_values and not any("000000000000" in v for v in label_values), \
        "the account id is in a metric label"
    out = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text.encode(), capture_output=True,
                         timeout=30)
    problems = (out.stdout + out.stderr).decode().strip()
    assert out.returncode == 0 and not problems, f"promtool check metrics (exit {out.returncode}):\n{problems}"
    raw = run(read_all(bootstrap, raw_topic, min_count=60))
    assert sorted(r.value.decode() for r in raw if r.value) == sorted(sent[queues[0]] + sent[queues[1]])
