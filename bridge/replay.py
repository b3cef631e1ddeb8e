"""``canvas-bridge replay``: send dead letters back through the core.

After an upgrade that teaches the bridge a new event type or a new quirk, the dead letters
that now decode can be published to their typed topics. Reads the dead-letter topic from the
beginning to its current end (no consumer group, nothing committed). Events that still cannot
be decoded are counted and left where they are. ``--dry-run`` publishes nothing. An event time
outside the broker's default timestamp range (an hour ahead) is sent with the time of replay as
its Kafka timestamp and the header ``timestamp_clamped``, as the bridge does by default.

Only committed records are read (``read_committed``): exactly-once bridges write dead letters
inside transactions, and an aborted attempt leaves aborted records on the topic that were never
dead-lettered for real.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bridge.config import Config
from bridge.core import (
    H_REASON,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    Core,
    Publish,
    Source,
    now_ms,
)
from bridge.kafka import security_kwargs
from bridge.refusals import H_TIMESTAMP_CLAMPED, TopicLimits


def _header(headers: object, name: str) -> str | None:
    for key, value in headers or ():  # type: ignore[attr-defined]
        if key == name:
            return bytes(value).decode("utf-8", "replace")
    return None


async def replay(config: Config, from_topic: str | None, *, dry_run: bool, reason: str | None, limit: int) -> int:
    topic = from_topic or config.topics.dead_letter
    core = Core.from_config(config)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap_servers, enable_auto_commit=False, group_id=None,
        isolation_level="read_committed", **security_kwargs(config),
    )
    producer = None if dry_run else AIOKafkaProducer(
        bootstrap_servers=config.kafka.bootstrap_servers, acks="all", enable_idempotence=True,
        **security_kwargs(config),
    )
    await consumer.start()
    if producer is not None:
        await producer.start()
    counts: Counter[str] = Counter()
    still: Counter[str] = Counter()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # the topic's partitions
        parts = cluster.partitions_for_topic(topic)
        if not parts:
            print(f"replay: topic {topic} does not exist or has no partitions", file=sys.stderr)
            return 2
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        futures = []
        while remaining and not (limit and counts["read"] >= limit):
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset >= ends[tp]:
                        remaining.discard(tp)
                        break
                    if limit and counts["read"] >= limit:
                        break
                    if reason and _header(m.headers, H_REASON) != reason:
                        counts["skipped"] += 1
                        continue
                    counts["read"] += 1
                    source = Source(
                        _header(m.headers, H_SOURCE_TOPIC) or topic,
                        int(_header(m.headers, H_SOURCE_PARTITION) or tp.partition),
                        int(_header(m.headers, H_SOURCE_OFFSET) or m.offset),
                        m.key,
                    )
                    outs = core.process(m.value, source, now_ms())
                    if not all(isinstance(o, Publish) for o in outs):
                        still[outs[0].reason] += 1  # type: ignore[union-attr]
                        continue
                    counts["recovered"] += 1
                    counts["records"] += len(outs)
                    if producer is not None:
                        lo, hi = TopicLimits().bounds(now_ms())  # the broker's default range
                        for o in outs:
                            assert isinstance(o, Publish)
                            ts, headers = o.timestamp_ms, list(o.headers)
                            if not lo <= ts <= hi:  # as decode.out_of_range_time = clamp (docs/poison-records.md)
                                ts, headers = now_ms(), [*headers, (H_TIMESTAMP_CLAMPED, str(ts).encode())]
                            futures.append(await producer.send(o.topic, o.value, key=o.key, timestamp_ms=ts,
                                                               headers=headers))
                if (await consumer.position(tp)) >= ends[tp]:
                    remaining.discard(tp)
        for f in futures:
            await f
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    summary = {
        "topic": topic,
        "dry_run": dry_run,
        "read": counts["read"],
        "recovered": counts["recovered"],
        "records_published": 0 if dry_run else counts["records"],
        "records_would_publish": counts["records"] if dry_run else 0,
        "still_dead": dict(still),
        "skipped_by_reason_filter": counts["skipped"],
    }
    print(json.dumps(summary, indent=2))
    return 0
