"""The raw-topic writer every ingest path shares, against the real broker."""

from __future__ import annotations

import json

import anyio
import pytest
from aiokafka import TopicPartition

from bridge.config import load_config
from bridge.ingest.raw import raw_key
from bridge.ingest.writer import RawWriter, TooLarge, Unavailable
from tests.kafka_helpers import catalog_lines, create_topics, free_port, read_all, run, unique

pytestmark = pytest.mark.broker


async def _write_all(writer: RawWriter, values: list[bytes], **kwargs: object) -> list[BaseException | None]:
    """Start the writer, wait until it has reached the broker, write every value, stop."""
    results: list[BaseException | None] = []
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        with anyio.fail_after(30):
            await writer.wait_connected()
        for value in values:
            try:
                await writer.write(value, timeout_s=10, **kwargs)  # type: ignore[arg-type]
                results.append(None)
            except Exception as exc:
                results.append(exc)
        tg.cancel_scope.cancel()
    return results


def test_written_records_are_acknowledged_keyed_and_labelled(bootstrap: str, raw_topic: str) -> None:
    config = load_config(env={"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_RAW_TOPIC": raw_topic})
    values = [*catalog_lines()[:20], b"not json at all"]
    results = run(_write_all(RawWriter(config, "https"), values, signed=True, key_id="kid-7", received_ms=42))
    assert results == [None] * len(values)

    records = run(read_all(bootstrap, raw_topic, min_count=len(values)))
    assert sorted(r.value for r in records) == sorted(values)  # written as they came, garbage included
    for r in records:
        assert r.value is not None
        assert r.key == raw_key(r.value)
        assert r.headers == {"ingest_source": b"https", "ingest_signed": b"true", "ingest_key_id": b"kid-7",
                             "ingest_received_ms": b"42"}
    # Same key, same partition: a redelivery meets its first copy in the bridge's window.
    by_key: dict[bytes | None, set[int]] = {}
    for r in records:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())


def test_a_value_over_the_limit_is_refused_and_nothing_is_written(bootstrap: str, raw_topic: str) -> None:
    config = load_config(env={"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_RAW_TOPIC": raw_topic,
                              "BRIDGE_LIMITS_MAX_MESSAGE_BYTES": "1000"})
    big = json.dumps({"metadata": {"user_id": "1"}, "body": {"text": "x" * 1000}}).encode()
    small = json.dumps({"metadata": {"user_id": "1"}, "body": {}}).encode()
    results = run(_write_all(RawWriter(config, "sqs"), [big, small]))
    assert isinstance(results[0], TooLarge) and results[1] is None
    records = run(read_all(bootstrap, raw_topic, min_count=1))
    assert [r.value for r in records] == [small]


def test_without_a_broker_a_write_is_refused_at_once() -> None:
    config = load_config(env={"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    writer = RawWriter(config, "https")

    async def attempt() -> BaseException | None:
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run)
            try:
                await writer.write(b"{}", timeout_s=5)
            except Unavailable as exc:
                return exc
            finally:
                tg.cancel_scope.cancel()
        return None

    exc = run(attempt())
    assert isinstance(exc, Unavailable) and "Kafka" in str(exc)


def test_a_producer_refused_for_its_sequence_numbers_is_replaced(bootstrap: str) -> None:
    """aiokafka never resets an idempotent producer's sequence numbers: after a batch expired while
    the broker was down, every later write to that partition failed with OutOfOrderSequenceNumber
    (seen in the SQS broker-outage chaos test). The writer starts a new producer instead."""
    raw_topic = unique("raw")
    run(create_topics(bootstrap, [raw_topic], partitions=1))
    config = load_config(env={"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_RAW_TOPIC": raw_topic})
    writer = RawWriter(config, "sqs")
    value = json.dumps({"metadata": {"user_id": "1"}, "body": {}}).encode()

    async def scenario() -> tuple[str, int]:
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run)
            await writer.wait_connected()
            await writer.write(value, timeout_s=10)
            # The fault: a gap in this producer's sequence numbers, as an expired batch leaves.
            producer = writer._producer
            assert producer is not None
            producer._txn_manager.increment_sequence_number(TopicPartition(raw_topic, 0), 5)
            with pytest.raises(Unavailable) as refused:
                await writer.write(value, timeout_s=10)
            attempts = 0
            with anyio.fail_after(30):
                while True:  # each attempt is a real write; the replacement takes a moment
                    attempts += 1
                    try:
                        await writer.write(value, timeout_s=10)
                        break
                    except Unavailable:
                        await anyio.sleep(0.1)
            assert writer._producer is not producer
            tg.cancel_scope.cancel()
        return str(refused.value), attempts

    why, _attempts = run(scenario())
    assert "OutOfOrderSequenceNumber" in why
    records = run(read_all(bootstrap, raw_topic, min_count=2))
    assert [r.value for r in records] == [value, value]
