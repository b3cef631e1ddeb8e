"""``Guarantee``: what ``Delivery`` asks of a delivery guarantee (at-least-once, exactly-once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from bridge.config import Config
from bridge.delivery.batch import Batch, InFlight, Status, Window
from bridge.delivery.publisher import Publisher

Records = dict[TopicPartition, list[Any]]


class Guarantee:
    """How a batch is published and its offsets committed; ``Delivery`` calls, in this order per batch,
    ``accept`` (under its lock, right after the fetch), ``start``, ``finish``, and ``settle`` before
    anything that needs the commits done (the next commit, a revocation, the drain)."""

    #: how many batches may be started and not finished at once
    in_flight = 1

    def __init__(self, config: Config, publisher: Publisher, window: Window, status: Status,
                 should_stop: Callable[[], bool]) -> None:
        self._config = config
        self._publisher = publisher
        self._window = window
        self._status = status
        self._should_stop = should_stop  # retries give up (a drain ran out of time)

    async def prepare(self) -> None:
        """Before each fetch (exactly-once: open the producers of newly assigned partitions)."""

    def accept(self, records: Records) -> dict[TopicPartition, Any]:
        """Keep (in place) the records that may be processed; the producer each partition is bound to."""
        return {}

    def assigned(self, tps: list[TopicPartition]) -> None:
        """The group assigned these partitions."""

    async def revoked(self, tps: list[TopicPartition]) -> None:
        """The group revoked these partitions; every batch in flight was finished and settled first."""

    async def start(self, batch: Batch) -> InFlight:
        """Select the outputs to send (and send them, when the guarantee may before ``finish``)."""
        raise NotImplementedError

    async def finish(self, inflight: InFlight) -> None:
        """Publish what is left, retried until done or abandoned; the commit may still be running."""
        raise NotImplementedError

    async def settle(self) -> None:
        """Wait for the commit in flight; its error is raised here."""

    def commit_done(self) -> bool:
        """No commit in flight (``settle`` would return at once)."""
        return True
