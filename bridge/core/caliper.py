"""The Caliper format: an envelope ``{"sensor", "sendTime", "dataVersion", "data": [...]}`` in,
one record per event of ``data`` out.

As for Canvas (``bridge.core.canvas``): ``take`` tries the exact Structs on every event of the
envelope, ``general`` every strategy on each; both end in ``Records.caliper``.
"""

from __future__ import annotations

import re

import msgspec

from bridge.core.canvas import TAKE_ERRORS
from bridge.core.decoding import EXACT, GENERIC, _Decoded, _TypedDecoder
from bridge.core.lenient import _EPOCH, _MS, _loads, _normalized_time, _parse_required_time, _text_and_ms
from bridge.core.limits import depth_ok
from bridge.core.outputs import R_INVALID_CALIPER, R_INVALID_TIMESTAMP, Publish, Rejected, Source
from bridge.core.plans import _NormalizeState, _Plan
from bridge.core.records import Extras, NameHeaders, Records
from bridge.core.routing import Routes
from bridge.core.twins import _Twins
from bridge.events.caliper import CALIPER_EVENTS, CaliperEnvelope, CaliperEventHead, caliper_event_name
from bridge.timestamps import utc_json

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


class _CaliperIn(CaliperEnvelope, forbid_unknown_fields=True):
    """The exact strategy's view of a Caliper envelope (unknown fields: ``general``)."""


class CaliperFormat:
    """Decodes and records Caliper envelopes, counting in ``counts`` which strategy took each event."""

    def __init__(self, plans: dict[type, _Plan], lenient: bool, max_depth: int, routes: Routes,
                 records: Records, counts: list[int]) -> None:  # fmt: skip
        self.events = {name: _TypedDecoder(t, plans, lenient) for name, t in CALIPER_EVENTS.items()}
        # The envelope's twin reads sendTime in the other forms too (its data stays raw).
        self._envelope = _TypedDecoder(CaliperEnvelope, plans, lenient, (_Twins(times=True),))
        self._head = msgspec.json.Decoder(CaliperEventHead).decode
        self._caliper_in = msgspec.json.Decoder(_CaliperIn).decode
        self._max_depth = max_depth
        self._routes = routes
        #: What ``take`` needs of a catalog event type: its name, decoder, topic and name headers.
        self._routes_by_name: dict[str | None, tuple[str, _TypedDecoder, str, NameHeaders]] = {
            name: (name, d, routes.caliper[name], records.name_headers(name, "caliper"))
            for name, d in self.events.items() if name in routes.caliper
        }  # fmt: skip
        self._records = records
        self._counts = counts

    def take(self, value: bytes, source: Source) -> list[Publish] | None:
        """Every event of the envelope fits its Struct exactly; every timestamp has an offset."""
        out: list[Publish] = []
        caliper = self._records.caliper
        try:
            env = self._caliper_in(value)
            send_time = utc_json(env.send_time)
            if not env.data:
                return None
            scanned = False
            for raw in env.data:
                head = self._head(raw)
                route = self._routes_by_name.get(caliper_event_name(head)) if head.id and head.type else None
                if route is None:
                    return None
                name, decoder, topic, name_headers = route
                if (decoder.depth is None or decoder.depth + 2 > self._max_depth) and not scanned:
                    if not depth_ok(value, self._max_depth):
                        return None
                    scanned = True
                event = decoder.exact_decode(raw)
                event_ms = (event.event_time - _EPOCH) // _MS  # TypeError when naive
                if event_ms < 0:
                    return None
                decoder.normalize_aware(event)
                out.append(caliper(source, topic, name_headers, name, head, env, send_time, event, event.event_time,
                                   event_ms, event))  # fmt: skip
        except TAKE_ERRORS:
            return None
        self._counts[EXACT] += len(out)
        return out

    def general(self, value: bytes, source: Source, state: _NormalizeState) -> list[Publish]:
        env_part = self._envelope.decode(value, "envelope", state, R_INVALID_CALIPER)
        env: CaliperEnvelope = env_part.obj
        send_time: str = env.send_time  # type: ignore[assignment]  # normalized to text
        if not env.data:
            raise Rejected(R_INVALID_CALIPER, "envelope.data is empty")
        out: list[Publish] = []
        strategies: list[int] = []
        for i, raw in enumerate(env.data):
            root = f"data[{i}]"
            try:
                head = self._head(raw)
            except msgspec.MsgspecError as exc:
                raise Rejected(R_INVALID_CALIPER, f"{root}: {exc}") from None
            if not head.id or not head.type:
                raise Rejected(R_INVALID_CALIPER, f"{root} has no id or no type")
            name = caliper_event_name(head)
            decoder = self.events.get(name) if name else None
            if name is None or decoder is None:
                name = f"{_snake(head.type)}_{_snake(head.action)}" if head.action else _snake(head.type)
                tree = _loads(raw, root, R_INVALID_CALIPER)
                event_time = _parse_required_time(tree.get("eventTime"), f"{root}.eventTime", state)
                event_text, event_ms = _text_and_ms(event_time, f"{root}.eventTime")
                part = _Decoded(tree, tree, strategy=GENERIC)
            else:
                part = decoder.decode(raw, root, state, R_INVALID_CALIPER)
                if part.malformed and any(p.endswith(".eventTime") for p in part.malformed):
                    raise Rejected(R_INVALID_TIMESTAMP, f"{root}.eventTime is not a timestamp")
                event_text, event_ms = _normalized_time(part.obj.event_time, f"{root}.eventTime")
            generic = part.strategy == GENERIC
            strategies.append(max(env_part.strategy, part.strategy))
            topic = self._routes.caliper_topic(name, generic)
            extras = Extras(generic, part.unknown, part.malformed)
            name_headers = self._records.name_headers(name, "caliper")
            out.append(self._records.caliper(source, topic, name_headers, name, head, env, send_time, part.obj,
                                             event_text, event_ms, part.out, extras))  # fmt: skip
        for strategy in strategies:  # once every event is taken: else the envelope dead-letters
            self._counts[strategy] += 1
        return out
