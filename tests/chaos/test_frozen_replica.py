"""Two replicas share the raw partitions; one is frozen (SIGSTOP) past its session timeout in the
middle of a backlog, then continued (SIGCONT): a zombie, as after a long GC pause or a VM stall.

While it is frozen, the group gives its partitions to the other replica. When it wakes up, it
still holds the batch it was working on. It must not commit it (exactly-once: the partitions'
transactional producers were re-initialized by their new owner, which fences the zombie's), and
it must rejoin the group and go on working, not exit.

exactly-once: a read_committed consumer sees every input exactly once (0 lost, 0 duplicates).
at-least-once: 0 lost; duplicates allowed, each with the dedupe key of its first copy.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.chaos._util import (
    Topics,
    alive,
    all_committed,
    check,
    committed_total,
    make_workload,
    poll_metric,
    produce_backlog,
    read_outputs,
)
from tests.kafka_helpers import BridgeProcess, run, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

PARTITIONS = 6
# Freezes longer than the session timeout (10 s here, 30 s by default): the group evicts the frozen
# member and hands its partitions to the other replica before it wakes up.
SESSION_TIMEOUT_MS = 10_000
ASSIGNED = "canvas_bridge_assigned_partitions"
CONSUMED = "canvas_bridge_events_consumed_total"
FENCED = "canvas_bridge_producers_fenced_total"
REBALANCES = "canvas_bridge_rebalances_total"


def _freeze_one_replica(name: str, bootstrap: str, spawn: Callable[..., BridgeProcess], *, inputs: int,
                        freeze_s: float, exactly_once: bool) -> None:
    started = time.monotonic()
    workload = make_workload(inputs)
    topics = Topics.create(bootstrap, name, partitions=PARTITIONS)
    assert run(produce_backlog(bootstrap, topics.raw, workload.values)) == inputs
    produced_s = time.monotonic() - started
    settings = {"BRIDGE_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)}
    if exactly_once:
        settings["BRIDGE_DELIVERY_GUARANTEE"] = "exactly-once"
    zombie = spawn(topics, "r1", BRIDGE_DELIVERY_REPLICA_ID="r1", **settings)
    survivor = spawn(topics, "r2", BRIDGE_DELIVERY_REPLICA_ID="r2", **settings)

    def shared() -> bool:
        counts = [poll_metric(b, ASSIGNED) for b in (zombie, survivor)]
        return alive(zombie) and alive(survivor) and all(c for c in counts) and sum(counts) == PARTITIONS  # type: ignore[misc]
    wait_until(shared, 90, "both replicas to own some of the 6 partitions")
    split = f"{poll_metric(zombie, ASSIGNED):.0f}/{poll_metric(survivor, ASSIGNED):.0f}"
    # The zombie is working on its partitions: it consumed more since it got them.
    seen = poll_metric(zombie, CONSUMED) or 0.0
    wait_until(lambda: (poll_metric(zombie, CONSUMED) or 0.0) > seen, 60, "the zombie to consume a batch",
               interval=0.02)
    joined = poll_metric(zombie, REBALANCES, 'change="assigned"') or 0.0
    zombie.signal(signal.SIGSTOP)
    frozen = time.monotonic()
    committed_at_freeze = committed_total(bootstrap, topics.group, topics.raw)
    assert 0 <= committed_at_freeze < inputs, "the backlog was done before the freeze: raise the inputs"

    # The zombie stays frozen until the survivor owns its partitions and freeze_s has passed.
    wait_until(lambda: alive(survivor) and poll_metric(survivor, ASSIGNED) == PARTITIONS, 90,
               "the survivor to take over all 6 partitions while the zombie is frozen", interval=0.2)
    takeover_s = time.monotonic() - frozen
    time.sleep(max(0.0, freeze_s - (time.monotonic() - frozen)))  # the scenario's freeze, not a synchronization
    zombie.signal(signal.SIGCONT)
    woke = time.monotonic()
    def rejoined() -> bool:
        return (alive(zombie) and (poll_metric(zombie, REBALANCES, 'change="assigned"') or 0.0) > joined
                and (poll_metric(zombie, ASSIGNED) or 0) > 0)
    wait_until(rejoined, 90, "the zombie to rejoin the group and own partitions again", interval=0.2)
    rejoin_s = time.monotonic() - woke
    wait_until(lambda: alive(zombie) and alive(survivor) and all_committed(bootstrap, topics.group, topics.raw),
               240, "the replicas to commit the end of every raw partition", interval=0.5)
    recovered_s = time.monotonic() - woke
    fenced = zombie.metric(FENCED)
    assert zombie.terminate(40) == 0, zombie.log_tail()
    assert survivor.terminate(40) == 0, survivor.log_tail()

    outputs = run(read_outputs(bootstrap, topics, read_committed=exactly_once, timeout=240))
    report = check(workload, outputs, topics)
    print()
    print(report.line(name, time.monotonic() - started, split=split, freeze_s=f"{freeze_s:.0f}",
                      committed_at_freeze=committed_at_freeze, takeover_s=f"{takeover_s:.1f}",
                      rejoin_s=f"{rejoin_s:.1f}", recovered_s=f"{recovered_s:.1f}", fenced=f"{fenced:.0f}",
                      duplicate_keys=report.duplicate_keys, produce_s=f"{produced_s:.1f}"))
    if exactly_once:
        report.assert_exactly_once()
    else:
        report.assert_at_least_once()


@pytest.mark.timeout(420)
def test_exactly_once_fences_a_frozen_replica(bootstrap: str, spawn: Callable[..., BridgeProcess]) -> None:
    _freeze_one_replica("eos-frozen", bootstrap, spawn, inputs=300_000, freeze_s=32.0, exactly_once=True)


@pytest.mark.timeout(300)
def test_at_least_once_survives_a_frozen_replica(bootstrap: str, spawn: Callable[..., BridgeProcess]) -> None:
    _freeze_one_replica("alo-frozen", bootstrap, spawn, inputs=100_000, freeze_s=16.0, exactly_once=False)
