"""The broker goes away mid-stream and comes back: the bridge says not ready meanwhile, resumes by
itself, and loses nothing.

One broker outage serves three bridges (each with its own topics and group), so the suite pays
for one restart:

- ``alo``: at-least-once, stopped mid-stream once its typed topics exist;
- ``eos``: exactly-once, the same (read back with read_committed: no duplicate either);
- ``creating``: at-least-once, stopped while the bridge is creating its typed topics.

This stops the session's shared broker: it is in its own module, and the broker is started again
whatever happens (try/finally).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.chaos._util import (
    BackgroundProducer,
    Report,
    Topics,
    Workload,
    all_committed,
    check,
    committed_total,
    log_lines,
    make_workload,
    produce_values,
    read_outputs,
    start_broker,
)
from tests.conftest import Broker
from tests.kafka_helpers import BridgeProcess, run, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

INPUTS = 3_000
RATE = 200.0  # a stream of ~15 s
CREATING_INPUTS = 1_000


class ReadyzPoller:
    """Polls /readyz in a thread and keeps every (time, status) it saw."""

    def __init__(self, bridge: BridgeProcess) -> None:
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()

        def poll() -> None:
            while not self._stop.is_set():
                asked = time.monotonic()
                status = bridge.get("/readyz", timeout=1.0)[0]
                self.seen.append((asked, status))
                self._stop.wait(0.2)

        self._thread = threading.Thread(target=poll, name="readyz-poller", daemon=True)
        self._thread.start()

    def first(self, status: int, since: float) -> float:
        """When ``status`` was first seen at or after ``since`` (a request is timed when it was sent).

        A request sent just before ``since`` may already get the new answer (``since`` is taken
        after the broker was stopped or restarted, and a request takes up to 1 s): that counts
        as ``since`` itself.
        """
        for t, s in list(self.seen):
            if s == status and t >= since - 1.5:
                return max(t, since)
        raise AssertionError(f"/readyz never answered {status} after {since:.1f}: {self.seen[-10:]}")

    def last(self) -> int:
        return self.seen[-1][1] if self.seen else 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Run:
    """One bridge through the outage, and what the test checks afterwards."""

    name: str
    topics: Topics
    workload: Workload
    bridge: BridgeProcess
    exactly_once: bool = False
    producer: BackgroundProducer | None = None
    poller: ReadyzPoller | None = None
    problems: list[str] = field(default_factory=list)
    exit_code: int | None = None
    report: Report | None = None
    not_ready_after: float | None = None
    ready_after_restart: float | None = None

    def alive(self) -> bool:
        assert self.bridge.proc is not None
        return self.bridge.proc.poll() is None

    def died(self) -> str:
        assert self.bridge.proc is not None
        return f"{self.name}: the bridge exited with {self.bridge.proc.returncode}:\n{self.bridge.log_tail(15)}"


@dataclass
class Outage:
    runs: dict[str, Run]
    stopped_at: float = 0.0
    restarted_at: float = 0.0
    start_refused: int = 0
    seconds: float = 0.0


def _until(run_: Run, condition, timeout: float, what: str) -> bool:  # type: ignore[no-untyped-def]
    """Wait for ``condition`` while the bridge lives; note a problem instead of raising."""
    try:
        wait_until(lambda: (not run_.alive()) or condition(), timeout, what, interval=0.2)
    except AssertionError as exc:
        run_.problems.append(f"{run_.name}: {exc}")
        return False
    if not run_.alive():
        run_.problems.append(run_.died())
        return False
    return True


@pytest.fixture(scope="module")
def outage(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    if not broker.controllable:
        pytest.skip("an external broker (KAFKA_BOOTSTRAP_SERVERS): it cannot be stopped by the tests")
    bootstrap = broker.bootstrap
    logs = tmp_path_factory.mktemp("broker-restart")
    started = time.monotonic()
    runs: dict[str, Run] = {}
    for name, eos in (("alo", False), ("eos", True)):
        topics = Topics.create(bootstrap, f"restart-{name}", partitions=4)
        settings = {"BRIDGE_DELIVERY_BATCH_MAX_RECORDS": "500"}
        if eos:
            settings |= {"BRIDGE_DELIVERY_GUARANTEE": "exactly-once", "BRIDGE_DELIVERY_REPLICA_ID": "restart-eos"}
        runs[name] = Run(name, topics, make_workload(INPUTS),
                         topics.bridge(bootstrap, logs / f"{name}.log", **settings), exactly_once=eos)
    topics = Topics.create(bootstrap, "restart-creating", partitions=1)
    # Small batches and 3 partitions per typed topic: it creates its ~115 topics for a while.
    runs["creating"] = Run("creating", topics, make_workload(CREATING_INPUTS),
                           topics.bridge(bootstrap, logs / "creating.log", BRIDGE_DELIVERY_BATCH_MAX_RECORDS="5",
                                         BRIDGE_TOPICS_PARTITIONS="3"))
    result = Outage(runs)
    broker_down = False
    try:
        run(produce_values(bootstrap, runs["creating"].topics.raw, runs["creating"].workload.values))
        streaming = [runs["alo"], runs["eos"]]
        for r in streaming:
            r.bridge.start()
        for r in streaming:
            r.bridge.wait_ready()
            r.poller = ReadyzPoller(r.bridge)
            r.producer = BackgroundProducer(bootstrap, r.topics.raw, r.workload.values, RATE).start()
        for r in streaming:  # mid-stream, once the typed topics exist (a first batch has all the event types)
            wait_until(lambda r=r: committed_total(bootstrap, r.topics.group, r.topics.raw) >= 500, 90,
                       f"{r.name}: 500 inputs committed")
            assert r.producer is not None and not r.producer.done, "the stream ended before the broker stopped"
        creating = runs["creating"]
        creating.bridge.start()
        creating.poller = ReadyzPoller(creating.bridge)
        # Stop once it is in its run of topic creations (one per small batch, every few tenths of a second).
        wait_until(lambda: len(log_lines(creating.bridge.log_path, lambda line: "bridge.kafka: created" in line)) >= 3,
                   60, "creating: its third batch of typed topics created")

        broker_down = True
        result.stopped_at = time.monotonic()
        broker.stop()
        for r in runs.values():
            assert r.poller is not None
            if _until(r, lambda r=r: r.poller.last() == 503, 30, "/readyz to answer 503 while the broker is down"):
                r.not_ready_after = r.poller.first(503, result.stopped_at) - result.stopped_at
        result.start_refused = start_broker(broker)
        broker_down = False
        result.restarted_at = time.monotonic()
        for r in runs.values():
            if r.alive() and _until(r, lambda r=r: r.poller.last() == 200, 120, "/readyz to answer 200 again"):
                r.ready_after_restart = r.poller.first(200, result.restarted_at) - result.restarted_at
        for r in streaming:
            assert r.producer is not None
            placed = r.producer.join(180)
            assert len(placed) == INPUTS
        for r in runs.values():
            if r.alive():
                _until(r, lambda r=r: all_committed(bootstrap, r.topics.group, r.topics.raw), 120,
                       "the end of every raw partition committed")
        for r in runs.values():
            if r.alive():
                r.exit_code = r.bridge.terminate(40)
                if r.exit_code != 0:
                    r.problems.append(f"{r.name}: exit {r.exit_code} after SIGTERM:\n{r.bridge.log_tail(15)}")
            else:
                r.exit_code = r.bridge.proc.returncode if r.bridge.proc else None
    finally:
        for r in runs.values():
            if r.poller is not None:
                r.poller.stop()
        if broker_down:
            start_broker(broker)
        for r in runs.values():
            if r.producer is not None:
                r.producer.stop()
            if r.bridge.proc is not None and r.bridge.proc.poll() is None:
                r.bridge.kill()
    for r in runs.values():
        r.report = check(r.workload, run(read_outputs(bootstrap, r.topics, read_committed=r.exactly_once)), r.topics)
    result.seconds = time.monotonic() - started
    yield result


def _summary(outage: Outage, r: Run, name: str) -> None:
    assert r.report is not None
    print()
    print(r.report.line(name, outage.seconds,
                        not_ready_after=f"{r.not_ready_after:.1f}" if r.not_ready_after is not None else "never",
                        broker_down_seconds=f"{outage.restarted_at - outage.stopped_at:.1f}",
                        ready_again_after_restart=(f"{r.ready_after_restart:.1f}" if r.ready_after_restart is not None
                                                   else "never"),
                        exit=r.exit_code, start_refused=outage.start_refused))


@pytest.mark.timeout(300)
def test_broker_restart_loses_nothing(outage: Outage) -> None:
    r = outage.runs["alo"]
    _summary(outage, r, "broker_restart")
    assert not r.problems, "\n".join(r.problems)
    assert r.report is not None
    r.report.assert_at_least_once()


@pytest.mark.timeout(300)
def test_broker_restart_exactly_once_loses_nothing(outage: Outage) -> None:
    r = outage.runs["eos"]
    _summary(outage, r, "broker_restart_exactly_once")
    assert not r.problems, "\n".join(r.problems)
    assert r.report is not None
    r.report.assert_exactly_once()


@pytest.mark.timeout(300)
def test_broker_stop_while_creating_topics_is_not_fatal(outage: Outage) -> None:
    r = outage.runs["creating"]
    _summary(outage, r, "broker_stop_while_creating_topics")
    assert not r.problems, "\n".join(r.problems)
    assert r.report is not None
    r.report.assert_at_least_once()
