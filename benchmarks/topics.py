"""Kafka set-up for the end-to-end benchmark (never timed): topics, their warm-up, the raw
backlog, end offsets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.common import BenchError
from benchmarks.mix import PLACEHOLDER, partition_of


async def new_admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin", request_timeout_ms=60000)
    await admin.start()
    return admin


async def create_topics(admin: AIOKafkaAdminClient, topics: dict[str, int]) -> None:
    """Create topics (name -> partitions) and wait until the broker's metadata shows them all."""
    if not topics:
        return
    brokers = (await admin.describe_cluster()).get("brokers") or [None]
    rf = min(3, len(brokers))
    names = sorted(topics)
    for i in range(0, len(names), 200):
        chunk = names[i:i + 200]
        resp = await admin.create_topics([NewTopic(t, topics[t], rf) for t in chunk], timeout_ms=60000)
        for topic, code, *_ in resp.topic_errors:
            if code not in (0, 36):  # 36: already exists
                raise BenchError(f"creating topic {topic} failed with Kafka error code {code}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.2)
    raise BenchError("created topics did not appear in the metadata within 60 s")


WARM_ROUNDS = 3
WARM_RECORDS = 3
WARM_VALUE = b"benchmark warm-up " + b"." * 1500


async def warm_partitions(bootstrap: str, topics: dict[str, int]) -> list[float]:
    """Write ~14 kB to every partition of fresh output topics, in a few requests (untimed set-up).

    On the reference VM a fresh partition's first index entry (after ~4 kB of data) stalls
    the broker for ~10 ms per partition: a produce request that reaches that point on ~340
    partitions at once takes ~3 s. Real typed topics are long-lived, so this one-off cost is
    paid here, before any timing, for every drainer alike. Returns each round's seconds.
    """
    producer = producer_for(bootstrap)
    await producer.start()
    rounds = []
    try:
        await asyncio.gather(*(producer.partitions_for(t) for t in topics))
        for _ in range(WARM_ROUNDS):
            t0 = time.perf_counter()
            futures = []
            for topic, n in topics.items():
                for p in range(n):
                    b = producer.create_batch()
                    for _ in range(WARM_RECORDS):
                        b.append(key=None, value=WARM_VALUE, timestamp=None)
                    futures.append(await producer.send_batch(b, topic, partition=p))
            await asyncio.gather(*futures)
            rounds.append(round(time.perf_counter() - t0, 2))
    finally:
        await producer.stop()
    return rounds


def producer_for(bootstrap: str, linger_ms: int = 5) -> AIOKafkaProducer:
    """The benchmark's own producer (raw topics): acks=all.

    The paced producer of the latency phase uses ``linger_ms=0``: it hands over whole bursts as
    record batches already, so a linger would only add its delay to every measured latency.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id="bench-producer", acks="all", linger_ms=linger_ms,
        max_batch_size=1048576, max_request_size=2 * 1048576, request_timeout_ms=60000,
    )


async def produce_backlog(bootstrap: str, topic: str, n: int, templates: list[bytes], first_seq: int,
                          partitions: int) -> float:
    """Produce ``n`` distinct events to ``topic`` with the batch API; returns the seconds it took."""
    producer = producer_for(bootstrap)
    await producer.start()
    t_count = len(templates)
    started = time.perf_counter()
    try:
        builders = [producer.create_batch() for _ in range(partitions)]
        pending: list[asyncio.Future[Any]] = []
        for i in range(n):
            seq = first_seq + i
            p = partition_of(seq, t_count, partitions)
            value = templates[seq % t_count].replace(PLACEHOLDER, b"%d" % seq)
            b = builders[p]
            if b.append(key=None, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(b, topic, partition=p))
                b = builders[p] = producer.create_batch()
                if b.append(key=None, value=value, timestamp=None) is None:
                    raise BenchError("an event does not fit in an empty batch")
                if len(pending) >= 48:
                    await asyncio.gather(*pending[:24])
                    del pending[:24]
        for p, b in enumerate(builders):
            if b.record_count():
                pending.append(await producer.send_batch(b, topic, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


class Offsets:
    """End offsets of many partitions through one long-lived consumer (never assigned: no fetching)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-offsets",
                                          enable_auto_commit=False, request_timeout_ms=120000)
        self._known: set[str] = set()

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Also the readiness check after creating topics: a new partition answers
        NotLeaderForPartition until the broker has set it up, and aiokafka retries until it answers."""
        new = {tp.topic for tp in tps} - self._known
        client = self._consumer._client
        if new and hasattr(client, "add_topic"):
            # One metadata request for all of them; otherwise aiokafka learns them one by one.
            for topic in new:
                client.add_topic(topic)
            await client.force_metadata_update()
        self._known |= new
        out: dict[TopicPartition, int] = {}
        for i in range(0, len(tps), 1000):
            out.update(await self._consumer.end_offsets(tps[i:i + 1000]))
        return out

    def forget(self, topics: set[str]) -> None:
        """Stop tracking topics about to be deleted (else every metadata refresh logs an error)."""
        client = self._consumer._client
        self._known -= topics
        if hasattr(client, "set_topics"):
            client.set_topics(sorted(self._known))

    async def total(self, topics: dict[str, int]) -> int:
        return sum((await self.ends([TopicPartition(t, p) for t, n in topics.items() for p in range(n)])).values())


def raw_tps(topic: str, partitions: int) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(partitions)]


def broker_port(bootstrap: str) -> int:
    return int(bootstrap.split(",")[0].rsplit(":", 1)[1])
