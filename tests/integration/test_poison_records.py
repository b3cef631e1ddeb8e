"""Typed records the broker refuses must not stall their partition (issue 17), on the real broker
with its default timestamp settings (Kafka 4: message.timestamp.after.max.ms = 1 hour)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.kafka_helpers import (
    REPO,
    BridgeProcess,
    Record,
    catalog_lines,
    create_topics,
    produce,
    read_all,
    run,
    unique,
    wait_until,
)

pytestmark = pytest.mark.broker

SEED_NAME = "outcomes.retry_outcome_alignment_clone"
FUTURE_9999 = "9999-12-31T23:59:59.999Z"


def _seed() -> dict[str, object]:
    line = next(line for line in catalog_lines() if f'"{SEED_NAME}"'.encode() in line)
    return dict(json.loads(line))


def _event(marker: str, event_time: str) -> bytes:
    event = _seed()
    metadata = dict(event["metadata"])  # type: ignore[call-overload]
    metadata["request_id"] = marker
    metadata["event_time"] = event_time
    event["metadata"] = metadata
    return json.dumps(event).encode()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _workload(run_id: str) -> tuple[list[bytes], dict[str, str]]:
    """20 valid events (an hour ago) with one 3 hours ahead and one at year 9999 among them."""
    now = datetime.now(UTC)
    values, poison = [], {}
    for n in range(20):
        values.append(_event(f"{run_id}-ok-{n}", _iso(now - timedelta(hours=1))))
        if n == 5:
            poison[f"{run_id}-future"] = _iso(now + timedelta(hours=3))
            values.append(_event(f"{run_id}-future", poison[f"{run_id}-future"]))
        if n == 12:
            poison[f"{run_id}-9999"] = FUTURE_9999
            values.append(_event(f"{run_id}-9999", FUTURE_9999))
    return values, poison


def _marker(record: Record) -> str:
    return str(json.loads(record.value or b"{}")["metadata"]["request_id"])


def _topics(prefix: str) -> dict[str, str]:
    return {"BRIDGE_TOPICS_PREFIX": f"{prefix}.", "BRIDGE_TOPICS_DEAD_LETTER": f"{prefix}.dlq",
            "BRIDGE_TOPICS_CATCH_ALL": f"{prefix}.unknown"}


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_out_of_range_times_are_clamped_and_the_rest_flows(bootstrap: str, raw_topic: str, tmp_path: Path,
                                                           guarantee: str) -> None:
    run_id, prefix = uuid.uuid4().hex[:8], unique("poison")
    values, poison = _workload(run_id)
    typed = f"{prefix}.{SEED_NAME}"
    with BridgeProcess(bootstrap, raw_topic, unique("group"), tmp_path / "bridge.log",
                       BRIDGE_DELIVERY_GUARANTEE=guarantee, **_topics(prefix)) as bridge:
        bridge.wait_ready()
        produced = time.monotonic()
        run(produce(bootstrap, raw_topic, values))
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total", f'event_name="{SEED_NAME}"') >= 22,
                   30, "all 22 events published")
        seconds = time.monotonic() - produced
        print(f"\nPOISON clamp {guarantee}: 22 events (2 out of range) published in {seconds:.2f}s")
        assert seconds < 10
        assert bridge.metric("canvas_bridge_timestamps_clamped_total") == 2
        assert bridge.get("/readyz")[0] == 200
        records = run(read_all(bootstrap, typed, min_count=22, read_committed=True))
        assert bridge.terminate(30) == 0, bridge.log_tail()
    by_marker = {_marker(r): r for r in records}
    assert len(by_marker) == 22
    for marker, event_time in poison.items():
        record = by_marker[marker]
        value = json.loads(record.value or b"")
        assert value["event_time"] == event_time, "the value keeps the true event time"
        assert abs(record.timestamp - time.time() * 1000) < 120_000, "the Kafka timestamp is the processing time"
        assert int(record.headers["timestamp_clamped"]) == value["event_time_ms"]
    ok = [r for m, r in by_marker.items() if m not in poison]
    assert all("timestamp_clamped" not in r.headers for r in ok)
    assert all(r.timestamp == json.loads(r.value or b"")["event_time_ms"] for r in ok)


def test_out_of_range_times_dead_lettered_under_the_dead_letter_policy(bootstrap: str, raw_topic: str,
                                                                       tmp_path: Path) -> None:
    run_id, prefix = uuid.uuid4().hex[:8], unique("poison")
    values, poison = _workload(run_id)
    with BridgeProcess(bootstrap, raw_topic, unique("group"), tmp_path / "bridge.log",
                       BRIDGE_DECODE_OUT_OF_RANGE_TIME="dead_letter", **_topics(prefix)) as bridge:
        bridge.wait_ready()
        produced = time.monotonic()
        run(produce(bootstrap, raw_topic, values))
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total", f'event_name="{SEED_NAME}"') >= 20
                   and bridge.metric("canvas_bridge_refused_records_total") >= 2, 30, "20 published, 2 refused")
        seconds = time.monotonic() - produced
        print(f"\nPOISON dead_letter: 20 valid published, 2 dead-lettered in {seconds:.2f}s")
        assert seconds < 10
        assert bridge.metric("canvas_bridge_refused_records_total",
                             f'reason="timestamp_out_of_range",topic="{prefix}.{SEED_NAME}"') == 2
        assert bridge.get("/readyz")[0] == 200
        assert bridge.terminate(30) == 0, bridge.log_tail()
    dead = run(read_all(bootstrap, f"{prefix}.dlq", min_count=2))
    assert sorted(_marker(r) for r in dead) == sorted(poison)
    raw_values = {v for v in values}
    for record in dead:
        assert record.value in raw_values, "the original raw bytes"
        assert record.headers["dlq_reason"] == b"timestamp_out_of_range"
        assert record.headers["dlq_intended_topic"] == f"{prefix}.{SEED_NAME}".encode()
        assert record.headers["dlq_source_topic"] == raw_topic.encode()
    # replay sends them back, with the replay time as Kafka timestamp (the broker's default range).
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update({"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, **_topics(prefix)})
    out = subprocess.run([sys.executable, "-m", "bridge", "replay", "--reason", "timestamp_out_of_range"], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["recovered"] == 2
    typed = run(read_all(bootstrap, f"{prefix}.{SEED_NAME}", min_count=22))
    replayed = [r for r in typed if _marker(r) in poison]
    assert sorted(_marker(r) for r in replayed) == sorted(poison)
    assert all("timestamp_clamped" in r.headers for r in replayed)


async def _set_after_max_ms(bootstrap: str, topic: str, value: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                  {"message.timestamp.after.max.ms": value})])
    finally:
        await admin.close()


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_refusal_the_screen_did_not_foresee_is_rerouted(bootstrap: str, raw_topic: str, tmp_path: Path,
                                                          guarantee: str) -> None:
    """The topic's range shrinks after the bridge read it: the broker refuses a batch, the bridge
    finds the refused records (a batch of one each) and dead-letters them; the rest is published."""
    run_id, prefix = uuid.uuid4().hex[:8], unique("poison")
    typed = f"{prefix}.{SEED_NAME}"
    run(create_topics(bootstrap, [typed], partitions=1))
    now = datetime.now(UTC)
    first = [_event(f"{run_id}-warm", _iso(now - timedelta(hours=1)))]
    ahead = _iso(now + timedelta(minutes=20))  # in the 1 h range the bridge read; not after the change
    values = [_event(f"{run_id}-ok-{n}", _iso(now - timedelta(hours=1))) for n in range(10)]
    values[3:3] = [_event(f"{run_id}-ahead-a", ahead)]
    values[8:8] = [_event(f"{run_id}-ahead-b", ahead)]
    with BridgeProcess(bootstrap, raw_topic, unique("group"), tmp_path / "bridge.log",
                       BRIDGE_DELIVERY_GUARANTEE=guarantee, BRIDGE_DECODE_OUT_OF_RANGE_TIME="dead_letter",
                       BRIDGE_RAW_TOPIC=raw_topic, **_topics(prefix)) as bridge:
        bridge.wait_ready()
        run(produce(bootstrap, raw_topic, first, partition=0))
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total", f'event_name="{SEED_NAME}"') >= 1,
                   30, "the first event published (the topic's settings read)")
        run(_set_after_max_ms(bootstrap, typed, "60000"))
        produced = time.monotonic()
        run(produce(bootstrap, raw_topic, values, partition=0))  # one raw partition: one batch
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total", f'event_name="{SEED_NAME}"') >= 11
                   and bridge.metric("canvas_bridge_refused_records_total") >= 2, 60, "10 published, 2 refused")
        seconds = time.monotonic() - produced
        print(f"\nPOISON post-send refusal {guarantee}: 10 valid published, 2 dead-lettered in {seconds:.2f}s")
        assert bridge.get("/readyz")[0] == 200
        assert bridge.terminate(30) == 0, bridge.log_tail()
    records = run(read_all(bootstrap, typed, min_count=11, read_committed=True))
    assert {_marker(r) for r in records} == {f"{run_id}-warm", *(f"{run_id}-ok-{n}" for n in range(10))}
    dead = run(read_all(bootstrap, f"{prefix}.dlq", min_count=2, read_committed=True))
    assert sorted(_marker(r) for r in dead) == [f"{run_id}-ahead-a", f"{run_id}-ahead-b"]
    assert all(r.headers["dlq_reason"] == b"timestamp_out_of_range" for r in dead)


async def _create_compacted(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_records_a_compacted_topic_refuses_are_found_and_dead_lettered(bootstrap: str, raw_topic: str,
                                                                       tmp_path: Path, guarantee: str) -> None:
    """Nothing in the topic's settings foretells INVALID_RECORD (a null key on a compacted topic):
    the broker refuses the batch, each of its records is sent alone, the refused ones dead-lettered."""
    run_id, prefix = uuid.uuid4().hex[:8], unique("poison")
    typed = f"{prefix}.{SEED_NAME}"
    run(_create_compacted(bootstrap, typed))
    now = _iso(datetime.now(UTC) - timedelta(minutes=5))
    values = [_event(f"{run_id}-{n}", now) for n in range(12)]
    keys: list[bytes | None] = [f"k{n}".encode() for n in range(12)]
    keys[2] = keys[9] = None  # topics.key = source: the raw key, none here
    with BridgeProcess(bootstrap, raw_topic, unique("group"), tmp_path / "bridge.log",
                       BRIDGE_DELIVERY_GUARANTEE=guarantee, BRIDGE_TOPICS_KEY="source", **_topics(prefix)) as bridge:
        bridge.wait_ready()
        produced = time.monotonic()
        run(produce(bootstrap, raw_topic, values, keys=keys, partition=0))
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total", f'event_name="{SEED_NAME}"') >= 10
                   and bridge.metric("canvas_bridge_refused_records_total") >= 2, 60, "10 published, 2 refused")
        seconds = time.monotonic() - produced
        print(f"\nPOISON invalid record {guarantee}: 10 published, 2 dead-lettered in {seconds:.2f}s")
        assert bridge.metric("canvas_bridge_refused_records_total", 'reason="record_refused"') == 2
        assert bridge.get("/readyz")[0] == 200
        assert bridge.terminate(30) == 0, bridge.log_tail()
    records = run(read_all(bootstrap, typed, min_count=10, read_committed=True))
    markers = sorted(_marker(r) for r in records)
    if guarantee == "at-least-once":  # the attempt after a refusal may publish a record again (same dedupe key)
        markers = sorted(set(markers))
    assert markers == sorted(f"{run_id}-{n}" for n in range(12) if n not in (2, 9))
    dead = run(read_all(bootstrap, f"{prefix}.dlq", min_count=2, read_committed=True))
    assert sorted(_marker(r) for r in dead) == [f"{run_id}-2", f"{run_id}-9"]
    assert {r.value for r in dead} == {values[2], values[9]}
    assert all(r.headers["dlq_reason"] == b"record_refused" and r.headers["dlq_intended_topic"] == typed.encode()
               for r in dead)
