"""Two replicas share the raw partitions; SIGKILL one mid-stream: the other takes them all over
and nothing is lost."""

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
    make_workload,
    poll_metric,
    read_outputs,
    wait_progress,
)
from tests.kafka_helpers import BridgeProcess, run, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

PARTITIONS = 8
INPUTS = 5_000
RATE = 500.0
ASSIGNED = "canvas_bridge_assigned_partitions"


@pytest.mark.timeout(150)
def test_replica_failure_loses_nothing(bootstrap: str, spawn: Callable[..., BridgeProcess]) -> None:
    started = time.monotonic()
    rnd = random.Random()
    workload = make_workload(INPUTS)
    topics = Topics.create(bootstrap, "replicas", partitions=PARTITIONS)
    settings = {"BRIDGE_DELIVERY_BATCH_MAX_RECORDS": "500"}
    replicas = [spawn(topics, f"replica-{n}", BRIDGE_DELIVERY_REPLICA_ID=f"replica-{n}", **settings) for n in (1, 2)]
    for bridge in replicas:
        bridge.wait_ready()

    def shared() -> bool:
        counts = [poll_metric(b, ASSIGNED) for b in replicas]
        return all(c is not None and c > 0 for c in counts) and sum(counts) == PARTITIONS  # type: ignore[arg-type]
    wait_until(shared, 60, "both replicas to own some of the 8 partitions")
    split = [int(poll_metric(b, ASSIGNED) or 0) for b in replicas]

    producer = BackgroundProducer(bootstrap, topics.raw, workload.values, RATE).start()
    try:
        for bridge in replicas:
            wait_progress(bridge, 60)  # each one is working on its partitions
        time.sleep(rnd.uniform(0.2, 1.5))  # the random kill moment (not a synchronization)
        assert not producer.done, "the stream ended before the kill: raise INPUTS or lower RATE"
        victim, survivor = rnd.sample(replicas, 2)
        victim.signal(signal.SIGKILL)
        assert victim.proc is not None and victim.proc.wait(10) == -signal.SIGKILL
        killed = time.monotonic()
        wait_until(lambda: poll_metric(survivor, ASSIGNED) == PARTITIONS, 60,
                   "the survivor to take over all 8 partitions")
        takeover_s = time.monotonic() - killed
        placed = producer.join(120)
    finally:
        producer.stop()
    assert len(placed) == INPUTS

    wait_until(lambda: all_committed(bootstrap, topics.group, topics.raw), 120,
               "the survivor to commit the end of every raw partition", interval=0.5)
    assert survivor.terminate(40) == 0, survivor.log_tail()

    outputs = run(read_outputs(bootstrap, topics))
    report = check(workload, outputs, topics)
    print()
    print(report.line("replica_failure", time.monotonic() - started, split="/".join(map(str, split)),
                      takeover_seconds=f"{takeover_s:.1f}"))
    report.assert_at_least_once()
