"""Exactly-once delivery (``delivery.guarantee = "exactly-once"``): a transaction per raw partition.

The batch is split by raw partition; each share runs as its own transaction, with the
transactional producer of that partition (bridge/transactions.py: the producer that fences the
partition's previous owner), all shares concurrently:

1. drop the typed records whose dedupe key is in the window;
2. begin a Kafka transaction;
3. send the share's outputs inside it and wait for the acknowledgements;
4. add the partition's input offset to the transaction (``send_offsets_to_transaction``);
5. commit the transaction: outputs and offset become visible atomically to ``read_committed``
   consumers;
6. remember the published dedupe keys in the window.

A failure aborts the share's transaction and retries it. A record the broker refuses leaves the
producer unusable (a refused idempotent batch leaves a gap in its sequence numbers): the share is
abandoned with the producer, and redone from the committed offset with the records it learnt
about rerouted before sending (bridge/refusals.py). A share whose producer was fenced (the
partition has a new owner), or closed since the batch was fetched, is abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalOperation

from bridge import metrics
from bridge.config import Config
from bridge.delivery.batch import Batch, InFlight, PartitionShare, Status, Window
from bridge.delivery.guarantee import Guarantee
from bridge.delivery.publisher import BROKEN_PRODUCER, AcksTimedOut, Publisher, RecordsRefused
from bridge.errors import FATAL, RETRIABLE, Backoff, Fatal, fatal
from bridge.transactions import FENCED, PartitionProducer, PartitionProducers, sender_error

log = logging.getLogger("bridge.delivery")


class ExactlyOnce(Guarantee):
    """One batch at a time; each raw partition's share committed in a transaction of its producer."""

    def __init__(self, config: Config, partitions: PartitionProducers, publisher: Publisher, window: Window,
                 status: Status, should_stop: Callable[[], bool]) -> None:
        super().__init__(config, publisher, window, status, should_stop)
        self._partitions = partitions

    async def prepare(self) -> None:
        """Open the producers of newly assigned partitions (the fence), before the next fetch."""
        await self._partitions.ensure()

    def accept(self, records: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, PartitionProducer]:
        return self._partitions.accept(records)

    def assigned(self, tps: list[TopicPartition]) -> None:
        self._partitions.assigned(tps)

    async def revoked(self, tps: list[TopicPartition]) -> None:
        await self._partitions.revoked(tps)

    async def start(self, batch: Batch) -> InFlight:
        """Step 1 per share; nothing is sent before ``finish``."""
        inflight = InFlight(batch, [], Counter())
        for tp, share in batch.by_partition().items():
            sends, suppressed = self._window.select(share)
            inflight.shares.append(PartitionShare(batch.owners[tp], share, sends, suppressed))
        self._publisher.partitioner.next_batch()
        return inflight

    async def finish(self, inflight: InFlight) -> None:
        """Every share's transaction, all at once; the first fatal error (else the first error) is raised."""
        results = await asyncio.gather(*(self._share(s) for s in inflight.shares), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise next((e for e in errors if isinstance(e, Fatal)), errors[0])

    async def _share(self, share: PartitionShare) -> None:
        """Commit one partition's share with the producer it is bound to, or abandon it."""
        owner, partitions = share.owner, self._partitions
        backoff = Backoff.of(self._config)
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
                    await self._dead(owner, sender_error(owner.producer) or exc)
                    return
                except FATAL as exc:
                    raise fatal(exc) from exc
                except BROKEN_PRODUCER as exc:  # redone by the partition's next producer
                    self._status.failed(exc, len(share.sends), 0.0)
                    await partitions.discard(owner, exc)
                    return
                except AcksTimedOut as exc:
                    # Stuck adding a (deleted?) topic's partition to the transaction: neither an abort
                    # nor a stop can finish. Redone by the partition's next producer, which fences it.
                    self._status.failed(exc, len(share.sends), 0.0)
                    await partitions.discard(owner, exc, stop_s=5.0)
                    return
                except RETRIABLE as exc:
                    delay = backoff.next()
                    self._status.failed(exc, len(share.sends), delay)
                    if not await self._abort(owner):
                        return
                    if self._should_stop():
                        raise
                    await asyncio.sleep(delay)
                else:
                    self._status.publishing_ok = True
                    self._window.committed(share.batch, share.sends, share.suppressed, self._publisher.screen)
                    return
        finally:
            self._window.confirmed(share.batch)

    async def _transaction(self, producer: AIOKafkaProducer, share: PartitionShare) -> None:
        await producer.begin_transaction()
        # Not past the transaction's timeout: the coordinator aborts it then anyway.
        await self._publisher.acknowledged(*await self._publisher.attempt(share.batch, share.sends, producer),
                                           within=self._config.delivery.transaction_timeout_ms / 1000 + 5)
        started = time.perf_counter()
        await producer.send_offsets_to_transaction(share.batch.offsets, self._config.group_id)
        await producer.commit_transaction()
        metrics.COMMIT_DURATION.observe(time.perf_counter() - started)

    async def _abort(self, owner: PartitionProducer) -> bool:
        """Abort the open transaction. False if the producer was fenced or had to be closed."""
        try:
            await asyncio.wait_for(owner.producer.abort_transaction(), timeout=30)
            return True
        except Exception as exc:  # aiokafka's transaction state machine also raises AssertionError
            await self._dead(owner, sender_error(owner.producer) or exc)
        return False

    async def _dead(self, owner: PartitionProducer, cause: BaseException) -> None:
        """The producer cannot go on: fenced (rejoin the group), or broken (reopened from the committed offset)."""
        if isinstance(cause, FENCED):
            await self._partitions.fenced(owner, cause)
        else:
            await self._partitions.discard(owner, cause)
