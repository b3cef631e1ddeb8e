"""Shared helpers for the unit tests of the pure core (``bridge.core``).

Only the fixtures under ``tests/fixtures/catalog`` and ``tests/fixtures/source`` are read;
nothing else on disk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from bridge.config import load_config
from bridge.core import Core, DeadLetter, Output, Publish, Source

CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"
CANVAS_LINES: list[bytes] = (CATALOG / "canvas-examples.jsonl").read_bytes().splitlines()
CALIPER_LINES: list[bytes] = (CATALOG / "caliper-examples.jsonl").read_bytes().splitlines()
CALIPER_NAMES: list[str] = (CATALOG / "caliper-expected-names.txt").read_text().split()
# Payloads shaped as Canvas's source builds them, one per event type it emits (see its NOTICE.md).
SOURCE_LINES: list[bytes] = (CATALOG.parent / "source" / "canvas-source-payloads.jsonl").read_bytes().splitlines()

SOURCE = Source(topic="canvas.raw", partition=3, offset=1234, key=b"source-key")
NOW_MS = 1_700_000_000_000

# A whole string that is an ISO-8601 / Ruby date-time (not free text that merely contains one).
TIMESTAMP_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?P<frac>[.,]\d{1,9})?)?"
    r"\s*(?P<tz>[Zz]|UTC|[+-]\d{2}(?::?\d{2})?)?$"
)


# ---------------------------------------------------------------------------------------------
# Cores
# ---------------------------------------------------------------------------------------------


@cache
def _default_config() -> Any:
    return load_config(env={})


def make_core(
    topics: dict[str, Any] | None = None,
    decode: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    fast_paths: bool = True,
) -> Core:
    """A Core from the default config, with some settings of a section replaced."""
    cfg = _default_config()
    return Core(
        msgspec.structs.replace(cfg.topics, **(topics or {})),
        msgspec.structs.replace(cfg.decode, **(decode or {})),
        msgspec.structs.replace(cfg.limits, **(limits or {})),
        fast_paths=fast_paths,
    )


@cache
def default_core() -> Core:
    return make_core()


def run(value: bytes | None, core: Core | None = None) -> list[Output]:
    return (core or default_core()).process(value, SOURCE, NOW_MS)


def publishes(out: list[Output]) -> list[Publish]:
    return [o for o in out if isinstance(o, Publish)]


def dead_letters(out: list[Output]) -> list[DeadLetter]:
    return [o for o in out if isinstance(o, DeadLetter)]


def only_publish(out: list[Output]) -> Publish:
    assert len(out) == 1 and isinstance(out[0], Publish), _describe(out)
    return out[0]


def only_dead_letter(out: list[Output]) -> DeadLetter:
    assert len(out) == 1 and isinstance(out[0], DeadLetter), _describe(out)
    return out[0]


def _describe(out: list[Output]) -> str:
    parts = []
    for o in out:
        if isinstance(o, DeadLetter):
            parts.append(f"DeadLetter({o.reason}: {o.detail[:300]})")
        else:
            parts.append(f"Publish({o.topic})")
    return f"{len(out)} outputs: " + ", ".join(parts)


def headers(o: Output) -> dict[str, bytes]:
    hs = dict(o.headers)
    assert len(hs) == len(o.headers), f"duplicate header names: {o.headers}"
    return hs


def value_of(p: Publish) -> dict[str, Any]:
    v = json.loads(p.value)
    assert isinstance(v, dict)
    return v


# ---------------------------------------------------------------------------------------------
# JSON trees
# ---------------------------------------------------------------------------------------------


def walk(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf with its path in the core's notation: ``body.a.b[0].c``."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, tree


def map_leaves(tree: Any, fn: Callable[[str, Any], Any], path: str = "") -> Any:
    """A copy of ``tree`` with every leaf replaced by ``fn(path, leaf)``."""
    if isinstance(tree, dict):
        return {k: map_leaves(v, fn, f"{path}.{k}" if path else str(k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [map_leaves(v, fn, f"{path}[{i}]") for i, v in enumerate(tree)]
    return fn(path, tree)


def timestamp_leaves(tree: Any) -> list[tuple[str, str]]:
    return [(p, v) for p, v in walk(tree) if isinstance(v, str) and TIMESTAMP_RE.match(v)]


# ---------------------------------------------------------------------------------------------
# Timestamps written another way
# ---------------------------------------------------------------------------------------------


def offset_text(minutes: int, colon: bool = True) -> str:
    sign = "-" if minutes < 0 else "+"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{m:02d}" if colon else f"{sign}{h:02d}{m:02d}"


def parse_offset(text: str) -> int:
    """Minutes of an offset text (``Z``, ``+05:30``, ``-0800``, ``+00``)."""
    if text in ("Z", "z", "UTC"):
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + int(digits[2:4] or 0))


def rewrite_timestamp(text: str, minutes: int, style: str = "iso") -> str:
    """The same instant as ``text`` (which must have an offset), written at UTC offset ``minutes``.

    The sub-second digits are kept as they were written (they do not depend on the offset).
    ``style``: ``iso`` (``T`` and ``+05:30``), ``iso_nocolon`` (``+0530``), ``ruby``
    (``2019-11-05 07:38:00 -0800``).
    """
    m = TIMESTAMP_RE.match(text)
    assert m is not None and m["tz"] is not None, text
    base = datetime.fromisoformat(f"{m['date']}T{m['h']}:{m['mi']}:{m['s'] or '00'}")
    instant = base - timedelta(minutes=parse_offset(m["tz"]))
    local = instant + timedelta(minutes=minutes)
    frac = (m["frac"] or "").replace(",", ".")
    clock = f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    if style == "iso":
        return f"{clock}{frac}{offset_text(minutes, colon=True)}"
    if style == "iso_nocolon":
        return f"{clock}{frac}{offset_text(minutes, colon=False)}"
    if style == "ruby":
        return f"{clock.replace('T', ' ')}{frac} {offset_text(minutes, colon=False)}"
    raise ValueError(style)


def instant_of(text: str) -> datetime:
    """The UTC instant of a timestamp text with an offset (microsecond precision)."""
    m = TIMESTAMP_RE.match(text)
    assert m is not None and m["tz"] is not None, text
    frac = (m["frac"] or "")[1:]
    micro = int((frac + "000000")[:6]) if frac else 0
    base = datetime.fromisoformat(f"{m['date']}T{m['h']}:{m['mi']}:{m['s'] or '00'}")
    return (base - timedelta(minutes=parse_offset(m["tz"]))).replace(microsecond=micro, tzinfo=UTC)


def aware(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------


def canvas_examples() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CANVAS_LINES]


def caliper_examples() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CALIPER_LINES]


def encode(tree: Any, indent: int | None = None, separators: tuple[str, str] | None = None) -> bytes:
    return json.dumps(tree, indent=indent, separators=separators, ensure_ascii=False).encode()
