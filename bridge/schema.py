"""The JSON Schema of each typed topic's value (``canvas-bridge schema``), from the catalog's Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


def _open_schema(node: Any) -> Any:
    """Unknown fields are carried through to the output, so the published schema stays open."""
    if isinstance(node, dict):
        return {k: _open_schema(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [_open_schema(v) for v in node]
    return node


def _datetime_fields(typ: type) -> dict[str, set[str]]:
    """Struct name -> wire names of its datetime fields (for the ``date-time`` format)."""
    found: dict[str, set[str]] = {}
    seen: set[type] = set()

    def walk(t: msgspec.inspect.Type) -> bool:
        """True when ``t`` is (an optional, annotated or list of) datetime."""
        if isinstance(t, msgspec.inspect.Metadata):
            return walk(t.type)
        if isinstance(t, msgspec.inspect.UnionType):
            return any([walk(x) for x in t.types])
        if isinstance(t, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
            return walk(t.item_type)
        if isinstance(t, msgspec.inspect.DictType):
            walk(t.value_type)
            return False
        if isinstance(t, msgspec.inspect.StructType) and t.cls not in seen:
            seen.add(t.cls)
            found[t.cls.__name__] = {f.encode_name for f in t.fields if walk(f.type)}
        return isinstance(t, msgspec.inspect.DateTimeType)

    walk(msgspec.inspect.type_info(typ))
    return found


def _add_datetime_format(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "string":
            node["format"] = "date-time"
        for key in ("anyOf", "items"):
            sub = node.get(key)
            for item in sub if isinstance(sub, list) else [sub]:
                _add_datetime_format(item)


def json_schema(typ: type) -> Any:
    """msgspec's JSON Schema, open to additional properties, with ``date-time`` formats marked."""
    schema = msgspec.json.schema(typ)
    for name, fields in _datetime_fields(typ).items():
        props = schema.get("$defs", {}).get(name, {}).get("properties", {})
        for field in fields:
            _add_datetime_format(props.get(field))
    return _open_schema(schema)


def record_types() -> dict[str, tuple[str, type]]:
    """Topic value types: event name -> (topic suffix, Struct of the published value)."""
    from bridge.events import CANVAS_EVENTS, CanvasMetadata
    from bridge.events.caliper import CALIPER_EVENTS

    common: list[Any] = [
        ("event_name", str),
        ("event_time", datetime),
        ("event_time_ms", int),
        ("dedupe_key", str),
        ("generic", bool),
    ]
    out: dict[str, tuple[str, type]] = {}
    for name, body in CANVAS_EVENTS.items():
        fields = [*common, ("format", str), ("metadata", CanvasMetadata), ("body", body)]
        out[name] = ("canvas", msgspec.defstruct(f"{body.__name__}Record", fields, kw_only=True))
    for name, event in CALIPER_EVENTS.items():
        fields = [
            *common,
            ("format", str),
            ("sensor", str),
            ("send_time", datetime),
            ("data_version", str),
            ("event", event),
        ]
        out[f"caliper.{name}"] = ("caliper", msgspec.defstruct(f"{event.__name__}Record", fields, kw_only=True))
    return out
