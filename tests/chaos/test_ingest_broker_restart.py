"""``canvas-bridge ingest`` while the broker is down: 503 within ``ingest.ack_timeout_ms``, ``/readyz`` 503,
and accepted again once the broker is back.

This stops the session's shared broker: it is in its own module, and the broker is started again
whatever happens (try/finally).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.chaos._util import start_broker
from tests.conftest import Broker
from tests.ingest_helpers import IngestProcess, JwksServer, SigningKey, canvas_claims
from tests.kafka_helpers import catalog_lines, create_topics, read_all, run, unique, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

ACK_TIMEOUT_MS = 2000


def _event(marker: str) -> dict[str, object]:
    event: dict[str, object] = json.loads(catalog_lines()[0])
    event["metadata"]["request_id"] = marker  # type: ignore[index]
    return event


def test_broker_down_gives_503_in_time_and_readyz_503_then_accepts_again(broker: Broker, tmp_path: Path) -> None:
    if not broker.controllable:
        pytest.skip("an external broker (KAFKA_BOOTSTRAP_SERVERS) is not ours to stop")
    raw = unique("raw-ingest-down")
    run(create_topics(broker.bootstrap, [raw], partitions=3))
    key = SigningKey("k-down")
    tag = uuid.uuid4().hex[:8]
    with JwksServer([key]) as jwks, IngestProcess(broker.bootstrap, raw, tmp_path / "ingest.log", jwks.url,
                                                  BRIDGE_INGEST_ACK_TIMEOUT_MS=str(ACK_TIMEOUT_MS)) as ingest:
        ingest.wait_ready()
        assert ingest.post("/events", key.sign(canvas_claims(_event(f"{tag}-before")))).status == 200
        broker.stop()
        try:
            answers = []
            for n in range(3):
                asked = time.monotonic()
                answer = ingest.post("/events", key.sign(canvas_claims(_event(f"{tag}-down-{n}"))))
                answers.append((answer.status, answer.headers.get("retry-after"), time.monotonic() - asked))
            for status, retry_after, took in answers:
                assert status == 503 and retry_after, answers
                assert took <= ACK_TIMEOUT_MS / 1000 + 1.0, f"503 after {took:.1f}s, not within ack_timeout_ms"
            wait_until(lambda: ingest.get("/readyz")[0] == 503, 15, "/readyz 503 while the broker is down")
            assert ingest.metric("canvas_bridge_ingest_requests_total", 'outcome="unavailable"') >= 3
        finally:
            start_broker(broker)
        # Canvas retries: once the broker is back, the same kind of delivery is accepted again.
        wait_until(lambda: ingest.post("/events", key.sign(canvas_claims(_event(f"{tag}-after")))).status == 200,
                   120, "a delivery accepted after the restart")
        wait_until(lambda: ingest.get("/readyz")[0] == 200, 60, "/readyz 200 after the restart")
        assert ingest.proc is not None and ingest.proc.poll() is None
        assert ingest.terminate(60) == 0
    markers = {json.loads(r.value)["metadata"]["request_id"] for r in run(read_all(broker.bootstrap, raw, timeout=30))}
    assert f"{tag}-before" in markers and f"{tag}-after" in markers
