"""The one writer of the raw topic, shared by every ingest path (HTTPS, Caliper, SQS).

``write`` returns only once the broker acknowledged the record (``acks=all``, idempotent
producer); the ingest path then acknowledges Canvas (an HTTP 2xx, an SQS delete). Anything else
raises, and the caller must not acknowledge:

- ``TooLarge``: over ``limits.max_message_bytes`` (or refused by the broker as too large):
  nothing is sent;
- ``Unavailable``: not acknowledged within the timeout, the broker unreachable or refusing.
  The record may still be written later by the producer's own retries; Canvas's retry then
  makes a duplicate with the same key, which the bridge's duplicate window suppresses.

The producer is started in the background (``run``) and restarted with backoff, so an ingest
service can serve (and answer 503, not ready) while Kafka is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kerr
from aiokafka.protocol.metadata import MetadataRequest
from anyio.abc import TaskStatus

from bridge import metrics
from bridge.config import Config
from bridge.errors import Backoff
from bridge.ingest.raw import raw_headers, raw_key
from bridge.kafka import make_producer, stop_quietly
from bridge.transactions import sender_error

log = logging.getLogger("bridge.ingest")

#: Errors that say the broker will never take this record as it is: not worth a retry.
_TOO_LARGE = (kerr.MessageSizeTooLargeError, kerr.RecordTooLargeError)
#: Errors after which an idempotent producer never writes that partition again (``_replace``).
_BROKEN_PRODUCER = (kerr.OutOfOrderSequenceNumber, kerr.UnknownProducerId, kerr.InvalidProducerEpoch)


class WriteError(Exception):
    """The record is not known to be on the raw topic: do not acknowledge it."""

    reason = "refused"


class TooLarge(WriteError):
    reason = "too_large"


class Unavailable(WriteError):
    reason = "unavailable"


class RawWriter:
    """Writes raw records for one ingest source (``https``, ``caliper``, ``sqs``)."""

    def __init__(self, config: Config, source: str) -> None:
        self._config = config
        self._source = source
        self._topic = config.raw_topic
        self._max_bytes = config.limits.max_message_bytes
        self._producer: AIOKafkaProducer | None = None
        self._connected = asyncio.Event()
        self._broken = asyncio.Event()
        self.last_error = "starting: Kafka not reached yet"
        self._acked = metrics.INGEST_WRITTEN.labels(source)
        self._ack_seconds = metrics.INGEST_ACK_SECONDS.labels(source)

    @property
    def connected(self) -> bool:
        """The producer started (it has reached a broker once)."""
        return self._producer is not None

    async def wait_connected(self) -> None:
        """Until the producer has started (the first time)."""
        await self._connected.wait()

    def _new_producer(self) -> AIOKafkaProducer:
        return make_producer(self._config, client_id=f"{self._config.kafka.client_id}-ingest-{self._source}",
                             largest_record=self._max_bytes)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the producer, retrying with backoff while Kafka is unreachable; replace it when it
        breaks (``_replace``); stop it on cancel."""
        task_status.started()
        try:
            while True:
                await self._start()
                await self._broken.wait()
                self._broken = asyncio.Event()
                broken, self._producer = self._producer, None
                if broken is not None:
                    await stop_quietly(broken, timeout_s=5)
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()

    async def _start(self) -> None:
        backoff = Backoff.of(self._config)
        while True:
            producer = self._new_producer()
            try:
                await producer.start()
            except (kerr.KafkaError, OSError) as exc:
                await stop_quietly(producer)
                self.last_error = f"cannot reach Kafka: {type(exc).__name__}"
                delay = backoff.next()
                log.warning("cannot reach Kafka at %s (%s: %s); retrying in %.1fs",
                            self._config.kafka.bootstrap_servers, type(exc).__name__, exc, delay)
                await anyio.sleep(delay)
                continue
            self._producer = producer
            self._connected.set()
            self.last_error = ""
            log.info("writing %s deliveries to %s", self._source, self._topic)
            return

    def _replace(self, producer: AIOKafkaProducer, why: BaseException) -> None:
        """The idempotent producer's state broke: ``run`` starts a new one (a new producer id).

        aiokafka, unlike the Java client, never resets an idempotent producer's sequence numbers:
        after a batch expired while the broker was down, the broker refuses every later batch of
        that partition with OutOfOrderSequenceNumber, for ever. A new producer starts over; a
        record it writes again is a duplicate with the same key, which the bridge suppresses.
        """
        if self._producer is producer and not self._broken.is_set():
            log.warning("the %s producer is broken (%s: %s); starting a new one", self._source,
                        type(why).__name__, why)
            self._broken.set()

    async def reachable(self, timeout_s: float) -> bool:
        """The broker answers a metadata request for the raw topic, and every partition has a leader.

        A readiness probe that costs one small request: an ingest path stops taking deliveries
        while it is False (nothing received that could not be written); ``last_error`` says why.
        """
        producer = self._producer
        if producer is None:
            return False
        try:
            with anyio.fail_after(timeout_s):
                node = producer.client.get_random_node()
                if node is None:
                    raise kerr.KafkaConnectionError("no broker known")
                response = await producer.client.send(
                    node, MetadataRequest([self._topic], allow_auto_topic_creation=False))
        except (kerr.KafkaError, OSError, TimeoutError) as exc:
            self.last_error = f"Kafka unreachable ({type(exc).__name__})"
            return False
        # Every version's topic is (error_code, name, ..., partitions); a partition
        # (error_code, partition, leader, ...).
        topic = next((t for t in response.topics if t[1] == self._topic), None)
        if topic is None or topic[0] != 0:
            code = topic[0] if topic is not None else -1
            self.last_error = f"raw topic {self._topic} not available (Kafka error code {code}; does it exist?)"
            return False
        if not topic[-1] or any(p[2] < 0 for p in topic[-1]):
            self.last_error = f"raw topic {self._topic}: a partition has no leader"
            return False
        return True

    async def close(self) -> None:
        """Flush what was sent and stop the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_quietly(producer)

    async def write(self, value: bytes, *, timeout_s: float, signed: bool = False,
                    key_id: str | None = None, received_ms: int | None = None, source: str | None = None) -> None:
        """Write one raw record and wait for the broker's acknowledgement (module docstring).

        ``source`` overrides the writer's own in the ``ingest_source`` header and the metrics (one
        producer for the ``https`` and ``caliper`` endpoints of one process).
        """
        source = source or self._source
        if len(value) > self._max_bytes:
            self._failed(TooLarge.reason, source)
            raise TooLarge(f"{len(value)} bytes, over limits.max_message_bytes={self._max_bytes}")
        producer = self._producer
        if producer is None:
            self._failed(Unavailable.reason, source)
            raise Unavailable(self.last_error or "Kafka not reached yet")
        received = received_ms if received_ms is not None else time.time_ns() // 1_000_000
        headers = raw_headers(source, signed=signed, key_id=key_id, received_ms=received)
        started = time.perf_counter()
        try:
            with anyio.fail_after(timeout_s):
                sent: asyncio.Future[Any] = await producer.send(
                    self._topic, value, key=raw_key(value), headers=headers)
                await sent
        except TimeoutError:
            self._failed(Unavailable.reason, source)
            self.last_error = f"not acknowledged within {timeout_s:.1f}s"
            raise Unavailable(self.last_error) from None
        except _TOO_LARGE as exc:
            self._failed(TooLarge.reason, source)
            raise TooLarge(f"the broker refused the record as too large ({type(exc).__name__})") from exc
        except (kerr.KafkaError, OSError) as exc:
            self._failed(Unavailable.reason, source)
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if isinstance(exc, _BROKEN_PRODUCER) or sender_error(producer) is not None:
                self._replace(producer, exc)
            raise Unavailable(self.last_error) from exc
        if source == self._source:
            self._ack_seconds.observe(time.perf_counter() - started)
            self._acked.inc()
        else:
            metrics.INGEST_ACK_SECONDS.labels(source).observe(time.perf_counter() - started)
            metrics.INGEST_WRITTEN.labels(source).inc()
        self.last_error = ""

    def _failed(self, reason: str, source: str) -> None:
        metrics.INGEST_WRITE_FAILURES.labels(source, reason).inc()
