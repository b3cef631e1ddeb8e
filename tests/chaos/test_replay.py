"""``canvas-bridge replay``: dead letters that decode under a new setting go back to their typed
topics (not chaos, but the other half of "nothing is lost")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.chaos._util import Topics, all_committed, now_text, read_outputs
from tests.kafka_helpers import (
    REPO,
    BridgeProcess,
    catalog_lines,
    create_topics,
    produce,
    read_all,
    run,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

NAIVE = 6


def _naive_events(tag: str) -> list[tuple[str, str, bytes]]:
    """(marker, event name, value) of Canvas events whose event_time has no offset."""
    out = []
    for line in catalog_lines():
        event = json.loads(line)
        t = event["metadata"].get("event_time", "")
        if not t.endswith("Z"):
            continue
        name = event["metadata"]["event_name"]
        if any(name == n for _, n, _ in out):
            continue
        marker = f"naive-{tag}-{len(out)}"
        event["metadata"]["request_id"] = marker
        # Now (the outputs' record timestamp: the broker's retention applies to it), without offset.
        event["metadata"]["event_time"] = now_text(naive=True)
        out.append((marker, name, json.dumps(event).encode()))
        if len(out) == NAIVE:
            return out
    raise AssertionError("not enough catalog samples")


def _replay(bridge: BridgeProcess, *args: str) -> dict:
    env = {**bridge.env, "BRIDGE_DECODE_NAIVE_TIMESTAMPS": "assume_utc"}
    done = subprocess.run([sys.executable, "-m", "bridge", "replay", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.timeout(90)
def test_replay_sends_fixed_dead_letters_back(bootstrap: str, spawn: Callable[..., BridgeProcess]) -> None:
    started = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    topics = Topics.create(bootstrap, "replay", partitions=2)
    naive = _naive_events(tag)
    garbage = [f'{{"metadata": {{"request_id": "garbage-{tag}-{n}"'.encode() for n in range(2)]
    run(produce(bootstrap, topics.raw, [v for _, _, v in naive] + garbage))

    bridge = spawn(topics, "bridge")
    wait_until(lambda: all_committed(bootstrap, topics.group, topics.raw), 60, "the raw topic processed",
               interval=0.3)
    assert bridge.terminate(30) == 0

    dead = [o for o in run(read_outputs(bootstrap, topics)) if o.topic == topics.dlq]
    reasons = sorted(o.headers["dlq_reason"].decode() for o in dead)
    assert reasons == ["invalid_json"] * 2 + ["naive_timestamp"] * NAIVE, reasons

    summary = _replay(bridge, "--dry-run")
    assert summary["dry_run"] is True
    assert summary["read"] == NAIVE + 2
    assert summary["recovered"] == NAIVE
    assert summary["records_would_publish"] == NAIVE
    assert summary["records_published"] == 0
    assert summary["still_dead"] == {"invalid_json": 2}
    typed = [o for o in run(read_outputs(bootstrap, topics)) if o.topic != topics.dlq]
    assert typed == [], "--dry-run published something"

    summary = _replay(bridge, "--reason", "naive_timestamp")
    assert summary["recovered"] == NAIVE and summary["records_published"] == NAIVE, summary
    assert summary["skipped_by_reason_filter"] == 2, summary
    outputs = run(read_outputs(bootstrap, topics))
    typed = [o for o in outputs if o.topic != topics.dlq]
    landed = {}
    for o in typed:
        value = json.loads(o.value)
        assert o.headers["dedupe_key"].decode() == value["dedupe_key"]
        landed[value["metadata"]["request_id"]] = (o.topic, value)
    assert len(typed) == NAIVE
    for marker, name, raw in naive:
        assert marker in landed, f"{marker} ({name}) not on its typed topic"
        topic, value = landed[marker]
        assert topic == topics.prefix + name
        assert value["event_time"].rstrip("Z")[:23] == json.loads(raw)["metadata"]["event_time"][:23]  # read as UTC
    # The dead letters stay where they were (replay reads; it does not delete).
    assert sum(1 for o in outputs if o.topic == topics.dlq) == NAIVE + 2
    print()
    print(f"CHAOS replay: inputs={NAIVE + 2} outputs={len(outputs)} lost=0 duplicates=0 "
          f"seconds={time.monotonic() - started:.1f} recovered={summary['recovered']}")


async def _dead_letters_with_aborted(bootstrap: str, topic: str, committed: list[bytes], aborted: list[bytes]) -> None:
    """Write ``committed`` in committed transactions and ``aborted`` in aborted ones, interleaved,
    as exactly-once bridges leave the dead-letter topic after a retried batch."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique("replay-dlq"), acks="all")
    await producer.start()
    try:
        half, split = len(committed) // 2, len(aborted) // 2
        for values, commit in ((committed[:half], True), (aborted[:split], False),
                               (committed[half:], True), (aborted[split:], False)):
            await producer.begin_transaction()
            futures = [await producer.send(topic, v, key=b"k%d" % n) for n, v in enumerate(values)]
            await asyncio.gather(*futures)  # on the log before the abort marker
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


@pytest.mark.timeout(120)
def test_replay_reads_committed_dead_letters_only(bootstrap: str) -> None:
    topics = Topics.create(bootstrap, "replay-aborted", partitions=1)
    run(create_topics(bootstrap, [topics.dlq], partitions=3))
    committed = [b'{"metadata": {"request_id": "committed-%d"' % n for n in range(10_000)]
    aborted = [b'{"metadata": {"request_id": "aborted-%d"' % n for n in range(100)]
    run(_dead_letters_with_aborted(bootstrap, topics.dlq, committed, aborted))
    on_log = run(read_all(bootstrap, topics.dlq, min_count=10_100, timeout=60))
    assert sum(1 for r in on_log if (r.value or b"").startswith(b'{"metadata": {"request_id": "aborted-')) == 100

    summary = _replay(topics.bridge(bootstrap, Path(os.devnull)), "--dry-run", "--from-topic", topics.dlq)
    assert summary["read"] == 10_000, summary
    assert summary["still_dead"] == {"invalid_json": 10_000}, summary
    print()
    print(f"CHAOS replay_aborted: dead_letters={len(on_log)} aborted=100 read={summary['read']}")
