"""SIGKILL the bridge at random moments while it works, restart it, let it drain: nothing is lost.

at-least-once: every valid input has an output (duplicates allowed, each with the dedupe key of
its first copy), every garbage input is in the DLQ with its original bytes.
Poison inputs (issue 17) are mixed in: events 3 hours ahead (decode.out_of_range_time = dead_letter)
and events of a type whose topic is missing (topics.create = false, every other topic created up
front): each is in the DLQ with its original bytes and its refusal reason, and nothing stalls.
exactly-once: the same, read with read_committed, and no duplicate at all (by marker, by key).
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable

import pytest

from bridge.events import CANVAS_EVENTS
from bridge.events.caliper import CALIPER_EVENTS
from tests.chaos._util import (
    BackgroundProducer,
    Topics,
    all_committed,
    check,
    committed_total,
    make_workload,
    read_outputs,
    wait_progress,
)
from tests.kafka_helpers import BridgeProcess, create_topics, run, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

INPUTS = 20_000
KILLS = 5
# The inputs arrive as a steady stream over ~40 s, about as long as the 5 kill-and-restart rounds
# take (a restarted replica waits ~6 s for the killed member's session to expire): the bridge has
# work at every kill, whether it is faster or slower than the stream on this machine.
RATE = 500.0
POISON_EVERY = 250  # 80 poison inputs: 40 ahead of time, 40 for a missing topic


def _kill_and_restart(name: str, bootstrap: str, spawn: Callable[..., BridgeProcess], *, exactly_once: bool) -> None:
    started = time.monotonic()
    rnd = random.Random()
    workload = make_workload(INPUTS, poison_every=POISON_EVERY)
    topics = Topics.create(bootstrap, name, partitions=4)
    run(create_topics(bootstrap, [topics.dlq, *(topics.prefix + n for n in CANVAS_EVENTS),
                                  *(topics.caliper_prefix + n for n in CALIPER_EVENTS)]))
    settings = {"BRIDGE_DELIVERY_BATCH_MAX_RECORDS": "500", "BRIDGE_TOPICS_CREATE": "false",
                "BRIDGE_DECODE_OUT_OF_RANGE_TIME": "dead_letter"}
    if exactly_once:
        settings |= {"BRIDGE_DELIVERY_GUARANTEE": "exactly-once", "BRIDGE_DELIVERY_REPLICA_ID": f"{name}-replica"}

    producer = BackgroundProducer(bootstrap, topics.raw, workload.values, RATE).start()
    kills: list[tuple[int, int, bool]] = []  # (committed, produced, stream still running) at each kill
    try:
        for n in range(KILLS):
            bridge = spawn(topics, f"bridge-{n}", **settings)
            wait_progress(bridge, 90)  # this incarnation consumed something
            if n % 2:  # every other one also committed something: kill moments spread beyond the first batch
                before = max(kills[-1][0], 0) if kills else 0
                wait_until(lambda b=before: committed_total(bootstrap, topics.group, topics.raw) > b, 90,
                           f"bridge-{n} to commit a batch")
            time.sleep(rnd.uniform(0.2, 1.5))  # the random kill moment (not a synchronization)
            streaming, produced = not producer.done, producer.produced
            bridge.signal(signal.SIGKILL)
            assert bridge.proc is not None
            assert bridge.proc.wait(10) == -signal.SIGKILL
            kills.append((committed_total(bootstrap, topics.group, topics.raw), produced, streaming))
        assert len(producer.join(120)) == INPUTS
    finally:
        producer.stop()

    final = spawn(topics, "bridge-final", **settings)
    final.wait_ready()
    wait_until(lambda: all_committed(bootstrap, topics.group, topics.raw), 240,
               "the last bridge to commit the end of every raw partition", interval=0.5)
    assert final.terminate(40) == 0, final.log_tail()

    outputs = run(read_outputs(bootstrap, topics, read_committed=exactly_once))
    report = check(workload, outputs, topics)
    extra: dict[str, object] = {}
    if exactly_once:
        # What the killed transactions left behind (aborted): visible to read_uncommitted only.
        extra["aborted_records"] = len(run(read_outputs(bootstrap, topics))) - len(outputs)
    print()
    print(report.line(name, time.monotonic() - started, kills=KILLS,
                      committed_at_kills="/".join(f"{c}of{p}" for c, p, _ in kills),
                      duplicate_keys=report.duplicate_keys, poison=len(workload.poison),
                      poison_in_dlq=len(workload.poison) - len(report.poison_missing), **extra))
    # Every kill hit a bridge with work left: inputs still arriving, or not all committed.
    assert all(streaming or c < INPUTS for c, _, streaming in kills), kills
    if exactly_once:
        report.assert_exactly_once()
    else:
        report.assert_at_least_once()


@pytest.mark.timeout(240)
def test_at_least_once_survives_repeated_sigkill(bootstrap: str, spawn: Callable[..., BridgeProcess]) -> None:
    _kill_and_restart("alo-kill", bootstrap, spawn, exactly_once=False)


@pytest.mark.timeout(240)
def test_exactly_once_survives_repeated_sigkill(bootstrap: str, spawn: Callable[..., BridgeProcess]) -> None:
    _kill_and_restart("eos-kill", bootstrap, spawn, exactly_once=True)
