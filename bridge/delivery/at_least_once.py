"""At-least-once delivery (the default): publish, wait for every acknowledgement, then commit.

1. drop the typed records whose dedupe key is in the window (duplicate suppression);
2. send every output, in input order (idempotent producer: order kept per partition);
3. wait until the broker acknowledged every one of them (acks=all);
4. commit the input offsets (next offset per partition) to the consumer group;
5. remember the published dedupe keys in the window.

A failure in 2-3 retries the whole batch after a backoff (a duplicate can result; it carries the
same dedupe key). Records the broker refuses (bridge/refusals.py) are not retried: they are
screened before step 2, and a refusal after it is learnt from and the batch sent again at once,
by a new producer, with the refused records rerouted (the dead letter is their output). A failure
in 4 retries the commit alone. Steps 4-5 run in the background, one commit at a time and in batch
order, so that the fetch loop does not wait for the commit's round trip; the next batch's step 4
(and every drain, revocation or shutdown) first waits for the previous commit (``settle``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr

from bridge import metrics
from bridge.config import Config
from bridge.delivery.batch import Batch, InFlight, Status, Window
from bridge.delivery.guarantee import Guarantee
from bridge.delivery.publisher import BROKEN_PRODUCER, Publisher, RecordsRefused
from bridge.errors import FATAL, RETRIABLE, Backoff, fatal
from bridge.kafka import Clients

log = logging.getLogger("bridge.delivery")

#: The group rejected a commit: the partitions were taken away (a rebalance).
REJECTED: tuple[type[BaseException], ...] = (
    kerr.CommitFailedError,
    kerr.IllegalGenerationError,
    kerr.UnknownMemberIdError,
    kerr.RebalanceInProgressError,
)


class AtLeastOnce(Guarantee):
    """Sends batches as they come (up to ``delivery.max_in_flight_batches`` unacknowledged) and
    commits them one at a time, in batch order, each after all of its outputs were acknowledged."""

    def __init__(self, config: Config, clients: Clients, publisher: Publisher, window: Window, status: Status,
                 should_stop: Callable[[], bool]) -> None:
        super().__init__(config, publisher, window, status, should_stop)
        self.in_flight = config.delivery.max_in_flight_batches
        self._clients = clients
        self._committing: asyncio.Task[None] | None = None

    def _producer(self) -> AIOKafkaProducer:
        assert self._clients.producer is not None
        return self._clients.producer

    async def start(self, batch: Batch) -> InFlight:
        """Steps 1-2, without waiting for the acknowledgements: they arrive while the core works on
        the next batch. A failure to send is retried by ``finish``."""
        sends, suppressed = self._window.select(batch)
        inflight = InFlight(batch, sends, suppressed)
        self._publisher.partitioner.next_batch()
        try:
            inflight.futures, inflight.groups = await self._publisher.attempt(batch, sends, self._producer())
        except FATAL as exc:
            raise fatal(exc) from exc
        except RETRIABLE as exc:
            self._status.last_error = f"{type(exc).__name__}: {exc}"
        return inflight

    async def finish(self, inflight: InFlight) -> None:
        """Step 3, retried with backoff until done; then start the commit (after the previous one)."""
        backoff = Backoff.of(self._config)
        reset = False  # a new producer first (Clients.reset_producer)
        while True:
            try:
                if reset:
                    await self._clients.reset_producer()
                    reset = False
                if inflight.futures is None:
                    inflight.futures, inflight.groups = await self._publisher.attempt(
                        inflight.batch, inflight.sends, self._producer())
                await self._publisher.acknowledged(inflight.futures, inflight.groups)
                self._status.publishing_ok = True
                await self.settle()  # commits stay in batch order, one at a time
                self._committing = asyncio.ensure_future(self._commit_batch(inflight))
                return
            except RecordsRefused as exc:
                # Sent again at once, the refused records rerouted; by a new producer: the refused
                # batch left a gap in this one's sequence numbers for its partition.
                log.info("%s; sending the batch again without them", exc)
                inflight.futures = None
                reset = True
            except FATAL as exc:
                raise fatal(exc) from exc
            except RETRIABLE as exc:
                delay = backoff.next()
                self._status.failed(exc, len(inflight.sends), delay)
                inflight.futures = None  # resend the whole batch: a copy carries the same dedupe key
                reset = reset or isinstance(exc, BROKEN_PRODUCER)
                if self._should_stop():
                    raise
                await asyncio.sleep(delay)

    async def settle(self) -> None:
        """Wait for the commit in flight, if any; its fatal or final error is raised here."""
        task, self._committing = self._committing, None
        if task is None:
            return
        try:
            await task
        except FATAL as exc:
            raise fatal(exc) from exc

    def commit_done(self) -> bool:
        """No commit in flight, or it has finished (``settle`` then returns at once)."""
        return self._committing is None or self._committing.done()

    async def _commit_batch(self, inflight: InFlight) -> None:
        """Steps 4-5, in the background."""
        batch = inflight.batch
        try:
            await self._commit(batch.offsets)
        except REJECTED as exc:
            metrics.COMMIT_FAILURES.inc()
            log.warning("commit rejected by the group (%s); the batch is left to the partitions' owner",
                        type(exc).__name__)
            return
        finally:
            self._window.confirmed(batch)
        self._window.committed(batch, inflight.sends, inflight.suppressed, self._publisher.screen)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the input offsets; transient errors retry the commit alone."""
        backoff = Backoff.of(self._config)
        consumer = self._clients.consumer
        assert consumer is not None
        while True:
            started = time.perf_counter()
            try:
                await consumer.commit(offsets)
                metrics.COMMIT_DURATION.observe(time.perf_counter() - started)
                return
            except (*REJECTED, *FATAL):
                raise
            except RETRIABLE as exc:
                delay = backoff.next()
                metrics.COMMIT_FAILURES.inc()
                log.warning("offset commit failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                if self._should_stop():
                    raise
                await asyncio.sleep(delay)
