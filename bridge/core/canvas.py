"""The Canvas format: ``{"metadata": {...}, "body": {...}}`` in, one record out.

The decoding strategies (``bridge.core.decoding``) are tried in order on the whole value:
``take`` tries the exact Structs (then their twins) for the metadata and the body in as few
msgspec calls as possible, and returns ``None`` when they do not fit; ``general`` then decodes
each part with every strategy, and says precisely why a value cannot be published typed.
Both end in the same record builder (``Records.canvas``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from bridge.core.decoding import EXACT, GENERIC, LENIENT, TWIN, _Decoded, _key_sets, _Slow, _TypedDecoder
from bridge.core.lenient import _EPOCH, _MS, _loads, _normalized_time
from bridge.core.limits import depth_ok
from bridge.core.outputs import R_INVALID_BODY, R_INVALID_METADATA, R_INVALID_TIMESTAMP, Publish, Rejected, Source
from bridge.core.plans import _NormalizeState, _Plan
from bridge.core.records import Extras, NameHeaders, Records
from bridge.core.routing import Routes
from bridge.core.twins import _Twins
from bridge.events import CANVAS_EVENTS, CanvasMetadata
from bridge.timestamps import TimestampError

_NULL = msgspec.Raw(b"null")
#: What the exact strategy may meet, and leaves to ``general`` (which says what it is): a value
#: that fits no Struct or twin, a naive (``TypeError``) or out-of-range timestamp.
TAKE_ERRORS = (msgspec.MsgspecError, _Slow, TimestampError, TypeError, UnicodeDecodeError)


class _CanvasIn(msgspec.Struct, forbid_unknown_fields=True):
    """The exact strategy's view of a Canvas-format value: the metadata typed in the same pass.

    Unknown top-level fields send the value to ``general``, which ignores them too but also
    checks the depth of what it skips.
    """

    metadata: CanvasMetadata
    body: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


#: What ``take`` needs of a catalog event type: its body decoder, its topic and name headers,
#: whether its Structs bound the depth within limits.max_depth, and the check for UNSET fields
#: (None: no ``Expected`` field).
_Route = tuple[_TypedDecoder, str, NameHeaders, bool, Callable[[Any], bool] | None]


class CanvasFormat:
    """Decodes and records Canvas-format values, counting in ``counts`` which strategy took each."""

    def __init__(self, plans: dict[type, _Plan], lenient: bool, max_depth: int, routes: Routes,
                 records: Records, counts: list[int]) -> None:  # fmt: skip
        twins = (_Twins(times=False), _Twins(times=True))  # integer ids, then also Ruby-form times
        self.metadata = _TypedDecoder(CanvasMetadata, plans, lenient, twins)
        self.bodies = {name: _TypedDecoder(t, plans, lenient, twins) for name, t in CANVAS_EVENTS.items()}
        self._lenient = lenient
        self._max_depth = max_depth
        self._routes = routes
        self._records = records
        self._record = records.canvas  # bound once: the per-event call
        self._counts = counts
        self._body_keys = {name: _key_sets(t) for name, t in CANVAS_EVENTS.items()}
        self._top = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
        self._canvas_in = msgspec.json.Decoder(_CanvasIn).decode
        self._in_twins: list[tuple[Callable[[bytes], Any], Callable[[Any], None]]] = []
        for twin, _, fix in self.metadata.tiers:
            twin_in = msgspec.defstruct(f"_CanvasIn{twin.__name__}", [
                ("metadata", twin),
                ("body", msgspec.Raw, msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))),
            ], forbid_unknown_fields=True)  # fmt: skip
            self._in_twins.append((msgspec.json.Decoder(twin_in).decode, fix))
        self._normalize_metadata = self.metadata.normalize_aware
        meta_depth = self.metadata.depth
        self._routes_by_name: dict[str, _Route] = {
            name: (d, routes.canvas[name], records.name_headers(name, "canvas"),
                   meta_depth is not None and d.depth is not None and 1 + max(meta_depth, d.depth) <= max_depth,
                   d.missing.check if d.missing is not None else None)
            for name, d in self.bodies.items() if name in routes.canvas
        }  # fmt: skip

    def take(self, value: bytes, source: Source) -> Publish | None:
        """The exact Structs (or their twins) for metadata and body, every timestamp with an offset."""
        strategy = EXACT
        try:
            try:
                env = self._canvas_in(value)
            except msgspec.ValidationError:  # integer ids, Ruby times? (else: the general path)
                env = self._in_twin(value)
                strategy = TWIN
            m = env.metadata
            event_name = m.event_name
            route = self._routes_by_name.get(event_name)
            if route is None:
                return None
            decoder, topic, name_headers, bounded, has_missing = route
            if not bounded and not depth_ok(value, self._max_depth):
                return None
            try:
                body = decoder.exact_decode(env.body)
            except msgspec.ValidationError:
                body = decoder.twin_decode(env.body)
                strategy = TWIN
            extras = None
            if has_missing is not None and has_missing(body):  # an Expected field is UNSET
                if not self._lenient:
                    return None  # the general path says which field is missing
                extras = Extras(missing=decoder.fill_missing(body, "body"))
            event_ms = (m.event_time - _EPOCH) // _MS  # TypeError when naive
            if event_ms < 0:
                return None
            self._normalize_metadata(m)
            decoder.normalize_aware(body)
        except TAKE_ERRORS:
            return None
        self._counts[strategy] += 1
        event_text: Any = m.event_time  # normalized: its UTC text, as the JSON string (msgspec.Raw)
        return self._record(source, topic, name_headers, event_name, event_text, event_ms, m, m, body, extras)

    def _in_twin(self, value: bytes) -> Any:
        for decode, fix in self._in_twins:
            try:
                env = decode(value)
            except msgspec.ValidationError:
                continue
            fix(env.metadata)
            return env
        raise _Slow

    def general(self, top: dict[str, msgspec.Raw], source: Source, state: _NormalizeState) -> Publish:
        """Every strategy for each part; a value none takes is ``Rejected``, saying why."""
        meta = self.metadata.decode(top["metadata"], "metadata", state, R_INVALID_METADATA)
        body_raw = top.get("body", _NULL)
        m: CanvasMetadata = meta.obj
        if meta.malformed:
            raise Rejected(R_INVALID_TIMESTAMP, f"{meta.malformed[0]} is not a timestamp")
        event_name = declared = m.event_name
        event_text, event_ms = _normalized_time(m.event_time, "metadata.event_time")
        decoder = self.bodies.get(event_name)
        topic = self._routes.canvas_topic(event_name, known=decoder is not None)
        if decoder is None:
            tree = _loads(body_raw, "body", R_INVALID_BODY)
            if not isinstance(tree, dict):
                raise Rejected(R_INVALID_BODY, f"body of {event_name!r} is not a JSON object")
            body = _Decoded(None, tree, strategy=GENERIC)
        else:
            try:
                body = decoder.decode(body_raw, "body", state, R_INVALID_BODY)
            except Rejected as rej:
                rescued = self._misfiled(body_raw, event_name, state) if self._lenient else None
                if rescued is None:
                    raise rej from None
                event_name, body = rescued
                body.strategy = LENIENT
                topic = self._routes.canvas_topic(event_name, known=True)
        self._counts[max(meta.strategy, body.strategy)] += 1
        extras = Extras(body.strategy == GENERIC, meta.unknown + body.unknown, body.malformed, declared,
                        meta.missing + body.missing)  # fmt: skip
        name_headers = self._records.name_headers(event_name, "canvas")
        return self._records.canvas(source, topic, name_headers, event_name, event_text, event_ms, m, meta.out,
                                    body.out, extras)  # fmt: skip

    def _misfiled(self, body: bytes, declared: str, state: _NormalizeState) -> tuple[str, _Decoded] | None:
        """A body that fits exactly one *other* event type was misfiled upstream.

        Canvas's own catalog has one: a ``grade_override`` body sent as ``grade_change``. Only a
        body with fields its declared type does not have, and an unambiguous match with no
        unknown field, is taken (integer ids, the accepted timestamp forms and missing fields
        other than the identifiers are fine, as for any body); anything else stays a dead
        letter. (A body whose fields all belong to its declared type is of that type, missing its
        identifier: re-filing it would guess, e.g. ``master_migration_completed`` without its id
        as ``master_template_created``.)
        """
        try:
            keys = self._top(body).keys()
        except msgspec.MsgspecError:
            return None  # not an object: it fits no body
        own = self._body_keys[declared][1]
        if own is not None and keys <= own:
            return None
        matches = []
        for name, decoder in self.bodies.items():
            required, allowed = self._body_keys[name]
            # Cheap necessary conditions first: every required field present, none unknown.
            if name == declared or not required <= keys or (allowed is not None and not keys <= allowed):
                continue
            try:
                matches.append((name, decoder.decode_strict(body, "body", state)))
            except (Rejected, msgspec.MsgspecError):
                try:  # integer ids and the other timestamp forms are fine; unknown fields are not
                    matches.append((name, decoder.decode_twin(body, "body", state)))
                except (Rejected, msgspec.MsgspecError, _Slow, TimestampError):
                    continue
            if len(matches) > 1:
                return None
        return matches[0] if matches else None
