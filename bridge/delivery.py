"""The one place that owns the delivery guarantee.

A consumed batch becomes outputs (typed records and dead letters) through the core. This
module publishes them and commits the batch's input offsets, in this order:

at-least-once (the default)
    1. drop the typed records whose dedupe key is in the window (duplicate suppression);
    2. send every output, in input order (idempotent producer: order kept per partition);
    3. wait until the broker acknowledged every one of them (acks=all);
    4. commit the input offsets (next offset per partition) to the consumer group;
    5. remember the published dedupe keys in the window.
    A failure in 2-3 retries the whole batch after a backoff (a duplicate can result; it
    carries the same dedupe key). Records the broker refuses (bridge/refusals.py) are not
    retried: they are screened before step 2, and a refusal after it is learnt from and the
    batch sent again at once with the refused records rerouted (the dead letter is their output).
    A failure in 4 retries the commit alone. Nothing is
    fetched meanwhile, so memory stays bounded (backpressure).
    Steps 4-5 run in the background, one commit at a time and in batch order, so that the
    fetch loop does not wait for the commit's round trip; the next batch's step 4 (and every
    drain, revocation or shutdown) first waits for the previous commit (``settle``). With
    ``delivery.max_in_flight_batches = 1`` the loop waits for each commit before fetching.

exactly-once (``delivery.guarantee = "exactly-once"``)
    The batch is split by raw partition; each share runs as its own transaction, with the
    transactional producer of that partition (bridge/transactions.py: the producer that fences
    the partition's previous owner), all shares concurrently:
    1. as above;
    2. begin a Kafka transaction;
    3. send the share's outputs inside it and wait for the acknowledgements;
    4. add the partition's input offset to the transaction (``send_offsets_to_transaction``);
    5. commit the transaction: outputs and offset become visible atomically to
       ``read_committed`` consumers;
    6. as 5 above, for that partition.
    A failure aborts the share's transaction and retries it. A record the broker refuses leaves the
    producer unusable (a refused idempotent batch leaves a gap in its sequence numbers): the share
    is abandoned with the producer, and redone from the committed offset with the records it
    learnt about rerouted before sending (bridge/refusals.py). A share whose producer was fenced
    (the partition has a new owner), or closed since the batch was fetched, is abandoned.

In both modes, when the group took the partitions away (the commit is rejected, or the producer
fenced), the batch is abandoned: its new owner starts from the last committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr
from aiokafka.errors import IllegalOperation
from aiokafka.partitioner import murmur2

from bridge import metrics
from bridge.config import Config
from bridge.core import DeadLetter, Output, Publish, now_ms
from bridge.dedupe import Deduplicator
from bridge.kafka import TopicCreationError, TopicCreator, make_producer
from bridge.refusals import Screen, count_refusals
from bridge.topicinfo import TopicInfo
from bridge.transactions import FENCED, PartitionProducer, PartitionProducers, sender_error

log = logging.getLogger("bridge.delivery")

#: Errors after which retrying cannot help: the replica must stop with a clear message.
#: (A fenced producer is not one of them: see bridge/transactions.py.)
FATAL_ERRORS: tuple[type[BaseException], ...] = (
    kerr.TransactionalIdAuthorizationFailed,
    kerr.TopicAuthorizationFailedError,
    kerr.GroupAuthorizationFailedError,
    kerr.ClusterAuthorizationFailedError,
    kerr.UnsupportedVersionError,
    TopicCreationError,
)


#: The group rejected a commit: the partitions were taken away (a rebalance).
_REJECTED: tuple[type[BaseException], ...] = (
    kerr.CommitFailedError,
    kerr.IllegalGenerationError,
    kerr.UnknownMemberIdError,
    kerr.RebalanceInProgressError,
)


#: After these, an idempotent producer never writes that partition again: aiokafka, unlike the Java
#: client, does not reset its sequence numbers after a refused batch (a gap). A new producer is used.
BROKEN_PRODUCER: tuple[type[BaseException], ...] = (kerr.OutOfOrderSequenceNumber, kerr.UnknownProducerId)


class FatalDeliveryError(Exception):
    """Delivery cannot go on (fenced, not authorized...). The service exits non-zero."""


class RecordsRefused(Exception):
    """The broker refused records of the attempt; what it taught is in the ``Screen``: send again."""


@dataclass(slots=True)
class Batch:
    """What one ``getmany`` returned, turned into outputs, with the offsets to commit."""

    outputs: list[tuple[TopicPartition, Output]] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)  # the raw record of each output (its dead letter's bytes)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    consumed: int = 0
    core_seconds: float = 0.0
    started: float = 0.0  # perf_counter when the batch was taken from the consumer
    markers: set[tuple[TopicPartition, str]] = field(default_factory=set)  # (partition, dedupe key) sent
    # exactly-once: the producer each partition's records were accepted under (bound to it)
    owners: dict[TopicPartition, PartitionProducer] = field(default_factory=dict)

    def by_partition(self) -> dict[TopicPartition, Batch]:
        """One batch per raw partition, outputs in input order (exactly-once: a transaction each)."""
        parts = {tp: Batch(offsets={tp: offset}, started=self.started) for tp, offset in self.offsets.items()}
        for i, (tp, out) in enumerate(self.outputs):
            part = parts[tp]
            part.outputs.append((tp, out))
            if self.inputs:
                part.inputs.append(self.inputs[i])
        return parts


@dataclass(slots=True)
class PartitionShare:
    """Exactly-once: one raw partition's share of a batch, bound to the producer it is committed with."""

    owner: PartitionProducer
    batch: Batch
    sends: list[Output]
    suppressed: Counter[str]


@dataclass(slots=True)
class InFlight:
    """A batch whose outputs were sent (at-least-once) and are not committed yet."""

    batch: Batch
    sends: list[Output]
    suppressed: Counter[str]
    futures: list[asyncio.Future[Any]] | None = None
    groups: list[list[Output]] = field(default_factory=list)  # the outputs of each future
    shares: list[PartitionShare] = field(default_factory=list)  # exactly-once

    def acknowledged(self) -> bool:
        return self.futures is not None and all(f.done() for f in self.futures)


def _seen(future: asyncio.Future[Any]) -> None:
    """Retrieve a dropped future's error (asyncio would log it as never retrieved)."""
    if not future.cancelled():
        future.exception()


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


class Delivery:
    """Publishes a batch's outputs and commits its offsets, per the configured guarantee."""

    def __init__(
        self,
        config: Config,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        dedupe: Deduplicator,
        should_stop: Callable[[], bool],
        partitions: PartitionProducers | None = None,
        topics: TopicCreator | None = None,
        info: TopicInfo | None = None,
        catalog_topics: frozenset[str] = frozenset(),
    ) -> None:
        self._topics = topics
        self._info = info
        self._config = config
        self.screen = Screen(dead_letter_topic=config.topics.dead_letter, catch_all_topic=config.topics.catch_all,
                             out_of_range=config.decode.out_of_range_time, missing=config.topics.missing,
                             catalog_topics=catalog_topics)
        self._retiring: set[asyncio.Task[None]] = set()
        self._partitioner = Partitioner()
        self._topics_seen: set[str] = set()  # output topics, for the producers' metadata
        self._narrowed: weakref.WeakSet[AIOKafkaProducer] = weakref.WeakSet()  # tracking _topics_seen
        self._unconfirmed: dict[tuple[TopicPartition, str], int] = {}
        self.exactly_once = config.delivery.guarantee == "exactly-once"
        if self.exactly_once and partitions is None:
            raise ValueError("exactly-once delivery needs the partitions' transactional producers")
        self.partitions = partitions
        self._group_id = config.group_id
        self._consumer = consumer
        self.producer = producer
        self._dedupe = dedupe
        self._should_stop = should_stop
        self._backoff0 = config.delivery.retry_backoff_initial_s
        self._backoff_max = config.delivery.retry_backoff_max_s
        self.publishing_ok = True
        self.last_error: str = ""
        self._committing: asyncio.Task[None] | None = None

    async def start(self, batch: Batch) -> InFlight:
        """Steps 1-2: select and send, without waiting for acknowledgements (at-least-once).

        The service may start the next batch before this one is finished: its acks then arrive
        while the core works on the next one. Commits still happen in batch order (``finish``).
        In exactly-once mode nothing is sent here: the transactions run in ``finish``.
        """
        if self.exactly_once:
            inflight = InFlight(batch, [], Counter())
            for tp, share in batch.by_partition().items():
                sends, suppressed = self._select(share)
                inflight.shares.append(PartitionShare(batch.owners[tp], share, sends, suppressed))
        else:
            sends, suppressed = self._select(batch)
            inflight = InFlight(batch, sends, suppressed)
        self._partitioner.next_batch()
        if not self.exactly_once:
            try:
                inflight.futures, inflight.groups = await self._attempt(batch, sends, self.producer)
            except FATAL_ERRORS as exc:
                raise FatalDeliveryError(f"{type(exc).__name__}: {exc}") from exc
            except (kerr.KafkaError, TimeoutError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"  # finish() retries it
        return inflight

    async def finish(self, inflight: InFlight) -> None:
        """The remaining steps, retried with backoff until done, or abandoned on a rebalance.

        At-least-once: returns once every output was acknowledged and the commit has started
        (after the previous batch's commit finished); ``settle`` waits for the commit itself.
        """
        if self.exactly_once:
            await self._transactions(inflight.shares)
            return
        sends = inflight.sends
        backoff = self._backoff0
        replace = False  # a new producer first (see _replace_producer)
        while True:
            try:
                if replace:
                    await self._replace_producer()
                    replace = False
                if inflight.futures is None:
                    inflight.futures, inflight.groups = await self._attempt(inflight.batch, sends, self.producer)
                await self._acknowledged(inflight.futures, inflight.groups)
                self.publishing_ok = True
                await self.settle()  # commits stay in batch order, one at a time
                self._committing = asyncio.ensure_future(self._commit_batch(inflight))
                return
            except RecordsRefused as exc:
                # Sent again at once, the refused records rerouted; by a new producer: the refused
                # batch left a gap in this one's sequence numbers for its partition.
                log.info("%s; sending the batch again without them", exc)
                inflight.futures = None
                replace = True
            except FATAL_ERRORS as exc:
                raise FatalDeliveryError(f"{type(exc).__name__}: {exc}") from exc
            except (kerr.KafkaError, TimeoutError, OSError) as exc:
                self._failed(exc, len(sends), backoff)
                inflight.futures = None  # resend the whole batch: a copy carries the same dedupe key
                replace = replace or isinstance(exc, BROKEN_PRODUCER)
                if self._should_stop():
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)

    def _failed(self, exc: BaseException, outputs: int, backoff: float) -> None:
        self.publishing_ok = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        metrics.PUBLISH_RETRIES.inc()
        log.warning("publishing a batch of %d outputs failed (%s); retrying in %.1fs",
                    outputs, self.last_error, backoff)

    async def _transactions(self, shares: list[PartitionShare]) -> None:
        """Exactly-once: one transaction per raw partition of the batch, all at once."""
        results = await asyncio.gather(*(self._share_transaction(s) for s in shares), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise next((e for e in errors if isinstance(e, FatalDeliveryError)), errors[0])

    async def _share_transaction(self, share: PartitionShare) -> None:
        """Commit one partition's share with the producer it is bound to, or abandon it."""
        owner, batch, partitions = share.owner, share.batch, self.partitions
        assert partitions is not None
        backoff = self._backoff0
        try:
            while True:
                if not owner.live:  # closed or replaced since the records were accepted
                    log.info("%s[%d]: abandoning a batch of its closed producer; the partition's owner "
                             "starts again from the committed offset", owner.tp.topic, owner.tp.partition)
                    return
                try:
                    await self._transaction(owner.producer, share)
                except RecordsRefused as exc:
                    # Its producer cannot write that partition again (sequence numbers): closed; the
                    # partition's next producer redoes the batch with the refused records rerouted.
                    log.info("%s[%d]: %s; the batch is redone from the committed offset without them",
                             owner.tp.topic, owner.tp.partition, exc)
                    await partitions.discard(owner, exc)
                    return
                except FENCED as exc:
                    await partitions.fenced(owner, exc)
                    return
                except (IllegalOperation, AssertionError) as exc:
                    # aiokafka's transaction state machine refused: its sender died (fenced?)
                    cause = sender_error(owner.producer) or exc
                    if isinstance(cause, FENCED):
                        await partitions.fenced(owner, cause)
                    else:
                        await partitions.discard(owner, cause)
                    return
                except FATAL_ERRORS as exc:
                    raise FatalDeliveryError(f"{type(exc).__name__}: {exc}") from exc
                except BROKEN_PRODUCER as exc:  # see _replace_producer: redone by the next producer
                    self._failed(exc, len(share.sends), 0.0)
                    await partitions.discard(owner, exc)
                    return
                except (kerr.KafkaError, TimeoutError, OSError) as exc:
                    self._failed(exc, len(share.sends), backoff)
                    if not await self._abort(owner):
                        return
                    if self._should_stop():
                        raise
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._backoff_max)
                else:
                    self.publishing_ok = True
                    self._after_commit(batch, share.sends, share.suppressed)
                    return
        finally:
            self._confirmed(batch)

    async def settle(self) -> None:
        """Wait for the commit in flight, if any; its fatal or final error is raised here."""
        task, self._committing = self._committing, None
        if task is None:
            return
        try:
            await task
        except FATAL_ERRORS as exc:
            raise FatalDeliveryError(f"{type(exc).__name__}: {exc}") from exc

    def commit_done(self) -> bool:
        """No commit in flight, or it has finished (``settle`` then returns at once)."""
        return self._committing is None or self._committing.done()

    async def _commit_batch(self, inflight: InFlight) -> None:
        """Steps 4-5 of at-least-once, in the background (see ``finish``)."""
        batch = inflight.batch
        try:
            await self._commit(batch.offsets)
        except _REJECTED as exc:
            self._rejected(exc, batch)
            return
        except BaseException:
            self._confirmed(batch)
            raise
        self._after_commit(batch, inflight.sends, inflight.suppressed)
        self._confirmed(batch)

    def _rejected(self, exc: BaseException, batch: Batch) -> None:
        """The group took the partitions away: the batch is left to their new owner."""
        metrics.COMMIT_FAILURES.inc()
        log.warning("commit rejected by the group (%s); the batch is left to the partitions' owner",
                    type(exc).__name__)
        self._confirmed(batch)

    # -- the steps --------------------------------------------------------------------------

    def _select(self, batch: Batch) -> tuple[list[Output], Counter[str]]:
        """Step 1: duplicate suppression, within the window and within the batch."""
        suppressed: Counter[str] = Counter()
        if not self._dedupe.enabled:
            return [out for _, out in batch.outputs], suppressed
        now = time.monotonic()
        sends: list[Output] = []
        in_batch: set[tuple[TopicPartition, str]] = set()
        windows: dict[TopicPartition, Any] = {}
        unconfirmed = self._unconfirmed
        for tp, out in batch.outputs:
            if isinstance(out, Publish):
                w = windows.get(tp)
                if w is None:
                    w = windows[tp] = self._dedupe.window(tp.topic, tp.partition)
                marker = (tp, out.dedupe_key)
                if marker in in_batch or marker in unconfirmed or w.seen(out.dedupe_key, now):
                    suppressed[out.event_name] += 1
                    continue
                in_batch.add(marker)
            sends.append(out)
        # Sent but not committed yet: an overlapping next batch must not publish them again.
        for marker in in_batch:
            unconfirmed[marker] = unconfirmed.get(marker, 0) + 1
        batch.markers = in_batch
        return sends, suppressed

    def _confirmed(self, batch: Batch) -> None:
        """The batch is committed or abandoned: its keys are no longer 'in flight'."""
        unconfirmed = self._unconfirmed
        for marker in batch.markers:
            n = unconfirmed.get(marker, 0) - 1
            if n > 0:
                unconfirmed[marker] = n
            else:
                unconfirmed.pop(marker, None)

    async def _attempt(self, batch: Batch, sends: list[Output], producer: AIOKafkaProducer
                       ) -> tuple[list[asyncio.Future[Any]], list[list[Output]]]:
        """Screen the outputs (in place: bridge/refusals.py), then send them."""
        if not sends:
            return [], []
        topics = {out.topic for out in sends}
        if self._topics is not None:
            await self._topics.ensure(topics)
        if self._info is not None:
            await self._info.learn(topics)
        reroute: dict[int, tuple[str, str]] = {}
        clamped = self.screen.clamped
        info = self._info
        failing = self.screen.apply(sends, info.limits if info is not None else {}, now_ms(), reroute,
                                    info.version if info is not None else -1)
        if failing:
            raise FatalDeliveryError(f"topic {failing[0]} is missing or may not be written (topics.missing = fail, "
                                     f"env BRIDGE_TOPICS_MISSING); create it or grant the ACL")
        if self.screen.clamped != clamped:
            metrics.TIMESTAMPS_CLAMPED.inc(self.screen.clamped - clamped)
        if reroute:
            self._reroute(batch, sends, reroute)
            topics = {out.topic for out in sends}
        return await self._send(sends, producer, topics)

    def _reroute(self, batch: Batch, sends: list[Output], reroute: dict[int, tuple[str, str]]) -> None:
        """Replace the screened-out records of ``sends`` with their dead letters (or catch-all records)."""
        limits = self._info.limits if self._info is not None else {}
        self.screen.reroute(batch.outputs, batch.inputs, sends, reroute, limits, now_ms())
        log.warning("rerouted %d typed records the broker refuses (or would), e.g. for %s: %s",
                    len(reroute), sends[min(reroute)].headers[-1][1].decode(), reroute[min(reroute)][1])

    async def _acknowledged(self, futures: list[asyncio.Future[Any]], groups: list[list[Output]]) -> None:
        """Wait for every future (all settled: no unretrieved errors). Records the broker refused
        are learnt by the screen (``RecordsRefused``); other failures raise the first one."""
        results = await asyncio.gather(*futures, return_exceptions=True)
        first, refused = self.screen.learn_results(results, groups)
        if refused:  # progress: the next attempt reroutes them (other failures are retried with it)
            if self._info is not None:
                for topic in refused:
                    self._info.forget(topic)  # its settings may have changed: read them again
            raise RecordsRefused(f"the broker refused produce batches: {', '.join(refused.values())}")
        if first is not None:
            raise first

    async def _replace_producer(self) -> None:
        """At-least-once: a new idempotent producer; the old one finishes its batches, then stops."""
        producer = make_producer(self._config)
        try:
            await producer.start()
        except BaseException:
            await _retire(producer)
            raise
        old, self.producer = self.producer, producer
        task = asyncio.ensure_future(_retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Wait for the producers being retired (``_replace_producer``)."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _send(self, sends: list[Output], producer: AIOKafkaProducer | None = None,
                    topics: set[str] | None = None) -> tuple[list[asyncio.Future[Any]], list[list[Output]]]:
        """Send every output as record batches per partition; returns their delivery futures,
        with the outputs of each.

        One ``send_batch`` per (topic, partition) run instead of one ``send`` coroutine per
        record; partitions are chosen like the Java client (murmur2 of the key), so keyed
        records land where any Kafka client would put them. Input order is kept per partition,
        except for suspects of an earlier refusal: each is sent in a batch of its own after the rest.
        """
        if not sends:
            return [], []
        producer = producer or self.producer
        if topics is None:
            topics = {out.topic for out in sends}
        await self._learn_topics(producer, topics)
        partitioner = self._partitioner
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

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the input offsets; transient errors retry the commit alone."""
        backoff = self._backoff0
        while True:
            started = time.perf_counter()
            try:
                await self._consumer.commit(offsets)
                metrics.COMMIT_DURATION.observe(time.perf_counter() - started)
                return
            except _REJECTED:
                raise
            except FATAL_ERRORS:
                raise
            except (kerr.KafkaError, TimeoutError, OSError) as exc:
                metrics.COMMIT_FAILURES.inc()
                log.warning("offset commit failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, backoff)
                if self._should_stop():
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)

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

    async def _transaction(self, producer: AIOKafkaProducer, share: PartitionShare) -> None:
        await producer.begin_transaction()
        await self._acknowledged(*await self._attempt(share.batch, share.sends, producer))
        started = time.perf_counter()
        await producer.send_offsets_to_transaction(share.batch.offsets, self._group_id)
        await producer.commit_transaction()
        metrics.COMMIT_DURATION.observe(time.perf_counter() - started)

    async def _abort(self, owner: PartitionProducer) -> bool:
        """Abort the open transaction. False if the producer was fenced or had to be closed."""
        assert self.partitions is not None
        try:
            await asyncio.wait_for(owner.producer.abort_transaction(), timeout=30)
            return True
        except Exception as exc:  # aiokafka's transaction state machine also raises AssertionError
            cause = sender_error(owner.producer) or exc
            if isinstance(cause, FENCED):
                await self.partitions.fenced(owner, cause)
            else:
                await self.partitions.discard(owner, cause)
        return False

    def _after_commit(self, batch: Batch, sends: list[Output], suppressed: Counter[str]) -> None:
        """Step 5 and the batch's metrics, once per batch (never per event)."""
        now_mono = time.monotonic()
        if self._dedupe.enabled:
            keys: dict[TopicPartition, list[str]] = {}
            for tp, out in batch.outputs:
                if isinstance(out, Publish):
                    keys.setdefault(tp, []).append(out.dedupe_key)
            for tp, ks in keys.items():
                self._dedupe.window(tp.topic, tp.partition).remember(ks, now_mono)
        published: Counter[tuple[str, str]] = Counter()
        dead: Counter[str] = Counter()
        generic: Counter[str] = Counter()
        unknown: Counter[str] = Counter()
        malformed: Counter[str] = Counter()
        missing: Counter[str] = Counter()
        misfiled: Counter[str] = Counter()
        now = time.time()
        step = max(1, len(sends) // 64)
        for i, out in enumerate(sends):
            if isinstance(out, DeadLetter):
                dead[out.reason] += 1
                continue
            fmt = out.format
            name = metrics.GENERIC if out.generic else out.event_name
            published[(name, fmt)] += 1
            if out.generic:
                generic[fmt] += 1
            if out.unknown_fields:
                unknown[name] += len(out.unknown_fields)
            if out.malformed_fields:
                malformed[name] += len(out.malformed_fields)
            if out.missing_fields:
                missing[name] += len(out.missing_fields)
            if out.declared_event_name:
                misfiled[name] += 1
            if i % step == 0:
                metrics.EVENT_FRESHNESS.observe(max(0.0, now - out.timestamp_ms / 1000))
        for (name, fmt), n in published.items():
            metrics.EVENTS_PUBLISHED.labels(name, fmt).inc(n)
        for reason, n in dead.items():
            metrics.DEAD_LETTERS.labels(reason).inc(n)
        if dead:
            for (reason, topic), n in count_refusals(sends).items():
                metrics.REFUSED_RECORDS.labels(reason, self.screen.label(topic)).inc(n)
        for fmt, n in generic.items():
            metrics.GENERIC_EVENTS.labels(fmt).inc(n)
        for name, n in unknown.items():
            metrics.UNKNOWN_FIELDS.labels(name).inc(n)
        for name, n in malformed.items():
            metrics.MALFORMED_FIELDS.labels(name).inc(n)
        for name, n in missing.items():
            metrics.MISSING_FIELDS.labels(name).inc(n)
        for name, n in misfiled.items():
            metrics.MISFILED_EVENTS.labels(name).inc(n)
        for name, n in suppressed.items():
            metrics.DUPLICATES_SUPPRESSED.labels(name).inc(n)
        if sends:
            metrics.LAST_PUBLISH.set(now)


async def _retire(producer: AIOKafkaProducer) -> None:
    """Let a replaced producer finish what it was sent (its futures are awaited elsewhere), then stop it."""
    try:
        await asyncio.wait_for(producer.flush(), 60)
    except Exception as exc:
        log.debug("flushing a replaced producer: %s", exc)
    try:
        await asyncio.wait_for(producer.stop(), 30)
    except Exception as exc:
        log.debug("stopping a replaced producer: %s", exc)
