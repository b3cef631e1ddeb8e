"""SIGTERM under load: the bridge finishes and commits its in-flight batch, exits 0 in time, and
its committed offsets match what it published, so a restarted bridge reprocesses nothing."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable

import pytest

from tests.chaos._util import (
    BackgroundProducer,
    Topics,
    all_committed,
    check,
    committed_total,
    group_offsets,
    make_workload,
    read_outputs,
    wait_progress,
)
from tests.kafka_helpers import BridgeProcess, run, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

INPUTS = 6_000
RATE = 400.0  # inputs per second: a steady stream of ~15 s
DRAIN_TIMEOUT_S = 20
MARGIN_S = 5


@pytest.mark.timeout(150)
def test_graceful_drain_under_load(bootstrap: str, spawn: Callable[..., BridgeProcess]) -> None:
    started = time.monotonic()
    rnd = random.Random()
    workload = make_workload(INPUTS)
    topics = Topics.create(bootstrap, "drain", partitions=4)
    settings = {"BRIDGE_DELIVERY_BATCH_MAX_RECORDS": "500", "BRIDGE_DELIVERY_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S)}

    first = spawn(topics, "bridge-1", **settings)
    first.wait_ready()
    producer = BackgroundProducer(bootstrap, topics.raw, workload.values, RATE).start()
    try:
        wait_progress(first, 60)
        wait_until(lambda: committed_total(bootstrap, topics.group, topics.raw) >= 1000, 60,
                   "the first 1000 inputs committed")
        time.sleep(rnd.uniform(0.2, 1.5))  # the random SIGTERM moment (not a synchronization)
        assert not producer.done, "the stream ended before SIGTERM: raise INPUTS or lower RATE"
        in_flight = first.metric("canvas_bridge_records_in_flight")
        signalled = time.monotonic()
        first.signal(signal.SIGTERM)
        assert first.proc is not None
        code = first.proc.wait(DRAIN_TIMEOUT_S + MARGIN_S + 10)
        drain_s = time.monotonic() - signalled
        assert code == 0, f"exit {code} after SIGTERM:\n{first.log_tail()}"
        assert drain_s <= DRAIN_TIMEOUT_S + MARGIN_S, f"the drain took {drain_s:.1f}s"
        placed = producer.join(120)
    finally:
        producer.stop()
    assert len(placed) == INPUTS

    # What the first run committed, and what it published.
    committed = run(group_offsets(bootstrap, topics.group, topics.raw))
    outputs_1 = run(read_outputs(bootstrap, topics))
    report_1 = check(workload, outputs_1, topics)
    run1_records = {(o.topic, o.partition, o.offset) for o in outputs_1}
    marker_input = workload.marker_of_input()
    published_1 = {marker_input[m] for m in (*report_1.by_marker, *report_1.dlq_by_marker) if m in marker_input}
    committed_1 = {i for i, (p, off) in enumerate(placed) if off < committed.get(p, 0)}
    missing = [i for i in committed_1
               if not all(m in report_1.by_marker or m in report_1.dlq_by_marker for m in workload.inputs[i].markers)]
    beyond = sorted(published_1 - committed_1)
    assert not missing, f"{len(missing)} inputs committed by the first run have no (or not all) outputs: {missing[:5]}"
    assert not beyond, f"{len(beyond)} inputs published by the first run but not committed: {beyond[:5]}"

    # The second run finishes the stream and must not publish again what the first run did.
    second = spawn(topics, "bridge-2", **settings)
    second.wait_ready()
    wait_until(lambda: all_committed(bootstrap, topics.group, topics.raw), 120,
               "the second run to commit the end of every raw partition", interval=0.5)
    assert second.terminate(DRAIN_TIMEOUT_S + MARGIN_S) == 0, second.log_tail()

    outputs = run(read_outputs(bootstrap, topics))
    report = check(workload, outputs, topics)
    new = [o for o in outputs if (o.topic, o.partition, o.offset) not in run1_records]
    new_markers = {m for m, copies in (*report.by_marker.items(), *report.dlq_by_marker.items())
                   for o in copies if (o.topic, o.partition, o.offset) not in run1_records}
    reprocessed = sorted({marker_input[m] for m in new_markers if m in marker_input} & published_1)
    print()
    print(report.line("graceful_drain", time.monotonic() - started, drain_seconds=f"{drain_s:.1f}",
                      in_flight_at_sigterm=int(in_flight), first_run_inputs=len(published_1),
                      second_run_outputs=len(new), reprocessed=len(reprocessed)))
    assert not reprocessed, f"the second run republished {len(reprocessed)} inputs of the first: {reprocessed[:5]}"
    report.assert_exactly_once()
