"""Sending a batch's outputs: screened first (bridge/refusals.py), partitioned like the Java
client, one produce batch per (topic, partition); and reading the broker's answers."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kerr
from aiokafka.partitioner import murmur2

from bridge import metrics
from bridge.config import Config
from bridge.core import Output, Publish, now_ms
from bridge.delivery.batch import Batch
from bridge.errors import Fatal
from bridge.kafka import TopicCreator
from bridge.refusals import Screen
from bridge.topicinfo import TopicInfo

log = logging.getLogger("bridge.delivery")

#: After these, an idempotent producer never writes that partition again: aiokafka, unlike the Java
#: client, does not reset its sequence numbers after a refused batch (a gap). A new producer is used.
BROKEN_PRODUCER: tuple[type[BaseException], ...] = (kerr.OutOfOrderSequenceNumber, kerr.UnknownProducerId)

#: A produce error that may mean the topic was deleted: the next attempt reads the topic's state
#: again (bridge/topicinfo.py), so that it is created again (``topics.create``) or its records
#: follow ``topics.missing``, instead of being retried until the 10-minute refresh.
TOPIC_GONE: tuple[type[BaseException], ...] = (kerr.UnknownTopicOrPartitionError, kerr.NotLeaderForPartitionError)

Sent = tuple[list[asyncio.Future[Any]], list[list[Output]]]


class RecordsRefused(Exception):
    """The broker refused records of the attempt; what it taught is in the ``Screen``: send again."""


class TopicNotVisible(kerr.KafkaError):  # type: ignore[misc]
    """Retriable: an output topic the bridge created (or another replica did) is not in the
    broker's metadata yet."""


class AcksTimedOut(kerr.KafkaTimeoutError):  # type: ignore[misc]
    """Retriable: some records of an attempt were not acknowledged in time."""


class Partitioner:
    """The Java client's default partitioning (murmur2 of the key), with a bounded memo.

    Records without a key stick to one partition per batch and topic, rotating between
    batches (like Kafka's sticky partitioner).
    """

    _MEMO_MAX = 200_000

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._memo: dict[tuple[str, bytes], int] = {}
        self._sticky: dict[str, int] = {}
        self._turn = 0

    async def prepare(self, producer: AIOKafkaProducer, topics: set[str]) -> None:
        """Learn the partition count of topics not seen yet (one metadata wait each)."""
        for topic in topics - self._counts.keys():
            self._counts[topic] = len(await producer.partitions_for(topic))

    def partition(self, topic: str, key: bytes | None) -> int:
        n = self._counts[topic]
        if key is None:
            p = self._sticky.get(topic)
            if p is None:
                self._turn += 1
                p = self._sticky[topic] = self._turn % n
            return p
        memo_key = (topic, key)
        p = self._memo.get(memo_key)
        if p is None:
            if len(self._memo) >= self._MEMO_MAX:
                self._memo.clear()
            p = self._memo[memo_key] = (murmur2(key) & 0x7FFFFFFF) % n
        return p

    def next_batch(self) -> None:
        """Unkeyed records move to another partition with each batch."""
        self._sticky.clear()


class Publisher:
    """Screens, sends and reads the acknowledgements of outputs, with whichever producer it is given."""

    def __init__(self, config: Config, topics: TopicCreator | None = None, info: TopicInfo | None = None,
                 catalog_topics: frozenset[str] = frozenset()) -> None:
        self.screen = Screen(dead_letter_topic=config.topics.dead_letter, catch_all_topic=config.topics.catch_all,
                             out_of_range=config.decode.out_of_range_time, missing=config.topics.missing,
                             catalog_topics=catalog_topics)
        self._topics = topics
        self._info = info
        self.partitioner = Partitioner()
        self._topics_seen: set[str] = set()  # output topics, for the producers' metadata
        self._narrowed: weakref.WeakSet[AIOKafkaProducer] = weakref.WeakSet()  # tracking _topics_seen

    async def attempt(self, batch: Batch, sends: list[Output], producer: AIOKafkaProducer) -> Sent:
        """Screen the outputs (in place: bridge/refusals.py), then send them."""
        if not sends:
            return [], []
        topics = {out.topic for out in sends}
        if self._topics is not None:
            await self._topics.ensure(topics)
        if self._info is not None:
            await self._info.learn(topics)
            self._check_visible(topics)
        reroute: dict[int, tuple[str, str]] = {}
        clamped = self.screen.clamped
        info = self._info
        failing = self.screen.apply(sends, info.limits if info is not None else {}, now_ms(), reroute,
                                    info.version if info is not None else -1)
        if failing:
            raise Fatal(f"topic {failing[0]} is missing or may not be written (topics.missing = fail, "
                        f"env BRIDGE_TOPICS_MISSING); create it or grant the ACL")
        if self.screen.clamped != clamped:
            metrics.TIMESTAMPS_CLAMPED.inc(self.screen.clamped - clamped)
        if reroute:
            self._reroute(batch, sends, reroute)
            topics = {out.topic for out in sends}
        return await self.send(sends, producer, topics)

    def _check_visible(self, topics: set[str]) -> None:
        """A typed topic the bridge creates but the broker does not show yet is waited for (a
        retriable error: the batch is sent again after a backoff), never dead-lettered as missing."""
        assert self._info is not None
        if self._topics is None:
            return
        limits = self._info.limits
        waiting = sorted(t for t in topics if t in limits and not limits[t].exists and self._topics.creating(t))
        if waiting:
            for topic in waiting:
                self._info.forget(topic)
            raise TopicNotVisible(f"{len(waiting)} output topics were created but the broker does not show "
                                  f"them yet: {', '.join(waiting[:5])}")

    def _reroute(self, batch: Batch, sends: list[Output], reroute: dict[int, tuple[str, str]]) -> None:
        """Replace the screened-out records of ``sends`` with their dead letters (or catch-all records)."""
        limits = self._info.limits if self._info is not None else {}
        self.screen.reroute(batch.outputs, batch.inputs, sends, reroute, limits, now_ms())
        log.warning("rerouted %d typed records the broker refuses (or would), e.g. for %s: %s",
                    len(reroute), sends[min(reroute)].headers[-1][1].decode(), reroute[min(reroute)][1])

    async def acknowledged(self, futures: list[asyncio.Future[Any]], groups: list[list[Output]],
                           within: float | None = None) -> None:
        """Wait for every future (all settled: no unretrieved errors). Records the broker refused
        are learnt by the screen (``RecordsRefused``); other failures raise the first one.

        ``within`` seconds: a future still pending then raises ``AcksTimedOut`` (retriable), and its topic's
        state is read again. aiokafka's own expiry does not cover a transaction: it retries adding
        a deleted topic's partition to the transaction for ever, and the partition would wait.
        """
        if within is not None and futures:
            _, pending = await asyncio.wait(futures, timeout=within)
            if pending:
                topics = sorted({outs[0].topic for f, outs in zip(futures, groups, strict=True)
                                 if f in pending and outs})
                for f in futures:
                    f.add_done_callback(_seen)
                if self._info is not None:
                    for topic in topics:
                        self._info.forget(topic)
                raise AcksTimedOut(f"no acknowledgement within {within:.0f}s for records of {len(topics)} "
                                   f"topics (deleted?): {', '.join(topics[:5])}")
        results = await asyncio.gather(*futures, return_exceptions=True)
        first, refused = self.screen.learn_results(results, groups)
        if self._info is not None and first is not None:
            for result, outs in zip(results, groups, strict=True):
                if isinstance(result, TOPIC_GONE) and outs:  # deleted? read its state again
                    self._info.forget(outs[0].topic)
        if refused:  # progress: the next attempt reroutes them (other failures are retried with it)
            if self._info is not None:
                for topic in refused:
                    self._info.forget(topic)  # its settings may have changed: read them again
            raise RecordsRefused(f"the broker refused produce batches: {', '.join(refused.values())}")
        if first is not None:
            raise first

    async def send(self, sends: list[Output], producer: AIOKafkaProducer, topics: set[str] | None = None) -> Sent:
        """Send every output as record batches per partition; returns their delivery futures,
        with the outputs of each.

        One ``send_batch`` per (topic, partition) run instead of one ``send`` coroutine per
        record; partitions are chosen like the Java client (murmur2 of the key), so keyed
        records land where any Kafka client would put them. Input order is kept per partition,
        except for suspects of an earlier refusal: each is sent in a batch of its own after the rest.
        """
        if not sends:
            return [], []
        if topics is None:
            topics = {out.topic for out in sends}
        await self._learn_topics(producer, topics)
        partitioner = self.partitioner
        await partitioner.prepare(producer, topics)
        groups: dict[tuple[str, int, int], list[Output]] = {}
        screen = self.screen
        for n, out in enumerate(sends):
            partition = partitioner.partition(out.topic, out.key)
            key = (out.topic, partition, n + 1 if screen.suspects and screen.is_suspect(out) else 0)
            group = groups.get(key)
            if group is None:
                groups[key] = [out]
            else:
                group.append(out)
        futures: list[asyncio.Future[Any]] = []
        sent: list[list[Output]] = []
        try:
            for (topic, partition, _), outs in groups.items():
                batch = producer.create_batch()
                for out in outs:
                    ts = out.timestamp_ms if isinstance(out, Publish) else None
                    if batch.append(key=out.key, value=out.value, timestamp=ts, headers=out.headers) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                        sent.append(outs)  # the whole group: any of them may be the refused one
                        batch = producer.create_batch()
                        if batch.append(key=out.key, value=out.value, timestamp=ts, headers=out.headers) is None:
                            raise kerr.MessageSizeTooLargeError(
                                f"a record for {topic} does not fit in kafka.max_batch_bytes"
                            )
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                sent.append(outs)
        except BaseException:
            for f in futures:  # the batch is retried or abandoned: nobody awaits these any more
                f.add_done_callback(_seen)
            raise
        return futures, sent

    async def _learn_topics(self, producer: AIOKafkaProducer, topics: set[str]) -> None:
        """One metadata request for every output topic a producer does not know yet.

        aiokafka learns an unknown topic with a metadata request for it and the topics it learnt
        before, and forgets the others: a producer meeting ~115 typed topics one by one asks
        ~115 times, for up to all of them (quadratic). Exactly-once opens a producer per raw
        partition at every assignment, so this cost was paid per partition: at 60 partitions the
        metadata requests took more of the bridge's CPU than the core (py-spy). Asking once for
        all topics seen so far keeps it at one request per producer and new topic. It also
        narrows what the producer tracks from the whole cluster (its bootstrap, and its periodic
        refresh while it tracks nothing) to the output topics.
        """
        cluster = producer.client.cluster
        if producer in self._narrowed and all(cluster.partitions_for_topic(t) is not None for t in topics):
            return
        if len(self._topics_seen) < 100_000:  # bounded, whatever the event names
            self._topics_seen |= topics
        self._narrowed.add(producer)
        await producer.client.set_topics(self._topics_seen | topics)


def _seen(future: asyncio.Future[Any]) -> None:
    """Retrieve a dropped future's error (asyncio would log it as never retrieved)."""
    if not future.cancelled():
        future.exception()
