"""The one naive baseline: the work of ``bridge.core.Core.process`` done the obvious way, without
Structs. Every "x naive" figure is measured against it: ``core_bench.py`` calls it in-process,
``run.py``'s naive drainer calls it on every consumed value and sends each output with its own
``producer.send``.

What it does per value: ``json.loads`` to dicts; every timestamp-ish string field (a key ending in
``_at``, ``_time``, ``Time``, ``_date``, ``_until`` or starting with ``date``, a value that looks
like a date) re-formatted as UTC with ``datetime.fromisoformat`` / ``isoformat``; a dedupe key as
SHA-256 of ``json.dumps(obj, sort_keys=True)``; the event time in ms; the output record as
``json.dumps(...).encode()`` with the bridge's headers (``dedupe_key``, ``event_name``,
``event_format``) and key (the course or user id). Caliper: one output per ``data`` element,
named ``<type>_<action>`` in snake case, as the bridge names it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

#: One output: (topic, key, value, headers).
Output = tuple[str, bytes, bytes, tuple[tuple[str, bytes], ...]]

_TS_SUFFIXES = ("_at", "_time", "Time", "_date", "_until")


def _is_ts_key(key: str) -> bool:
    return key.endswith(_TS_SUFFIXES) or key.startswith("date")


def _looks_like_date(text: str) -> bool:
    return len(text) >= 16 and text[4] == "-" and text[7] == "-" and text[:4].isdigit()


def _utc_iso(text: str) -> str | None:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None  # a form fromisoformat does not take: carried as it came
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat()


def _normalize(obj: Any) -> None:
    """Re-format timestamp-ish string fields as UTC, in place, recursively."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str):
                if _is_ts_key(k) and _looks_like_date(v):
                    fixed = _utc_iso(v)
                    if fixed is not None:
                        obj[k] = fixed
            elif isinstance(v, dict | list):
                _normalize(v)
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict | list):
                _normalize(v)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:32]


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


def naive_process(value: bytes, prefix: str = "canvas.", caliper_prefix: str = "canvas.caliper.") -> list[Output]:
    """Naive equivalent of ``Core.process``: returns (topic, key, value, headers) tuples."""
    obj = json.loads(value)
    if "metadata" in obj:
        _normalize(obj)
        meta = obj["metadata"]
        name = meta["event_name"]
        key = _key(obj)
        event_time = meta["event_time"]
        record = {
            "event_name": name,
            "event_time": event_time,
            "event_time_ms": _ms(event_time),
            "dedupe_key": key,
            "format": "canvas",
            "metadata": meta,
            "body": obj.get("body"),
            "generic": False,
        }
        entity = meta.get("context_id") or meta.get("user_id") or key
        headers = (("dedupe_key", key.encode()), ("event_name", name.encode()), ("event_format", b"canvas"))
        return [(prefix + name, str(entity).encode(), json.dumps(record).encode(), headers)]
    send_time = obj.get("sendTime")
    if isinstance(send_time, str):
        send_time = _utc_iso(send_time) or send_time
    out = []
    for event in obj["data"]:
        _normalize(event)
        name = _snake(event.get("type", "")) + "_" + _snake(event.get("action", ""))
        key = _key(event)
        event_time = event["eventTime"]
        record = {
            "event_name": name,
            "event_time": event_time,
            "event_time_ms": _ms(event_time),
            "dedupe_key": key,
            "format": "caliper",
            "sensor": obj["sensor"],
            "send_time": send_time,
            "data_version": obj.get("dataVersion"),
            "event": event,
            "generic": False,
        }
        group = event.get("group") or event.get("actor") or {}
        headers = (("dedupe_key", key.encode()), ("event_name", name.encode()), ("event_format", b"caliper"))
        out.append((caliper_prefix + name, str(group.get("id", key)).encode(), json.dumps(record).encode(), headers))
    return out
