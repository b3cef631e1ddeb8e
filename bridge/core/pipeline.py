"""``Core.process``: one raw value in, typed records or exactly one dead letter out.

    raw bytes -> limits -> decode (strategies: exact Struct, lenient twin, general lenient)
              -> normalize (UTC) -> record (value, dedupe key, record key) -> route
              -> [Publish(topic, key, headers, value, timestamp_ms), ...]  or  [DeadLetter(...)]

No I/O, no clock (the caller passes ``now_ms``), no state that changes what an event gives
(only counters of which strategy took how many events). Nothing here raises on input.
"""

from __future__ import annotations

import msgspec

from bridge.config import Config, DecodeSettings, LimitsSettings, TopicsSettings
from bridge.core.caliper import CaliperFormat
from bridge.core.canvas import CanvasFormat
from bridge.core.decoding import STRATEGIES
from bridge.core.limits import check_shape, check_size
from bridge.core.outputs import (
    R_INTERNAL,
    R_INVALID_JSON,
    R_INVALID_UTF8,
    R_NOT_OBJECT,
    R_UNKNOWN_ENVELOPE,
    DeadLetter,
    Output,
    Rejected,
    Source,
    dead_letter,
)
from bridge.core.plans import _NormalizeState, _Plan
from bridge.core.records import Records
from bridge.core.routing import Routes
from bridge.events import CANVAS_EVENTS
from bridge.events.caliper import CALIPER_EVENTS
from bridge.pii import PiiPolicy


class Core:
    """The bridge's pipeline, configured once. ``process`` is pure and never raises."""

    @classmethod
    def from_config(cls, config: Config) -> Core:
        return cls(config.topics, config.decode, config.limits, PiiPolicy(config.pii))

    def __init__(
        self,
        topics: TopicsSettings,
        decode: DecodeSettings,
        limits: LimitsSettings,
        pii: PiiPolicy | None = None,
        fast_paths: bool = True,
    ) -> None:
        """``fast_paths=False``: no ``take``, every value through ``general`` (tests compare both)."""
        self.topics = topics
        self.limits = limits
        self._assume_utc = decode.naive_timestamps == "assume_utc"
        lenient = decode.mode == "lenient"
        #: Events taken by each decoding strategy (``STRATEGIES``), read by ``strategy_counts()``.
        self._counts = [0] * len(STRATEGIES)
        self.routes = Routes(topics, CANVAS_EVENTS, CALIPER_EVENTS)
        records = Records(topics, pii if pii is not None and pii.active else None)
        plans: dict[type, _Plan] = {}
        self.canvas = CanvasFormat(plans, lenient, limits.max_depth, self.routes, records, self._counts)
        self.caliper = CaliperFormat(plans, lenient, limits.max_depth, self.routes, records, self._counts)
        self._top = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
        # Per-value constants, read once here instead of through the settings.
        self._max_bytes = limits.max_message_bytes
        self._take_limit = limits.max_string_length if fast_paths else -1

    def strategy_counts(self) -> dict[str, int]:
        """How many events each decoding strategy took (``exact``, ``twin``, ``lenient``, ``generic``)."""
        return dict(zip(STRATEGIES, self._counts, strict=True))

    def process(self, value: bytes | None, source: Source, now_ms: int) -> list[Output]:
        """Turn one raw value into typed records, or into exactly one dead letter."""
        try:
            return self._process(value, source)
        except Rejected as rej:
            return [self.dead_letter(value, source, now_ms, rej.reason, rej.detail)]
        except UnicodeDecodeError as exc:  # msgspec checks UTF-8 lazily, inside strings
            return [self.dead_letter(value, source, now_ms, R_INVALID_UTF8, str(exc))]
        except Exception as exc:  # a bug must not lose the event either
            detail = f"{type(exc).__name__}: {exc}"
            return [self.dead_letter(value, source, now_ms, R_INTERNAL, detail)]

    def dead_letter(self, value: bytes | None, source: Source, now_ms: int, reason: str, detail: str) -> DeadLetter:
        return dead_letter(self.topics.dead_letter, value, source, now_ms, reason, detail)

    def _process(self, value: bytes | None, source: Source) -> list[Output]:
        if not value or len(value) > self._max_bytes:
            value = check_size(value, self.limits)  # raises: empty, or too large
        # The exact strategy first, on the whole value: it takes the events that fit their Structs
        # exactly (most traffic) in as few msgspec calls as possible. Whatever it does not take,
        # ``general`` decides, with the same result for what both could take. (A value longer than
        # limits.max_string_length may hold a too long string: ``general`` checks it.)
        if len(value) <= self._take_limit:
            # Which format: the first key usually tells (Canvas writes "metadata" and "sensor"
            # first); a scan only otherwise (a full scan costs ~1 us on a 2 kB Caliper envelope).
            if value.startswith(b'{"metadata"'):
                caliper = False
            elif value.startswith(b'{"sensor"'):
                caliper = True
            else:
                caliper = b'"metadata"' not in value and b'"sensor"' in value
            if caliper:
                many = self.caliper.take(value, source)
                if many is not None:
                    return many  # type: ignore[return-value]  # list is invariant: Publish is an Output
            else:
                one = self.canvas.take(value, source)
                if one is not None:
                    return [one]
        check_shape(value, self.limits)
        try:
            top = self._top(value)
        except msgspec.ValidationError:
            raise Rejected(R_NOT_OBJECT, "the value is JSON but not an object") from None
        except msgspec.DecodeError as exc:
            reason = R_INVALID_JSON
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                reason = R_INVALID_UTF8
            raise Rejected(reason, str(exc)) from None
        state = _NormalizeState(self._assume_utc)
        if "metadata" in top:
            return [self.canvas.general(top, source, state)]
        if "data" in top and "sensor" in top:
            return list(self.caliper.general(value, source, state))
        keys = ", ".join(sorted(top)[:10])
        raise Rejected(R_UNKNOWN_ENVELOPE, f"neither Canvas (metadata, body) nor Caliper (sensor, data): {keys}")
