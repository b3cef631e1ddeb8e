"""``Delivery``: the one owner of the delivery guarantee, between the consumer and the broker.

The service hands it each fetch (``submit``) and calls ``drain`` at shutdown; the group's
rebalance listener is its own (``listener``). It owns the batches in flight, the duplicate
window, and the guarantee that publishes and commits them: ``AtLeastOnce`` or ``ExactlyOnce``,
two strategies behind one interface (``guarantee.Guarantee``). Everything it does with a batch happens under
one lock, so a rebalance never runs between fetching a batch and handing it over.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from bridge import metrics
from bridge.config import Config
from bridge.dedupe import Deduplicator
from bridge.delivery.at_least_once import AtLeastOnce
from bridge.delivery.batch import Batch, InFlight, Status, Window
from bridge.delivery.exactly_once import ExactlyOnce
from bridge.delivery.guarantee import Guarantee, Records
from bridge.delivery.publisher import Publisher
from bridge.kafka import Clients, TopicCreator
from bridge.topicinfo import TopicInfo


class Delivery:
    """Takes each fetch's records through the core and to the broker; commits them in order."""

    def __init__(self, config: Config, clients: Clients, dedupe: Deduplicator, build: Callable[[Records], Batch],
                 should_stop: Callable[[], bool], topics: TopicCreator | None = None,
                 info: TopicInfo | None = None, catalog_topics: frozenset[str] = frozenset()) -> None:
        self.status = Status()
        self.publisher = Publisher(config, topics, info, catalog_topics)
        self.window = Window(dedupe)
        self.guarantee: Guarantee
        if config.delivery.guarantee == "exactly-once":
            if clients.partitions is None:
                raise ValueError("exactly-once delivery needs the partitions' transactional producers")
            self.guarantee = ExactlyOnce(config, clients.partitions, self.publisher, self.window, self.status,
                                         should_stop)
        else:
            self.guarantee = AtLeastOnce(config, clients, self.publisher, self.window, self.status, should_stop)
        self._clients = clients
        self._build = build
        self._lock = asyncio.Lock()
        self._pending: deque[InFlight] = deque()

    @property
    def busy(self) -> bool:
        """Batches are in flight: the next fetch should not wait long for more records."""
        return bool(self._pending)

    async def prepare(self) -> None:
        async with self._lock:
            await self.guarantee.prepare()

    async def submit(self, records: Records) -> None:
        """One fetch: the records of owned partitions become a batch (``build``, the core), started
        at once; the oldest batches are finished when the window is full, acknowledged, or nothing
        came (then every batch is finished and its commit awaited).

        Offsets are committed strictly in batch order, each only after all of its outputs were
        acknowledged; a partition revoked since the fetch is dropped (its new owner reads it again).
        """
        guarantee, pending = self.guarantee, self._pending
        async with self._lock:
            consumer = self._clients.consumer
            assert consumer is not None
            owned = consumer.assignment()
            records = {tp: msgs for tp, msgs in records.items() if tp in owned}
            owners = guarantee.accept(records)
            if records:
                batch = self._build(records)
                batch.owners = owners
                metrics.RECORDS_IN_FLIGHT.set(self._records_in_flight() + batch.consumed)
                pending.append(await guarantee.start(batch))
                metrics.RECORDS_IN_FLIGHT.set(self._records_in_flight())
            while pending and (len(pending) >= guarantee.in_flight or pending[0].acknowledged() or not records):
                await self._finish_oldest()
            if guarantee.in_flight == 1 or not records or guarantee.commit_done():
                await guarantee.settle()  # one at a time, idle, or done: errors surface here

    async def drain(self) -> None:
        """Finish and commit every batch in flight, in order (shutdown)."""
        async with self._lock:
            await self._drain()

    async def _drain(self) -> None:
        while self._pending:
            await self._finish_oldest()
        await self.guarantee.settle()

    async def _finish_oldest(self) -> None:
        inflight = self._pending.popleft()
        await self.guarantee.finish(inflight)
        metrics.BATCH_DURATION.observe(time.perf_counter() - inflight.batch.started)
        metrics.RECORDS_IN_FLIGHT.set(self._records_in_flight())

    def _records_in_flight(self) -> int:
        return sum(p.batch.consumed for p in self._pending)

    def listener(self, on_assigned: Callable[[list[TopicPartition]], None],
                 on_revoked: Callable[[list[TopicPartition]], None]) -> ConsumerRebalanceListener:
        """The consumer's rebalance listener; ``on_*`` are the service's own bookkeeping."""
        return _Listener(self, on_assigned, on_revoked)

    async def _revoked(self, tps: list[TopicPartition], then: Callable[[list[TopicPartition]], None]) -> None:
        # Finish and commit the batches in flight while the partitions are still ours.
        async with self._lock:
            await self._drain()
            await self.guarantee.revoked(tps)
            self.window.forget(tps)
            then(tps)

    async def _assigned(self, tps: list[TopicPartition], then: Callable[[list[TopicPartition]], None]) -> None:
        # Exactly-once: the producers are opened by ``prepare`` before the next fetch; nothing here
        # waits on the broker, the group is not heartbeating.
        async with self._lock:
            self.guarantee.assigned(tps)
            then(tps)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, delivery: Delivery, on_assigned: Callable[[list[TopicPartition]], None],
                 on_revoked: Callable[[list[TopicPartition]], None]) -> None:
        self._delivery = delivery
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._delivery._revoked(list(revoked), self._on_revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._delivery._assigned(list(assigned), self._on_assigned)
