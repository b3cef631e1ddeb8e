"""Kafka stops while ``ingest-sqs`` drains a queue: nothing that was not written is deleted, receiving
pauses (backpressure) and /readyz says so; after the restart everything arrives on canvas.raw. And
a broker frozen at SIGTERM: the drain gives back what it holds and exits 3.

This stops and freezes the session's shared broker: it is in its own module, and the broker is
started (or thawed) again whatever happens (try/finally).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos._util import poll_metric, start_broker
from tests.conftest import Broker
from tests.kafka_helpers import create_topics, read_all, run, unique, wait_until
from tests.sqs_helpers import ElasticMQ, IngestSqsProcess

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

MESSAGES = 3_000
VISIBILITY_S = 5


@pytest.mark.timeout(300)
def test_kafka_stopped_mid_drain_deletes_nothing_unwritten_and_everything_arrives(
        broker: Broker, elasticmq: ElasticMQ, tmp_path: Path) -> None:
    if not broker.controllable:
        pytest.skip("an external broker (KAFKA_BOOTSTRAP_SERVERS) is not stopped by the tests")
    bootstrap = broker.bootstrap
    raw_topic = unique("raw")
    run(create_topics(bootstrap, [raw_topic], partitions=3))
    sqs = elasticmq.client()
    queue = sqs.create_queue(visibility_timeout_s=VISIBILITY_S)
    bodies = [json.dumps({"metadata": {"user_id": str(n % 97), "request_id": f"outage-{n}"}, "body": {}})
              for n in range(MESSAGES)]
    sqs.send(queue, bodies, threads=8)
    ingest = IngestSqsProcess(bootstrap, raw_topic, [queue], tmp_path / "ingest.log",
                              BRIDGE_SQS_VISIBILITY_TIMEOUT_S=str(VISIBILITY_S), BRIDGE_SQS_WRITE_TIMEOUT_S="3",
                              BRIDGE_SQS_POLLERS="2")

    def metric(name: str, labels: str = "") -> float:
        value = poll_metric(ingest, name) if not labels else ingest.metric(name, labels)
        assert value is not None, "ingest-sqs is not answering /metrics"
        return value

    broker_down = False
    try:
        ingest.start()
        wait_until(lambda: (poll_metric(ingest, "canvas_bridge_sqs_messages_deleted_total") or 0) >= 300, 60,
                   "300 messages deleted", interval=0.05)
        broker_down = True
        stopped = time.monotonic()
        broker.stop()
        _, why = wait_until(lambda: (s := ingest.get("/readyz"))[0] == 503 and "not receiving" in s[1] and s, 60,
                            "/readyz to say it is not receiving")
        not_ready_after = time.monotonic() - stopped
        # Backpressure: once paused, nothing more is received while the broker is down.
        received = metric("canvas_bridge_sqs_messages_received_total")
        time.sleep(4)  # a window to see that the counter holds (not a synchronization)
        assert metric("canvas_bridge_sqs_messages_received_total") == received, "received while Kafka is down"
        written = metric("canvas_bridge_sqs_messages_written_total")
        deleted = metric("canvas_bridge_sqs_messages_deleted_total")
        left = metric("canvas_bridge_sqs_messages_left_total", 'reason="unavailable"')
        assert deleted <= written, f"deleted {deleted} messages, only {written} written"
        assert sqs.total(queue) == MESSAGES - deleted, "the queue lost messages that were not deleted"
        assert ingest.get("/healthz") == (200, "ok\n")
        start_broker(broker)
        broker_down = False
        restarted = time.monotonic()
        wait_until(lambda: sqs.total(queue) == 0, 180, "the queue to be drained after the restart", interval=0.5)
        wait_until(lambda: ingest.get("/readyz")[0] == 200, 30, "/readyz 200 again")
        ready_after = time.monotonic() - restarted
        assert metric("canvas_bridge_sqs_messages_deleted_total") <= metric("canvas_bridge_sqs_messages_written_total")
        assert ingest.terminate(40) == 0, ingest.log_tail()
    finally:
        if broker_down:
            start_broker(broker)
        ingest.kill()
    raw = Counter(r.value.decode() for r in run(read_all(bootstrap, raw_topic, min_count=MESSAGES)) if r.value)
    lost = [b for b in bodies if b not in raw]
    print(f"\nSQS broker outage: {deleted:.0f} deleted before, {written:.0f} written, {left:.0f} left for "
          f"redelivery; not ready {not_ready_after:.1f}s after the stop ({why.strip()}); drained and ready "
          f"{ready_after:.1f}s after the restart; raw records {sum(raw.values())}, written twice "
          f"{sum(n - 1 for n in raw.values())}, lost {len(lost)}")
    assert not lost, f"{len(lost)} messages never reached canvas.raw"


@pytest.mark.timeout(240)
def test_a_drain_that_cannot_finish_releases_what_it_holds_and_exits_3(
        broker: Broker, elasticmq: ElasticMQ, tmp_path: Path) -> None:
    """SIGTERM while the broker is frozen (SIGSTOP): the writes cannot finish, so at the drain deadline
    ingest-sqs gives back what it holds at once (visibility 0, not after its 60 s timeout) and exits 3.
    A new ingest-sqs then drains the queue: nothing is lost."""
    if not broker.controllable:
        pytest.skip("an external broker (KAFKA_BOOTSTRAP_SERVERS) is not frozen by the tests")
    assert broker.state_dir is not None
    broker_pid = int((broker.state_dir / "kafka.pid").read_text())
    bootstrap = broker.bootstrap
    raw_topic = unique("raw")
    run(create_topics(bootstrap, [raw_topic], partitions=3))
    sqs = elasticmq.client()
    queue = sqs.create_queue(visibility_timeout_s=60)
    bodies = [json.dumps({"metadata": {"user_id": str(n % 89), "request_id": f"frozen-{n}"}, "body": {}})
              for n in range(2000)]
    sqs.send(queue, bodies, threads=8)
    settings = {"BRIDGE_SQS_VISIBILITY_TIMEOUT_S": "60", "BRIDGE_SQS_WRITE_TIMEOUT_S": "30",
                "BRIDGE_DELIVERY_DRAIN_TIMEOUT_S": "4"}
    first = IngestSqsProcess(bootstrap, raw_topic, [queue], tmp_path / "first.log", **settings)
    frozen = False
    try:
        first.start()
        wait_until(lambda: (poll_metric(first, "canvas_bridge_sqs_messages_deleted_total") or 0) >= 200, 60,
                   "200 messages deleted", interval=0.05)
        os.kill(broker_pid, signal.SIGSTOP)
        frozen = True
        wait_until(lambda: (poll_metric(first, "canvas_bridge_sqs_messages_in_flight") or 0) > 0, 20,
                   "messages held, their writes waiting on the frozen broker", interval=0.05)
        held = poll_metric(first, "canvas_bridge_sqs_messages_in_flight")
        signalled = time.monotonic()
        code = first.terminate(30)
        took = time.monotonic() - signalled
        _, in_flight, _ = sqs.counts(queue)
    finally:
        if frozen:
            os.kill(broker_pid, signal.SIGCONT)
        first.kill()
    assert code == 3, first.log_tail()
    assert took < 4 + 3, f"exit {took:.1f}s after SIGTERM, drain_timeout_s is 4"
    assert in_flight == 0, f"{in_flight} messages still invisible: they were not released"
    assert "releasing the messages still held" in first.log_path.read_text()
    with IngestSqsProcess(bootstrap, raw_topic, [queue], tmp_path / "second.log", **settings) as second:
        wait_until(lambda: sqs.total(queue) == 0, 120, "the second ingest-sqs to drain the queue", interval=0.5)
        assert second.terminate(30) == 0, second.log_tail()
    raw = Counter(r.value.decode() for r in run(read_all(bootstrap, raw_topic, min_count=len(bodies))) if r.value)
    lost = [b for b in bodies if b not in raw]
    print(f"\nSQS frozen broker at SIGTERM: {held:.0f} held, exit {code} {took:.1f}s after SIGTERM, released at once; "
          f"then drained: raw records {sum(raw.values())}, written twice {sum(n - 1 for n in raw.values())}, "
          f"lost {len(lost)}")
    assert not lost, f"{len(lost)} messages never reached canvas.raw"
