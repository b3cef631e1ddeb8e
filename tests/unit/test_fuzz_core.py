"""Fuzzing Core.process with mutated catalog payloads.

Whatever the bytes, ``process`` must not raise, and must return either typed records (at least
one, no dead letter) or exactly one dead letter carrying the input bytes unchanged. Every
record is valid JSON with its dedupe key, and the core's fast paths give exactly what its general
path gives (every case runs through both). 11,000 cases in all (2000 + 1500 byte-level, 2500
type, 2500 structural, 2000 timestamp, 500 valid-offset), split so that each test stays well
under 30 s; ``derandomize=True`` makes every run try the same cases.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.core import DEAD_LETTER_REASONS, Core, DeadLetter, Output, Publish
from tests.unit._helpers import (
    CALIPER_LINES,
    CANVAS_LINES,
    NOW_MS,
    SOURCE,
    TIMESTAMP_RE,
    make_core,
    rewrite_timestamp,
)

ALL_LINES = CANVAS_LINES + CALIPER_LINES
TREES = [json.loads(line) for line in ALL_LINES]
CANVAS = range(len(CANVAS_LINES))  # indexes into ALL_LINES / TREES
CALIPER = range(len(CANVAS_LINES), len(ALL_LINES))

CORE_SETTINGS: list[dict[str, Any]] = [
    {},
    {"decode": {"mode": "strict"}},
    {"decode": {"naive_timestamps": "assume_utc"}, "topics": {"unknown_events": "catch_all"}},
    {"limits": {"max_depth": 8, "max_string_length": 200, "max_message_bytes": 4000}},
]
CORES: list[Core] = [make_core(**s) for s in CORE_SETTINGS]
# The same settings with the fast paths off: every input must give the very same outputs.
GENERAL: list[Core] = [make_core(**s, fast_paths=False) for s in CORE_SETTINGS]
CORE_INDEX = st.integers(min_value=0, max_value=len(CORES) - 1)

TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.(\d{3}|\d{6})Z$")


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def pick(draw: st.DrawFn, seq: list[Any]) -> Any:
    """An element of a list built at draw time (cheaper than a new sampled_from per draw)."""
    return seq[draw(st.integers(min_value=0, max_value=len(seq) - 1))]


def check(value: bytes, core_index: int) -> list[Output]:
    """The properties every input must satisfy; returns the outputs for further checks."""
    out = CORES[core_index].process(value, SOURCE, NOW_MS)  # must not raise
    assert isinstance(out, list) and out, out
    assert out == GENERAL[core_index].process(value, SOURCE, NOW_MS), "fast and general paths differ"
    dead = [o for o in out if isinstance(o, DeadLetter)]
    records = [o for o in out if isinstance(o, Publish)]
    assert len(dead) + len(records) == len(out)
    if dead:
        assert len(out) == 1, f"a dead letter beside other outputs: {out}"
        d = dead[0]
        event(f"dead letter: {d.reason}")
        assert d.value == value
        assert d.reason in DEAD_LETTER_REASONS
        hs = dict(d.headers)
        assert hs["dlq_reason"] == d.reason.encode()
        assert set(hs) >= {"dlq_reason", "dlq_detail", "dlq_source_topic", "dlq_source_partition",
                           "dlq_source_offset", "dlq_time"}  # fmt: skip
        return out
    assert records
    event("published: generic" if any(p.generic for p in records) else "published: typed")
    for p in records:
        v = json.loads(p.value)  # valid JSON (and valid UTF-8)
        assert isinstance(v, dict)
        assert isinstance(v["dedupe_key"], str) and re.fullmatch(r"[0-9a-f]{32}", v["dedupe_key"])
        assert v["dedupe_key"] == p.dedupe_key == dict(p.headers)["dedupe_key"].decode()
        assert v["event_name"] == p.event_name
        assert p.timestamp_ms == v["event_time_ms"]
        assert ISO_Z.match(v["event_time"]), v["event_time"]
        assert TOPIC_RE.match(p.topic), p.topic
    return out


def check_no_internal_error(out: list[Output], value: bytes) -> None:
    """internal_error means the core hit a bug: never acceptable."""
    d = out[0]
    if isinstance(d, DeadLetter) and d.reason == "internal_error":
        raise AssertionError(f"internal_error: {d.detail}")


# ---------------------------------------------------------------------------------------------
# Byte-level mutations
# ---------------------------------------------------------------------------------------------

SPECIAL = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\\u", b"\\ud800", b"0", b"-", b"1e999",
           b"null", b"true", b" ", b"\n", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80",
           b"\xe2\x80\xa8", b"\\\"", b"NaN", b"Infinity", b"[" * 70, b"9" * 40]  # fmt: skip


@st.composite
def byte_mutations(draw: st.DrawFn, min_edits: int = 1, max_edits: int = 2) -> bytes:
    data = bytearray(pick(draw, ALL_LINES))
    for _ in range(draw(st.integers(min_value=min_edits, max_value=max_edits))):
        op = pick(draw, ["flip", "set", "insert", "insert_special", "delete", "truncate", "repeat"])
        if not data:
            data.extend(draw(st.binary(min_size=0, max_size=8)))
            continue
        pos = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "set":
            data[pos] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "insert_special":
            data[pos:pos] = pick(draw, list(SPECIAL))
        elif op == "delete":
            n = draw(st.integers(min_value=1, max_value=32))
            del data[pos : pos + n]
        elif op == "truncate":
            del data[pos:]
        else:  # repeat a slice
            n = draw(st.integers(min_value=1, max_value=64))
            data[pos:pos] = data[pos : pos + n]
    return bytes(data)


@fuzz_settings(2000)
@given(byte_mutations(1, 2), CORE_INDEX)
def test_fuzz_byte_mutations_never_raise_and_keep_the_bytes(value: bytes, core_index: int) -> None:
    out = check(value, core_index)
    check_no_internal_error(out, value)


@fuzz_settings(1500)
@given(byte_mutations(3, 8), CORE_INDEX)
def test_fuzz_many_byte_edits_never_raise_and_keep_the_bytes(value: bytes, core_index: int) -> None:
    out = check(value, core_index)
    check_no_internal_error(out, value)


# ---------------------------------------------------------------------------------------------
# JSON-level mutations: helpers
# ---------------------------------------------------------------------------------------------

PathT = tuple[Any, ...]


def all_paths(tree: Any, path: PathT = ()) -> list[PathT]:
    """Paths of every node (containers and leaves), the root excluded."""
    out: list[PathT] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.append((*path, k))
            out.extend(all_paths(v, (*path, k)))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.append((*path, i))
            out.extend(all_paths(v, (*path, i)))
    return out


def container_paths(tree: Any, path: PathT = ()) -> list[PathT]:
    out: list[PathT] = [path] if isinstance(tree, dict | list) else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.extend(container_paths(v, (*path, k)))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.extend(container_paths(v, (*path, i)))
    return out


def get(tree: Any, path: PathT) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def put(tree: Any, path: PathT, value: Any) -> Any:
    if not path:
        return value
    get(tree, path[:-1])[path[-1]] = value
    return tree


def copy(tree: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(tree))


BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "number": st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0, -1, 2**53 + 1, 2**64, 1e308, -0.0, 1.5]),
    ),
    "string": st.one_of(
        st.text(max_size=20),
        st.sampled_from(["", "2024-07-30T19:04:35.872Z", "12345", "true", "null", "{}", "\u0000", "\ud7ff\ue000"]),
    ),
    "array": st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
    "object": st.dictionaries(
        st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3
    ),
}
JSON_VALUES = st.one_of(*BY_TYPE.values())
OTHER_TYPE = {t: st.one_of(*(s for u, s in BY_TYPE.items() if u != t)) for t in BY_TYPE}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def dump_with_duplicates(tree: Any, dup: dict[int, tuple[str, Any]]) -> str:
    """JSON text where the objects chosen in ``dup`` (by id) repeat a key with another value."""
    if isinstance(tree, dict):
        items = [f"{json.dumps(k)}:{dump_with_duplicates(v, dup)}" for k, v in tree.items()]
        if id(tree) in dup:
            key, value = dup[id(tree)]
            items.append(f"{json.dumps(key)}:{json.dumps(value)}")
        return "{" + ",".join(items) + "}"
    if isinstance(tree, list):
        return "[" + ",".join(dump_with_duplicates(v, dup) for v in tree) + "]"
    return json.dumps(tree)


def encode_tree(draw: st.DrawFn, tree: Any) -> bytes:
    ascii_only = draw(st.booleans())
    indent = pick(draw, [None, None, 1])
    return json.dumps(tree, ensure_ascii=ascii_only, indent=indent).encode()


# ---------------------------------------------------------------------------------------------
# Type mutations: a value replaced by a value of another JSON type
# ---------------------------------------------------------------------------------------------


@st.composite
def type_mutations(draw: st.DrawFn, indexes: range) -> bytes:
    tree = copy(TREES[draw(st.sampled_from(indexes))])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = all_paths(tree)
        if not paths:
            break
        path = pick(draw, paths)
        old = get(tree, path)
        new = draw(OTHER_TYPE[json_type(old)])
        tree = put(tree, path, new)
    return encode_tree(draw, tree)


@fuzz_settings(1400)
@given(type_mutations(CANVAS), CORE_INDEX)
def test_fuzz_type_mutations_of_canvas_payloads(value: bytes, core_index: int) -> None:
    out = check(value, core_index)
    check_no_internal_error(out, value)


@fuzz_settings(1100)
@given(type_mutations(CALIPER), CORE_INDEX)
def test_fuzz_type_mutations_of_caliper_payloads(value: bytes, core_index: int) -> None:
    out = check(value, core_index)
    check_no_internal_error(out, value)


# ---------------------------------------------------------------------------------------------
# Structural mutations: drop, duplicate, rename, nest keys; wrap in arrays
# ---------------------------------------------------------------------------------------------

STRUCT_OPS = ["drop", "duplicate", "rename", "nest_object", "nest_array", "wrap_array", "wrap_object",
              "swap", "copy_list_item", "add_envelope_key", "empty_container"]  # fmt: skip


@st.composite
def structural_mutations(draw: st.DrawFn, indexes: range) -> bytes:
    tree = copy(TREES[draw(st.sampled_from(indexes))])
    dup: dict[int, tuple[str, Any]] = {}
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        op = pick(draw, list(STRUCT_OPS))
        paths = all_paths(tree)
        containers = container_paths(tree)
        objects = [p for p in containers if isinstance(get(tree, p), dict) and get(tree, p)]
        if op == "drop" and objects:
            obj = get(tree, pick(draw, objects))
            del obj[pick(draw, sorted(obj))]
        elif op == "duplicate" and objects:
            obj = get(tree, pick(draw, objects))
            key = pick(draw, sorted(obj))
            value = draw(JSON_VALUES) if draw(st.booleans()) else obj[key]
            dup[id(obj)] = (key, value)
        elif op == "rename" and objects:
            obj = get(tree, pick(draw, objects))
            key = pick(draw, sorted(obj))
            new_key = pick(draw, [key.upper(), key + "_", "", " " + key, key[:-1], "metadata", "data"])
            obj[new_key] = obj.pop(key)
        elif op in ("nest_object", "nest_array") and paths:
            path = pick(draw, paths)
            v = get(tree, path)
            tree = put(tree, path, {pick(draw, ["x", "value", "id"]): v} if op == "nest_object" else [v])
        elif op == "wrap_array":
            tree = [tree] if draw(st.booleans()) else [tree, tree]
        elif op == "wrap_object":
            tree = {pick(draw, ["metadata", "body", "data", "event"]): tree}
        elif op == "swap" and len(paths) >= 2:
            a, b = pick(draw, paths), pick(draw, paths)
            if a[: len(b)] != b and b[: len(a)] != a:  # neither inside the other
                va, vb = get(tree, a), get(tree, b)
                tree = put(tree, a, vb)
                tree = put(tree, b, va)
        elif op == "copy_list_item":
            lists = [p for p in containers if isinstance(get(tree, p), list) and get(tree, p)]
            if lists:
                lst = get(tree, pick(draw, lists))
                lst.append(copy(lst[draw(st.integers(0, len(lst) - 1))]))
        elif op == "add_envelope_key" and isinstance(tree, dict):
            key = pick(draw, ["metadata", "body", "sensor", "data", "sendTime", "dataVersion"])
            tree[key] = draw(JSON_VALUES)
        elif op == "empty_container" and containers:
            path = pick(draw, containers)
            tree = put(tree, path, {} if isinstance(get(tree, path), dict) else [])
    if dup and draw(st.booleans()):
        return dump_with_duplicates(tree, dup).encode()
    return encode_tree(draw, tree)


@fuzz_settings(1400)
@given(structural_mutations(CANVAS), CORE_INDEX)
def test_fuzz_structural_mutations_of_canvas_payloads(value: bytes, core_index: int) -> None:
    out = check(value, core_index)
    check_no_internal_error(out, value)


@fuzz_settings(1100)
@given(structural_mutations(CALIPER), CORE_INDEX)
def test_fuzz_structural_mutations_of_caliper_payloads(value: bytes, core_index: int) -> None:
    out = check(value, core_index)
    check_no_internal_error(out, value)


# ---------------------------------------------------------------------------------------------
# Timestamp mutations
# ---------------------------------------------------------------------------------------------

ZONES = ["Z", "z", "UTC", "+00:00", "+0000", "-06:00", "+05:30", "+0530", "+14:00", "-12:00", "+24:00",
         "-99:99", "+05:60", "+5", "+0", "+123", "++01:00", "+01:00:00", "GMT", " +0000", " -0800", ""]  # fmt: skip
YEARS = st.one_of(st.sampled_from([1, 9999, 1970, 1969, 2024, 0]), st.integers(min_value=0, max_value=99999))
FRACTION_DIGITS = st.lists(st.integers(0, 9), max_size=12)
TS_KINDS = ["text", "timestampish", "offset", "bad_offset", "naive", "other_type", "padded"]


@st.composite
def timestampish(draw: st.DrawFn) -> str:
    """Date-time-looking text with numbers in and out of range and any zone (fast to draw)."""
    n = st.integers(min_value=0, max_value=99)
    year = draw(YEARS)
    text = f"{year:0{draw(st.integers(1, 5))}d}-{draw(n):02d}-{draw(n):02d}{pick(draw, list('Tt '))}"
    text += f"{draw(n):02d}:{draw(n):02d}"
    if draw(st.booleans()):
        text += f":{draw(n):02d}"
        if draw(st.booleans()):
            text += pick(draw, list(".,")) + "".join(map(str, draw(FRACTION_DIGITS)))
    return text + pick(draw, list(ZONES))


def timestamp_value(draw: st.DrawFn, old: str) -> Any:
    kind = pick(draw, list(TS_KINDS))
    m = TIMESTAMP_RE.match(old)
    if kind == "text":
        return draw(st.text(max_size=30))
    if kind == "timestampish":
        return draw(timestampish())
    if kind == "offset" and m and m["tz"]:
        minutes = draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
        return rewrite_timestamp(old, minutes, pick(draw, ["iso", "iso_nocolon", "ruby"]))
    if kind == "bad_offset" and m:
        zone = pick(draw, list(ZONES[10:]))
        return old[: m.start("tz")] + zone if m["tz"] else old + zone
    if kind == "naive" and m:
        return old[: m.start("tz")].rstrip() if m["tz"] else old
    if kind == "padded" and m:
        return pick(draw, [" ", "\t", ""]) + old + pick(draw, [" ", "\n", "x"])
    return draw(OTHER_TYPE["string"])


def _timestamp_paths(tree: Any) -> list[PathT]:
    keys = ("_at", "time", "Time", "date", "Date")
    return [
        p
        for p in all_paths(tree)
        if (isinstance(get(tree, p), str) and TIMESTAMP_RE.match(get(tree, p)))
        or (isinstance(p[-1], str) and p[-1].endswith(keys))
    ]


TIMESTAMP_PATHS = [_timestamp_paths(tree) for tree in TREES]


@st.composite
def timestamp_mutations(draw: st.DrawFn, indexes: range) -> bytes:
    index = draw(st.sampled_from(indexes))
    tree = copy(TREES[index])
    paths = TIMESTAMP_PATHS[index]
    assert paths
    chosen = draw(st.lists(st.integers(0, len(paths) - 1), min_size=1, max_size=4, unique=True))
    for path in (paths[i] for i in chosen):
        old = get(tree, path)
        tree = put(tree, path, timestamp_value(draw, old if isinstance(old, str) else "2024-07-30T19:04:35.872Z"))
    return encode_tree(draw, tree)


@fuzz_settings(1100)
@given(timestamp_mutations(CANVAS), CORE_INDEX)
def test_fuzz_timestamp_mutations_of_canvas_payloads(value: bytes, core_index: int) -> None:
    out = check(value, core_index)
    check_no_internal_error(out, value)


@fuzz_settings(900)
@given(timestamp_mutations(CALIPER), CORE_INDEX)
def test_fuzz_timestamp_mutations_of_caliper_payloads(value: bytes, core_index: int) -> None:
    out = check(value, core_index)
    check_no_internal_error(out, value)


@fuzz_settings(500)
@given(st.data())
def test_fuzz_valid_offsets_publish_the_same_instants(data: st.DataObject) -> None:
    """Valid offsets (any minute from -23:59 to +23:59) on every timestamp change nothing."""
    index = data.draw(st.integers(min_value=0, max_value=len(TREES) - 1))
    tree = copy(TREES[index])
    base = CORES[0].process(ALL_LINES[index], SOURCE, NOW_MS)
    for path in all_paths(tree):
        leaf = get(tree, path)
        if isinstance(leaf, str) and (m := TIMESTAMP_RE.match(leaf)) and m["tz"]:
            minutes = data.draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
            style = data.draw(st.sampled_from(["iso", "iso_nocolon", "ruby"]))
            tree = put(tree, path, rewrite_timestamp(leaf, minutes, style))
    value = json.dumps(tree).encode()
    out = check(value, 0)
    assert [o.value for o in out] == [o.value for o in base]
