"""Typed records the broker refuses, or would refuse: rerouted, never retried for ever.

The core accepts an event; the broker may still refuse its typed record: an event time outside the
topic's timestamp range, a topic that does not exist (``topics.create = false``) or that the
bridge may not write, a record over the topic's ``max.message.bytes``, a record the topic's
policy refuses. Retrying cannot help, and every event behind it on its partition would wait.

Two layers (docs/poison-records.md):

1. **Screening, before sending** (``Screen``): what the topic's metadata and configuration
   already say (bridge/topicinfo.py) is applied to each typed record: out-of-range timestamps
   follow ``decode.out_of_range_time`` (``clamp``: the Kafka timestamp becomes the processing
   time and a header keeps the event time; ``dead_letter``), missing or forbidden topics follow
   ``topics.missing``, oversized records are dead-lettered. Two integer comparisons and a length
   per record on the happy path.
2. **Refusals after sending** (``refusal_reason``): a produce batch the broker refused with a
   record-level error marks its records as suspects; the attempt is redone (a new producer: a
   refused idempotent batch leaves a gap in its sequence numbers) with each suspect in a batch of
   its own, so that a second refusal names the record, which the next attempt dead-letters.

A rerouted record's dead letter carries the original raw bytes, the reason, and the typed topic it
was meant for (``dlq_intended_topic``); it is the input's output for the commit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import msgspec
from aiokafka import errors as kerr

from bridge import metrics
from bridge.core import (
    H_DLQ_TIME,
    H_REASON,
    H_REASON_DETAIL,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    DeadLetter,
    Output,
    Publish,
)

R_TIMESTAMP = "timestamp_out_of_range"
R_MISSING_TOPIC = "missing_topic"
R_NOT_AUTHORIZED = "topic_not_authorized"
R_RECORD_TOO_LARGE = "record_too_large"
R_REFUSED = "record_refused"
REFUSAL_REASONS = (R_TIMESTAMP, R_MISSING_TOPIC, R_NOT_AUTHORIZED, R_RECORD_TOO_LARGE, R_REFUSED)

#: The typed topic a rerouted record was meant for (dead letters and catch-all records).
H_INTENDED_TOPIC = "dlq_intended_topic"
#: On a clamped record: its event time (ms since the epoch), which its Kafka timestamp is not.
H_TIMESTAMP_CLAMPED = "timestamp_clamped"



class InvalidRecordError(kerr.BrokerResponseError):  # type: ignore[misc]
    """INVALID_RECORD (87), e.g. a record without a key for a compacted topic. aiokafka does not
    know this code (it would report an ``UnknownError``); registered so that it is told apart."""

    errno = 87
    message = "INVALID_RECORD"
    description = "This record has failed the validation on broker and hence will be rejected."


kerr.kafka_errors.setdefault(InvalidRecordError.errno, InvalidRecordError)

#: Broker errors about the records of a produce batch that retrying cannot fix.
_REASONS: dict[type[BaseException], str] = {
    kerr.InvalidTimestampError: R_TIMESTAMP,
    kerr.MessageSizeTooLargeError: R_RECORD_TOO_LARGE,
    kerr.RecordListTooLargeError: R_RECORD_TOO_LARGE,
    kerr.RecordTooLargeError: R_RECORD_TOO_LARGE,
    kerr.TopicAuthorizationFailedError: R_NOT_AUTHORIZED,
    kerr.CorruptRecordException: R_REFUSED,
    kerr.PolicyViolationError: R_REFUSED,
    kerr.InvalidTopicError: R_REFUSED,
    kerr.for_code(InvalidRecordError.errno): R_REFUSED,  # e.g. a compacted topic and a null key
}

#: Bytes a record batch of one record adds to key, value and headers (61) plus varints, rounded up.
_RECORD_OVERHEAD = 128
#: Screening compares the value alone with max.message.bytes minus this; only values above it are
#: measured with their key and headers.
_VALUE_SLACK = 4096


def refusal_reason(exc: BaseException) -> str | None:
    """The reason a produce error refuses the records themselves, or None (retry, or fatal)."""
    return _REASONS.get(type(exc))


def record_size(out: Output) -> int:
    """An upper bound of the bytes a record batch holding only this record takes on the broker."""
    size = len(out.value or b"") + len(out.key or b"") + _RECORD_OVERHEAD
    for name, value in out.headers:
        size += len(name) + len(value) + 10
    return size


@dataclass(slots=True)
class TopicLimits:
    """What the broker accepts on one output topic (bridge/topicinfo.py reads it)."""

    exists: bool = True
    authorized: bool = True
    create_time: bool = True  # message.timestamp.type = CreateTime: the broker checks the timestamp
    after_ms: int = 3_600_000  # message.timestamp.after.max.ms
    before_ms: int = 2**63 - 1  # message.timestamp.before.max.ms
    max_bytes: int = 1_048_588  # max.message.bytes
    checked_at: float = 0.0  # time.monotonic() of the last look

    @property
    def writable(self) -> bool:
        return self.exists and self.authorized

    def offsets(self) -> tuple[int, int]:
        """The Kafka timestamps sent as they are, relative to now: a margin inside the broker's range
        (its clock, and the time in flight)."""
        if not self.create_time:
            return -(2**63), 2**63
        margin_after = min(60_000, self.after_ms // 10)
        margin_before = min(60_000, self.before_ms // 10)
        return -self.before_ms + margin_before, self.after_ms - margin_after

    def bounds(self, now_ms: int) -> tuple[int, int]:
        lo, hi = self.offsets()
        return now_ms + lo, now_ms + hi


class Screen:
    """Applies the topics' limits and what earlier refusals taught to the outputs of an attempt.

    ``suspects`` and ``refused`` are keyed by (typed topic, dedupe key): the same event gives the
    same key when its batch is processed again (exactly-once redoes a batch from the committed
    offset after aborting it).
    """

    _MEMO_MAX = 100_000

    def __init__(self, *, dead_letter_topic: str, catch_all_topic: str, out_of_range: str, missing: str,
                 catalog_topics: frozenset[str]) -> None:
        self.dead_letter_topic = dead_letter_topic
        self.catch_all_topic = catch_all_topic
        self.clamp = out_of_range == "clamp"
        self.missing = missing
        self.catalog_topics = catalog_topics
        self.suspects: set[tuple[str, str]] = set()
        self.refused: dict[tuple[str, str], str] = {}
        self.clamped = 0
        self._envelope_of: tuple[int, int] = (0, -1)
        self._envelope_cache: tuple[int, int, int, frozenset[str]] = (0, 0, 0, frozenset())

    def label(self, topic: str) -> str:
        """The bounded ``topic`` label of the refusal metric."""
        return topic if topic in self.catalog_topics else "_other"

    def learn(self, outs: list[Output], exc: BaseException, reason: str) -> None:
        """A produce batch of these outputs was refused: a lone record is refused for good, a
        batch's records become suspects (sent one per batch next time)."""
        if len(self.suspects) + len(self.refused) > self._MEMO_MAX:
            self.suspects.clear()
            self.refused.clear()
        publishes = [o for o in outs if isinstance(o, Publish)]
        if len(publishes) == 1:
            out = publishes[0]
            self.refused[(out.topic, out.dedupe_key)] = reason
            self.suspects.discard((out.topic, out.dedupe_key))
        else:
            self.suspects.update((o.topic, o.dedupe_key) for o in publishes)

    def is_suspect(self, out: Output) -> bool:
        return bool(self.suspects) and isinstance(out, Publish) and (out.topic, out.dedupe_key) in self.suspects

    def _envelope(self, limits: dict[str, TopicLimits], version: int) -> tuple[int, int, int, frozenset[str]]:
        """What every known topic accepts (the tightest range and size), and the topics it may not
        write: one check per record on the happy path; only records outside it are looked at per
        topic. Computed again when the limits change (``version``)."""
        if version >= 0 and self._envelope_of == (id(limits), version):
            return self._envelope_cache
        default = TopicLimits()
        lo_off, hi_off = default.offsets()
        max_value = default.max_bytes
        for lim in limits.values():
            if lim.writable:
                lo, hi = lim.offsets()
                lo_off, hi_off, max_value = max(lo_off, lo), min(hi_off, hi), min(max_value, lim.max_bytes)
        blocked = frozenset(t for t, lim in limits.items() if not lim.writable)
        self._envelope_cache = (lo_off, hi_off, max_value - _VALUE_SLACK, blocked)
        self._envelope_of = (id(limits), version)
        return self._envelope_cache

    def apply(self, sends: list[Output], limits: dict[str, TopicLimits], now_ms: int,
              reroute: dict[int, tuple[str, str]], version: int = -1) -> list[str]:
        """Screen ``sends`` in place. Records to reroute are returned in ``reroute`` (index ->
        reason, detail) for the caller, which holds their raw bytes; clamped records are replaced
        here. Returns the topics the ``fail`` policy stops on (empty unless ``topics.missing = fail``).
        ``version`` changes whenever ``limits`` does (-1: unknown, computed again).
        """
        lo_off, hi_off, max_value, blocked = self._envelope(limits, version)
        lo, hi = now_ms + lo_off, now_ms + hi_off
        refused = self.refused
        failing: list[str] = []
        publish, size = Publish, len
        for i, out in enumerate(sends):
            if out.__class__ is not publish:
                continue
            if lo <= out.timestamp_ms <= hi and size(out.value) <= max_value and not (
                    blocked and out.topic in blocked) and not (
                    refused and (out.topic, out.dedupe_key) in refused):
                continue
            self._slow(i, out, limits.get(out.topic) or TopicLimits(), now_ms, sends,
                       reroute, failing)
        return failing

    def learn_results(self, results: list[Any], groups: list[list[Output]]
                      ) -> tuple[BaseException | None, dict[str, str]]:
        """Learn from an attempt's produce results (one per group of outputs): returns the first
        failure that is not a refusal, and the topics with refused batches (topic -> what happened)."""
        first: BaseException | None = None
        refused: dict[str, str] = {}
        for result, outs in zip(results, groups, strict=True):
            if not isinstance(result, BaseException):
                continue
            reason = refusal_reason(result)
            if reason is not None and outs and isinstance(outs[0], Publish):  # not the dead-letter topic
                self.learn(outs, result, reason)
                refused[outs[0].topic] = f"{outs[0].topic} ({type(result).__name__}, {len(outs)} records)"
            elif first is None:
                first = result
        return first, refused

    def reroute(self, outputs: list[tuple[Any, Output]], inputs: list[Any], sends: list[Output],
                reroute: dict[int, tuple[str, str]], limits: dict[str, TopicLimits], now_ms: int) -> None:
        """Replace ``sends[i]`` for each ``i`` of ``reroute`` by its dead letter, built from the raw
        record of the batch (``inputs``, parallel to ``outputs``), or by its catch-all record."""
        catch_all = self.catch_all_topic
        catch_all_ok = self.missing == "catch_all" and (catch_all not in limits or limits[catch_all].writable)
        wanted = {sends[i].dedupe_key for i in reroute}  # type: ignore[union-attr]
        raws: dict[str, tuple[Any, Any]] = {}
        for (tp, out), raw in zip(outputs, inputs, strict=False):
            if isinstance(out, Publish) and out.dedupe_key in wanted:
                raws[out.dedupe_key] = (tp, raw)
        for i, (reason, detail) in sorted(reroute.items()):
            out = sends[i]
            assert isinstance(out, Publish)
            if catch_all_ok and reason in (R_MISSING_TOPIC, R_NOT_AUTHORIZED) and out.topic != catch_all:
                sends[i] = to_catch_all(out, catch_all)
                metrics.REFUSED_RECORDS.labels(reason, self.label(out.topic)).inc()
                continue
            found = raws.get(out.dedupe_key)
            if found is None:  # not from a consumed batch (tests): the typed value is all there is
                found = (SimpleNamespace(topic="", partition=-1), SimpleNamespace(key=out.key, value=out.value,
                                                                                  offset=-1))
            tp, raw = found
            sends[i] = dead_letter(out, raw, tp.topic, tp.partition, self.dead_letter_topic, reason, detail, now_ms)

    def _slow(self, i: int, out: Publish, lim: TopicLimits, now_ms: int, sends: list[Output],
              reroute: dict[int, tuple[str, str]], failing: list[str]) -> None:
        topic = out.topic
        if not lim.writable:
            if self.missing == "fail":
                failing.append(topic)
            reason = R_MISSING_TOPIC if not lim.exists else R_NOT_AUTHORIZED
            what = "does not exist" if not lim.exists else "may not be written by the bridge's principal"
            reroute[i] = (reason, f"topic {topic} {what}")
            return
        known = self.refused.get((topic, out.dedupe_key))
        if known is not None and not (known == R_TIMESTAMP and self.clamp):
            reroute[i] = (known, f"the broker refused this record for {topic}")
            return
        if known is not None:  # refused for its timestamp: clamped below, whatever the range says
            self._clamp(i, out, now_ms, sends)
            return
        if record_size(out) > lim.max_bytes:
            reroute[i] = (R_RECORD_TOO_LARGE, f"{record_size(out)} bytes; {topic} takes max.message.bytes="
                                              f"{lim.max_bytes}")
            return
        lo, hi = lim.bounds(now_ms)
        ts = out.timestamp_ms
        if lo <= ts <= hi:
            return
        if self.clamp:
            self._clamp(i, out, now_ms, sends)
            return
        reroute[i] = (R_TIMESTAMP, f"event time {ts} ms is outside the range {topic} accepts "
                                   f"(message.timestamp.before.max.ms={lim.before_ms}, "
                                   f"after.max.ms={lim.after_ms})")


    def _clamp(self, i: int, out: Publish, now_ms: int, sends: list[Output]) -> None:
        self.clamped += 1
        sends[i] = msgspec.structs.replace(
            out, timestamp_ms=now_ms, headers=[*out.headers, (H_TIMESTAMP_CLAMPED, str(out.timestamp_ms).encode())])


def dead_letter(out: Publish, raw: Any, raw_topic: str, raw_partition: int, dlq_topic: str, reason: str,
                detail: str, now_ms: int) -> DeadLetter:
    """The dead letter of a typed record: the raw record's original bytes, and where it was going."""
    headers = [
        (H_REASON, reason.encode()),
        (H_REASON_DETAIL, detail[:1000].encode("utf-8", "replace")),
        (H_SOURCE_TOPIC, raw_topic.encode()),
        (H_SOURCE_PARTITION, str(raw_partition).encode()),
        (H_SOURCE_OFFSET, str(raw.offset).encode()),
        (H_DLQ_TIME, str(now_ms).encode()),
        (H_INTENDED_TOPIC, out.topic.encode()),
    ]
    return DeadLetter(dlq_topic, raw.key, raw.value, headers, reason, detail)


def to_catch_all(out: Publish, topic: str) -> Publish:
    """``topics.missing = catch_all``: the typed record, as it is, to the catch-all topic."""
    return msgspec.structs.replace(out, topic=topic, headers=[*out.headers, (H_INTENDED_TOPIC, out.topic.encode())])


def intended(out: DeadLetter) -> str | None:
    for name, value in out.headers:
        if name == H_INTENDED_TOPIC:
            return bytes(value).decode("utf-8", "replace")
    return None


def count_refusals(outs: list[Output]) -> Counter[tuple[str, str]]:
    """(reason, intended topic) of the rerouted dead letters among ``outs`` (rare: dead letters only)."""
    counts: Counter[tuple[str, str]] = Counter()
    for out in outs:
        if isinstance(out, DeadLetter) and out.reason in REFUSAL_REASONS:
            topic = intended(out)
            if topic is not None:
                counts[(out.reason, topic)] += 1
    return counts
