"""Records the bridge cannot publish as they are: they must not stall their partition forever, and
a drain that cannot finish ends with the documented exit code."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.chaos._util import (
    Topics,
    alive,
    all_committed,
    check,
    make_workload,
    poll_metric,
    read_outputs,
    wait_progress,
)
from tests.kafka_helpers import BridgeProcess, run, unique, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]


async def _create(bootstrap: str, name: str, partitions: int, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4_000_000)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


def _topics(name: str) -> Topics:
    base = unique(f"chaos-{name}")
    return Topics(raw=f"{base}.raw", group=f"{base}-group", prefix=f"{base}.", caliper_prefix=f"{base}.caliper.",
                  dlq=f"{base}.dlq")


@pytest.mark.timeout(90)
def test_oversized_input_does_not_stall_its_partition(bootstrap: str,
                                                      spawn: Callable[..., BridgeProcess]) -> None:
    started = time.monotonic()
    topics = _topics("oversized")
    # A raw topic that accepts what Canvas (or anyone) may put there: up to 4 MB per record.
    run(_create(bootstrap, topics.raw, 1, {"max.message.bytes": "4000000"}))
    workload = make_workload(20)
    oversized = b'{"metadata": {"padding": "' + b"x" * 1_500_000 + b'"}}'
    run(_produce(bootstrap, topics.raw, [oversized, *workload.values]))

    bridge = spawn(topics, "bridge", BRIDGE_DELIVERY_DRAIN_TIMEOUT_S="3")  # a stuck bridge stops quickly
    wait_progress(bridge, 60)  # not wait_ready: a stuck bridge is not ready, maybe before we look
    try:
        wait_until(lambda: alive(bridge) and all_committed(bootstrap, topics.group, topics.raw), 20,
                   "the partition to get past the oversized record")
    finally:
        retries = poll_metric(bridge, "canvas_bridge_publish_retries_total")
        ready = bridge.get("/readyz")
        print()
        print(f"CHAOS oversized_input: inputs={len(workload.inputs) + 1} publish_retries={retries} "
              f"readyz={ready[0]} {ready[1].strip()!r} seconds={time.monotonic() - started:.1f}")
    outputs = run(read_outputs(bootstrap, topics))
    # The oversized record carries no marker of the workload: check it on its own, below.
    report = check(workload, [o for o in outputs if o.value != oversized], topics)
    report.assert_at_least_once()
    dead = [o for o in outputs if o.topic == topics.dlq]
    assert [o for o in dead if o.value == oversized], "the oversized record is not in the DLQ with its original bytes"
    assert [o.headers["dlq_reason"] for o in dead if o.headers.get("dlq_reason") == b"too_large"], \
        "the oversized record is not dead-lettered as too_large"


@pytest.mark.timeout(60)
def test_drain_timeout_exits_3(bootstrap: str, spawn: Callable[..., BridgeProcess]) -> None:
    drain_timeout = 3
    topics = _topics("drain-timeout")
    run(_create(bootstrap, topics.raw, 1, {}))
    # The dead-letter topic refuses records over 1000 bytes: the batch can never be published.
    run(_create(bootstrap, topics.dlq, 1, {"max.message.bytes": "1000"}))
    run(_produce(bootstrap, topics.raw, [b"{not json " + b"x" * 3000]))
    # Quick retries: one fails right after the drain deadline, before the watchdog's 1 s of grace.
    bridge = spawn(topics, "bridge", BRIDGE_DELIVERY_DRAIN_TIMEOUT_S=str(drain_timeout),
                   BRIDGE_DELIVERY_RETRY_BACKOFF_INITIAL_S="0.1", BRIDGE_DELIVERY_RETRY_BACKOFF_MAX_S="0.2")
    wait_until(lambda: alive(bridge) and (poll_metric(bridge, "canvas_bridge_publish_retries_total") or 0) >= 1,
               30, "the batch to be retried")
    signalled = time.monotonic()
    bridge.signal(signal.SIGTERM)
    assert bridge.proc is not None
    code = bridge.proc.wait(drain_timeout + 15)
    seconds = time.monotonic() - signalled
    print()
    print(f"CHAOS drain_timeout: exit={code} seconds={seconds:.1f} drain_timeout_s={drain_timeout}")
    assert seconds <= drain_timeout + 5, f"the drain took {seconds:.1f}s"
    assert code == 3, f"exit {code} (3 expected: drain timed out):\n{bridge.log_tail(20)}"
