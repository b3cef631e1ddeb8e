"""One poller of ``ingest-sqs``: a receive -> write -> delete loop on one queue (see ``bridge.ingest.sqs``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import anyio

from bridge import metrics
from bridge.ingest.sqs_queues import RECEIPT_GONE, SQS_ERRORS, Queue, describe, error_kind
from bridge.ingest.writer import TooLarge, WriteError

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

    from bridge.ingest.sqs import SqsIngest

log = logging.getLogger("bridge.ingest.sqs")

#: Attempts of one DeleteMessageBatch before its failed entries are left for redelivery.
DELETE_ATTEMPTS = 4

# States of a held message.
PENDING, WRITTEN, DELETED, TOO_LARGE, UNAVAILABLE = "pending", "written", "deleted", "too_large", "unavailable"


class Writer(Protocol):
    """What a poller needs from the raw-topic writer (``RawWriter``; the benchmark's baseline writes nowhere)."""

    async def write(self, value: bytes, *, timeout_s: float, signed: bool = ..., key_id: str | None = ...,
                    received_ms: int | None = ...) -> None: ...



@dataclass(slots=True)
class Held:
    """A received message until it is deleted or left for redelivery."""

    message_id: str
    receipt: str
    body: bytes
    received_ms: int
    state: str = PENDING


@dataclass(slots=True)
class Poller:
    """One receive -> write -> delete loop on one queue (module docstring)."""

    ingest: SqsIngest
    queue: Queue
    client: SQSClient
    backoff: float = field(init=False, default=0.0)

    async def run(self) -> None:
        while not self.ingest.should_exit:
            batch = await self._next_batch()
            if batch:
                await self.handle(batch)

    async def _next_batch(self) -> list[Held]:
        """Wait for Kafka, then receive; SIGTERM cancels this part (nothing is held yet)."""
        with anyio.CancelScope() as scope:
            self.ingest.receive_scopes[scope] = False
            try:
                if self.ingest.should_exit:
                    return []
                await self.ingest.kafka_ok.wait()
                self.ingest.receive_scopes[scope] = True
                return await self._receive()
            finally:
                del self.ingest.receive_scopes[scope]
        return []

    async def _receive(self) -> list[Held]:
        sqs, name = self.ingest.config.sqs, self.queue.name
        try:
            response = await self.client.receive_message(
                QueueUrl=self.queue.url, MaxNumberOfMessages=sqs.max_messages, WaitTimeSeconds=sqs.wait_time_s,
                VisibilityTimeout=sqs.visibility_timeout_s, MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except SQS_ERRORS as exc:
            kind = error_kind(exc)
            metrics.SQS_RECEIVE_ERRORS.labels(name, kind).inc()
            delivery = self.ingest.config.delivery
            self.backoff = min(self.backoff * 2, delivery.retry_backoff_max_s) or delivery.retry_backoff_initial_s
            self.ingest.receive_failed(self.queue, kind, exc, self.backoff)
            await anyio.sleep(self.backoff)
            return []
        self.backoff = 0.0
        self.ingest.receive_ok(self.queue)
        messages = response.get("Messages", [])
        if not messages:
            return []
        now = time.time()
        received_ms = int(now * 1000)
        metrics.SQS_RECEIVED.labels(name).inc(len(messages))
        metrics.SQS_LAST_MESSAGE.labels(name).set(now)
        redelivered = sum(1 for m in messages if m.get("Attributes", {}).get("ApproximateReceiveCount", "1") != "1")
        if redelivered:
            metrics.SQS_REDELIVERED.labels(name).inc(redelivered)
        return [Held(m.get("MessageId", "?"), m["ReceiptHandle"], m.get("Body", "").encode("utf-8", "surrogatepass"),
                     received_ms) for m in messages]

    async def handle(self, batch: list[Held]) -> None:
        """Write the batch, delete what was acknowledged; account for what is left in the queue."""
        name = self.queue.name
        started = time.perf_counter()
        in_flight = metrics.SQS_IN_FLIGHT.labels(name)
        in_flight.inc(len(batch))
        self.ingest.held += len(batch)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep_invisible, batch)
                async with anyio.create_task_group() as writes:
                    for held in batch:
                        writes.start_soon(self._write, held)
                tg.cancel_scope.cancel()
            written = [h for h in batch if h.state == WRITTEN]
            if written:
                await self._delete(written)
                metrics.SQS_HOLD_SECONDS.labels(name).observe(time.perf_counter() - started)
        finally:
            # Cancelled (the drain ran out of time): give back at once what was not deleted.
            unfinished = [h for h in batch if h.state in (PENDING, WRITTEN)] if self.ingest.drain_expired else []
            if unfinished:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                    await self._change_visibility(unfinished, 0)
            released = {id(h) for h in unfinished}
            for held in batch:
                if id(held) in released:
                    metrics.SQS_LEFT.labels(name, "draining").inc()
                elif held.state in (TOO_LARGE, UNAVAILABLE):
                    metrics.SQS_LEFT.labels(name, held.state).inc()
            in_flight.dec(len(batch))
            self.ingest.held -= len(batch)

    async def _write(self, held: Held) -> None:
        try:
            await self.ingest.writer.write(held.body, timeout_s=self.ingest.config.sqs.write_timeout_s,
                                           received_ms=held.received_ms)
        except TooLarge as exc:
            held.state = TOO_LARGE
            log.warning("message %s of queue %s left in the queue: %s; its redrive policy moves it to the "
                        "queue's dead-letter queue after maxReceiveCount receives",
                        held.message_id, self.queue.name, exc)
        except WriteError as exc:
            held.state = UNAVAILABLE
            self.ingest.kafka_failed(str(exc))
        else:
            held.state = WRITTEN
            metrics.SQS_WRITTEN.labels(self.queue.name).inc()

    async def _keep_invisible(self, batch: list[Held]) -> None:
        """Every half visibility timeout, extend the messages not yet deleted nor failed."""
        timeout = self.ingest.config.sqs.visibility_timeout_s
        while True:
            await anyio.sleep(timeout / 2)
            waiting = [h for h in batch if h.state in (PENDING, WRITTEN)]
            if not waiting:
                return
            extended = await self._change_visibility(waiting, timeout)
            metrics.SQS_VISIBILITY_EXTENSIONS.labels(self.queue.name).inc(extended)

    async def _change_visibility(self, held: Sequence[Held], timeout_s: int) -> int:
        """ChangeMessageVisibilityBatch, best effort; the number of messages changed."""
        changed = 0
        for start in range(0, len(held), 10):
            chunk = held[start:start + 10]
            try:
                response = await self.client.change_message_visibility_batch(
                    QueueUrl=self.queue.url,
                    Entries=[{"Id": str(i), "ReceiptHandle": h.receipt, "VisibilityTimeout": timeout_s}
                             for i, h in enumerate(chunk)],
                )
            except SQS_ERRORS as exc:
                log.warning("cannot change the visibility of %d messages of queue %s (%s)", len(chunk),
                            self.queue.name, describe(exc))
                continue
            changed += len(response.get("Successful", []))
        return changed

    async def _delete(self, written: list[Held]) -> None:
        """DeleteMessageBatch, retried; what cannot be deleted is received (and written) again."""
        name, delivery = self.queue.name, self.ingest.config.delivery
        pending = {str(i): h for i, h in enumerate(written)}
        backoff = delivery.retry_backoff_initial_s
        why = ""
        for attempt in range(DELETE_ATTEMPTS):
            if attempt:
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, delivery.retry_backoff_max_s)
            ids = list(pending)
            for start in range(0, len(ids), 10):
                chunk = ids[start:start + 10]
                try:
                    response = await self.client.delete_message_batch(
                        QueueUrl=self.queue.url,
                        Entries=[{"Id": i, "ReceiptHandle": pending[i].receipt} for i in chunk])
                except SQS_ERRORS as exc:
                    why = describe(exc)
                    continue
                deleted = 0
                for ok in response.get("Successful", []):
                    held = pending.pop(ok["Id"], None)
                    if held is not None:
                        held.state = DELETED
                        deleted += 1
                metrics.SQS_DELETED.labels(name).inc(deleted)
                for failed in response.get("Failed", []):
                    why = f"{failed.get('Code')}: {failed.get('Message', '')}"[:300]
                    if failed.get("SenderFault") or failed.get("Code") in RECEIPT_GONE:
                        pending.pop(failed["Id"], None)  # retrying cannot help
            if not pending:
                break
        failed_count = sum(1 for h in written if h.state == WRITTEN)
        if failed_count:
            metrics.SQS_DELETE_ERRORS.labels(name).inc(failed_count)
            log.warning("%d written messages of queue %s could not be deleted (%s): they will be received and "
                        "written again, and the bridge suppresses the copies", failed_count, name, why)

