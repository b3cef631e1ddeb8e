"""Chaos: a client that behaves like Canvas posts 5,000 signed events while ``canvas-bridge ingest`` is
SIGKILLed and restarted three times, and frozen (SIGSTOP) once.

Canvas retries a failed delivery 3 more times, with backoff, then drops the event. The client
here does the same (1, 2, 4 s), on anything but a 2xx, a refused connection included. At the end:

- every event that got a 2xx is on the raw topic (a 2xx means the broker held it);
- every event is on its typed topic after the bridge ran: 0 lost;
- the events written but whose 2xx was lost to a kill were posted again and written twice; the
  bridge's duplicate window suppressed those second copies: 0 duplicates on the typed topics.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.chaos._util import Topics, all_committed, check, make_workload, read_outputs
from tests.ingest_helpers import IngestProcess, JwksServer, SigningKey, canvas_claims, post
from tests.kafka_helpers import read_all, run, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

EVENTS = 5_000
KILLS = 3
BACKOFF_S = (1.0, 2.0, 4.0)  # Canvas: 3 retries
WORKERS = 16


class CanvasLikeClient:
    """Posts each token once, retrying 3 times with backoff on anything but a 2xx."""

    def __init__(self, port: int, tokens: list[str]) -> None:
        self.port = port
        self.tokens = tokens
        self.final: list[int] = [0] * len(tokens)
        self.attempts: list[int] = [0] * len(tokens)
        self.accepted = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="canvas-like-client", daemon=True)

    def _deliver(self, i: int) -> None:
        status = 0
        for attempt in range(1 + len(BACKOFF_S)):
            self.attempts[i] += 1
            status = post(self.port, "/events", self.tokens[i].encode(), timeout=15).status
            if 200 <= status < 300:
                with self._lock:
                    self.accepted += 1
                break
            if attempt < len(BACKOFF_S):
                time.sleep(BACKOFF_S[attempt])
        self.final[i] = status

    def _run(self) -> None:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(self._deliver, range(len(self.tokens))))

    def start(self) -> CanvasLikeClient:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the client did not finish"


def test_canvas_like_client_loses_nothing_while_ingest_is_killed(broker: object, tmp_path: Path) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    workload = make_workload(EVENTS, garbage_every=0)
    topics = Topics.create(bootstrap, "ingest-kill", partitions=6)
    key = SigningKey("chaos-key")
    tokens = [key.sign(canvas_claims(json.loads(i.value), ttl_s=3600)) for i in workload.inputs]

    with JwksServer([key]) as jwks:
        ingest = IngestProcess(bootstrap, topics.raw, tmp_path / "ingest.log", jwks.url,
                               BRIDGE_INGEST_ACK_TIMEOUT_MS="5000")
        try:
            ingest.start()
            ingest.wait_ready()
            started = time.monotonic()
            client = CanvasLikeClient(ingest.port, tokens).start()
            kills = stops = 0
            for k in range(KILLS):
                wait_until(lambda k=k: client.accepted >= (k + 1) * EVENTS // (KILLS + 2), 120,
                           f"{(k + 1) * EVENTS // (KILLS + 2)} events accepted")
                ingest.kill()  # SIGKILL: requests in flight lose their answer
                kills += 1
                ingest.start()
                ingest.wait_ready()
            # And a freeze: the client's requests time out or wait; the process resumes.
            wait_until(lambda: client.accepted >= (KILLS + 1) * EVENTS // (KILLS + 2), 120, "more accepted")
            ingest.signal(signal.SIGSTOP)
            stops += 1
            time.sleep(3)
            ingest.signal(signal.SIGCONT)
            client.join(600)
            seconds = time.monotonic() - started
            assert ingest.terminate(60) == 0, ingest.log_tail()
        finally:
            ingest.kill()

    statuses = Counter(client.final)
    retried = sum(1 for a in client.attempts if a > 1)
    assert statuses == {200: EVENTS}, f"final statuses {statuses}"

    # Every 2xx is on the raw topic.
    raw = run(read_all(bootstrap, topics.raw, min_count=EVENTS, timeout=120, idle=2.0))
    markers_on_raw = Counter(m for r in raw for m in _markers(r.value or b""))
    expected = {m for i in workload.inputs for m in i.markers}
    missing = expected - markers_on_raw.keys()
    assert not missing, f"{len(missing)} accepted events are not on the raw topic, e.g. {sorted(missing)[:3]}"
    written_twice = len(raw) - EVENTS

    # The bridge: every event on its typed topic, the second copies suppressed by its window.
    with topics.bridge(bootstrap, tmp_path / "bridge.log") as bridge:
        bridge.wait_ready()
        wait_until(lambda: all_committed(bootstrap, topics.group, topics.raw), 300, "the raw topic consumed")
        suppressed = bridge.metric("canvas_bridge_duplicates_suppressed_total")
    report = check(workload, run(read_outputs(bootstrap, topics)), topics)
    print(report.line("ingest_sigkill", seconds, kills=kills, freezes=stops, retried_events=retried,
                      raw_records=len(raw), written_twice=written_twice, suppressed=int(suppressed)))
    report.assert_at_least_once()
    assert report.duplicates == 0, f"{report.duplicates} duplicates reached the typed topics"
    # Each event written twice (a copy per Caliper data event) was suppressed, not republished.
    assert written_twice >= 0 and suppressed >= written_twice


def _markers(value: bytes) -> list[str]:
    event = json.loads(value)
    if "metadata" in event:
        return [event["metadata"]["request_id"]]
    return [e["id"] for e in event.get("data", [])]


def test_sigterm_answers_what_is_in_flight_writes_every_200_and_exits_0(broker: object, tmp_path: Path) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    topics = Topics.create(bootstrap, "ingest-term", partitions=3)
    key = SigningKey("term-key")
    workload = make_workload(3000, garbage_every=0)
    tokens = [key.sign(canvas_claims(json.loads(i.value), ttl_s=3600)) for i in workload.inputs]
    answers: list[tuple[int, int]] = []  # (input index, status)
    lock = threading.Lock()
    with JwksServer([key]) as jwks:
        ingest = IngestProcess(bootstrap, topics.raw, tmp_path / "ingest.log", jwks.url,
                               BRIDGE_DELIVERY_DRAIN_TIMEOUT_S="10")
        with ingest:
            ingest.wait_ready()
            stop = threading.Event()

            def poster(worker: int) -> None:
                for i in range(worker, len(tokens), 8):
                    if stop.is_set():
                        return
                    status = post(ingest.port, "/events", tokens[i].encode(), timeout=15).status
                    with lock:
                        answers.append((i, status))
                    if status == 0:
                        return  # the port is closed: ingest is draining

            threads = [threading.Thread(target=poster, args=(w,), daemon=True) for w in range(8)]
            for t in threads:
                t.start()
            wait_until(lambda: sum(1 for _, s in answers if s == 200) >= 300, 60, "300 deliveries accepted")
            signalled = time.monotonic()
            ingest.signal(signal.SIGTERM)
            assert ingest.proc is not None
            code = ingest.proc.wait(30)
            drained_in = time.monotonic() - signalled
            stop.set()
            for t in threads:
                t.join(30)
    assert code == 0, ingest.log_tail()
    assert drained_in <= 10 + 1, f"drain took {drained_in:.1f}s, over delivery.drain_timeout_s"
    accepted = {i for i, s in answers if s == 200}
    assert {s for _, s in answers} <= {200, 0, 503}, Counter(s for _, s in answers)
    raw = run(read_all(bootstrap, topics.raw, min_count=len(accepted), timeout=60, idle=1.0))
    on_raw = {m for r in raw for m in _markers(r.value or b"")}
    missing = [i for i in accepted if not set(workload.inputs[i].markers) <= on_raw]
    assert not missing, f"{len(missing)} deliveries got 200 but are not on the raw topic"
    print(f"SIGTERM: {len(accepted)} accepted, drained in {drained_in:.2f}s, "
          f"answers {dict(Counter(s for _, s in answers))}")
