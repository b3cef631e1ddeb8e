"""The dedupe key: the same event written differently has one key; a different event another.

The key of a Canvas-format event is computed over the normalized (UTC, canonically encoded)
metadata and body, so that a redelivery that Canvas serialized differently (another UTC offset,
another key order, other whitespace) is recognised as the same event.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.core import Publish
from bridge.timestamps import to_utc_text
from tests.unit._helpers import (
    CALIPER_LINES,
    CANVAS_LINES,
    TIMESTAMP_RE,
    canvas_examples,
    encode,
    instant_of,
    map_leaves,
    offset_text,
    only_publish,
    parse_offset,
    rewrite_timestamp,
    run,
    value_of,
    walk,
)

EXAMPLES = canvas_examples()
BASELINE: list[Publish] = [only_publish(run(line)) for line in CANVAS_LINES]
# The catalog's grade_override body filed as grade_change (rescued onto grade_override).
MISFILED = next(i for i, p in enumerate(BASELINE) if p.declared_event_name is not None)

HSETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

OFFSETS = [330, -360, 0, 45, -570, 840, -720, 60, -180, 345]
STYLES = ["iso", "iso_nocolon", "ruby"]


def _is_offset_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    m = TIMESTAMP_RE.match(value)
    return m is not None and m["tz"] is not None


def _timestamp_paths(example: dict[str, Any]) -> list[str]:
    return [p for p, v in walk(example) if p.split(".")[0] in ("metadata", "body") and _is_offset_timestamp(v)]


def _instants(p: Publish) -> dict[str, str]:
    """Every timestamp in the output (the UTC text), by path."""
    return {path: leaf for path, leaf in walk(value_of(p)) if isinstance(leaf, str) and TIMESTAMP_RE.match(leaf)}


# ---------------------------------------------------------------------------------------------
# Variants of one example
# ---------------------------------------------------------------------------------------------


@st.composite
def retimed(draw: st.DrawFn, index: int) -> dict[str, Any]:
    """The example with every timestamp of metadata and body at an independently drawn offset."""
    example = EXAMPLES[index]
    styles = STYLES
    choices = {
        path: (draw(st.sampled_from(OFFSETS), label=path), draw(st.sampled_from(styles)))
        for path in _timestamp_paths(example)
    }

    def fn(path: str, leaf: Any) -> Any:
        if path in choices:
            minutes, style = choices[path]
            return rewrite_timestamp(leaf, minutes, style)
        return leaf

    return map_leaves(example, fn)


def reorder(tree: Any, rnd: random.Random) -> Any:
    """The same JSON with the keys of every object in another order."""
    if isinstance(tree, dict):
        items = list(tree.items())
        rnd.shuffle(items)
        return {k: reorder(v, rnd) for k, v in items}
    if isinstance(tree, list):
        return [reorder(v, rnd) for v in tree]
    return tree


WHITESPACE = st.sampled_from(
    [
        {"indent": None, "separators": (",", ":")},
        {"indent": None, "separators": (", ", ": ")},
        {"indent": None, "separators": (" , ", " : ")},
        {"indent": 0, "separators": None},
        {"indent": 2, "separators": None},
        {"indent": 4, "separators": (",", ": ")},
        {"indent": "\t", "separators": None},
        {"indent": "\r\n ", "separators": (",", ":")},
    ]
)


def _wrap(raw: bytes, pad: str) -> bytes:
    return pad.encode() + raw + pad.encode()


def _assert_same_event(p: Publish, base: Publish) -> None:
    assert p.dedupe_key == base.dedupe_key
    assert p.event_name == base.event_name and p.topic == base.topic
    assert p.timestamp_ms == base.timestamp_ms
    assert _instants(p) == _instants(base)
    # the whole published value (normalized metadata and body) is the same
    assert p.value == base.value


INDEXES = st.integers(min_value=0, max_value=len(EXAMPLES) - 1)


@HSETTINGS
@given(st.data())
def test_rewriting_every_timestamp_with_another_offset_keeps_the_key(data: st.DataObject) -> None:
    index = data.draw(INDEXES, label="example")
    variant = data.draw(retimed(index))
    p = only_publish(run(encode(variant)))
    _assert_same_event(p, BASELINE[index])


@HSETTINGS
@given(INDEXES, st.randoms(use_true_random=False))
def test_reordering_json_keys_at_every_level_keeps_the_key(index: int, rnd: random.Random) -> None:
    p = only_publish(run(encode(reorder(EXAMPLES[index], rnd))))
    _assert_same_event(p, BASELINE[index])


@HSETTINGS
@given(INDEXES, WHITESPACE, st.sampled_from(["", " ", "\n", "\t\r\n "]))
def test_changing_whitespace_keeps_the_key(index: int, ws: dict[str, Any], pad: str) -> None:
    raw = _wrap(encode(EXAMPLES[index], **ws), pad)
    p = only_publish(run(raw))
    _assert_same_event(p, BASELINE[index])


@HSETTINGS
@given(st.data())
def test_offsets_key_order_and_whitespace_together_keep_the_key(data: st.DataObject) -> None:
    index = data.draw(INDEXES, label="example")
    variant = data.draw(retimed(index))
    variant = reorder(variant, data.draw(st.randoms(use_true_random=False)))
    raw = encode(variant, **data.draw(WHITESPACE))
    p = only_publish(run(raw))
    _assert_same_event(p, BASELINE[index])


def test_every_offset_form_of_one_instant_gives_one_key() -> None:
    """Deterministic sweep: all catalog examples, each offset applied to all timestamps at once."""
    for index, example in enumerate(EXAMPLES):
        paths = set(_timestamp_paths(example))
        styles = STYLES
        for minutes in (330, -360, 0):
            for style in styles:
                variant = map_leaves(
                    example,
                    lambda p, v, m=minutes, s=style, ps=paths: rewrite_timestamp(v, m, s) if p in ps else v,
                )
                p = only_publish(run(encode(variant)))
                assert p.dedupe_key == BASELINE[index].dedupe_key, (index, minutes, style)
                assert p.value == BASELINE[index].value, (index, minutes, style)


def test_trailing_zeros_in_fractions_keep_the_key() -> None:
    """``.872Z``, ``.872000Z`` and ``.872000000Z`` are the same instant."""
    for index, example in enumerate(EXAMPLES[:60]):
        paths = set(_timestamp_paths(example))

        def pad(path: str, leaf: Any, paths: set[str] = paths) -> Any:
            if path not in paths:
                return leaf
            m = TIMESTAMP_RE.match(leaf)
            assert m is not None
            if m["s"] is None:
                return leaf
            frac = (m["frac"] or ".")[1:]
            head = leaf[: m.end("s")]
            return f"{head}.{(frac + '000000000')[:9]}{leaf[m.start('tz') :]}" if len(frac) <= 6 else leaf

        p = only_publish(run(encode(map_leaves(example, pad))))
        assert p.dedupe_key == BASELINE[index].dedupe_key, index


# ---------------------------------------------------------------------------------------------
# Different events have different keys
# ---------------------------------------------------------------------------------------------


def _body_leaves(example: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(p, v) for p, v in walk(example["body"], "body") if isinstance(v, str | int | float | bool)]


CANDIDATES = [(i, path) for i, example in enumerate(EXAMPLES) for path, _ in _body_leaves(example)]


def _changed(value: Any, rnd: random.Random) -> Any:
    """Another value of the same JSON type (a timestamp: another instant at the same offset)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rnd.randint(1, 10**6) * rnd.choice([1, -1])
    if isinstance(value, float):
        return value + rnd.choice([1.0, -1.0, 0.5, 1000.25])
    assert isinstance(value, str)
    if _is_offset_timestamp(value):
        m = TIMESTAMP_RE.match(value)
        assert m is not None
        moved = instant_of(value) + timedelta(seconds=rnd.randint(1, 10**7) * rnd.choice([1, -1]))
        return rewrite_timestamp(to_utc_text(moved), parse_offset(m["tz"]), "iso")
    how = rnd.choice(["append", "prepend", "replace", "case"])
    if how == "append":
        return value + rnd.choice(["x", " ", "0", "\u00e9"])
    if how == "prepend":
        return rnd.choice(["x", "1", "-"]) + value
    if how == "case" and value.swapcase() != value:
        return value.swapcase()
    other = "".join(rnd.choice("abcXYZ019 _-\u00e9\u4e2d") for _ in range(rnd.randint(1, 8)))
    return other if other != value else value + "!"


def _assert_change_changes_key(index: int, target: str, rnd: random.Random) -> None:
    example = EXAMPLES[index]
    old = dict(_body_leaves(example))[target]
    new = _changed(old, rnd)
    assert new != old
    variant = map_leaves(example, lambda p, v: new if p == target else v)
    p = only_publish(run(encode(variant)))
    assert p.dedupe_key != BASELINE[index].dedupe_key, (index, target, old, new)
    assert json.loads(p.value)["dedupe_key"] == p.dedupe_key


@HSETTINGS
@given(st.sampled_from(CANDIDATES), st.randoms(use_true_random=False))
def test_changing_one_body_field_value_changes_the_key(candidate: tuple[int, str], rnd: random.Random) -> None:
    _assert_change_changes_key(*candidate, rnd)


def test_changing_each_body_field_of_each_example_changes_the_key() -> None:
    """Deterministic sweep over every scalar body field of every example (one change each)."""
    rnd = random.Random(0)
    assert len(CANDIDATES) > 900
    for index, target in CANDIDATES:
        _assert_change_changes_key(index, target, rnd)


def test_two_different_canvas_examples_never_share_a_key() -> None:
    keys = [p.dedupe_key for p in BASELINE]
    assert len(set(keys)) == len(keys) == 121


def test_the_event_name_is_part_of_the_key() -> None:
    """The same metadata and body under another (generic) event name is another event."""
    example = EXAMPLES[0]
    renamed = {**example, "metadata": {**example["metadata"], "event_name": "account_created_v2"}}
    p = only_publish(run(encode(renamed)))
    assert p.generic and p.dedupe_key != BASELINE[0].dedupe_key


def test_changing_metadata_changes_the_key() -> None:
    example = EXAMPLES[0]
    for field, value in [("event_time", "2024-11-01T18:42:07.092Z"), ("job_id", "1"), ("producer", "other")]:
        variant = {**example, "metadata": {**example["metadata"], field: value}}
        assert only_publish(run(encode(variant))).dedupe_key != BASELINE[0].dedupe_key, field


def test_integer_and_string_ids_give_one_key() -> None:
    """Lenient mode publishes an integer id as a string: the two spellings are one event
    (the misfiled grade_override body included: its rescue reads integer ids too)."""
    compared = 0
    for index, example in enumerate(EXAMPLES):
        as_text = map_leaves(
            example, lambda p, v: str(v) if isinstance(v, int) and not isinstance(v, bool) and p.endswith("id") else v
        )
        as_int = map_leaves(
            # SIS ids are the school's own strings, not Canvas ids: only Canvas ids are coerced.
            example,
            lambda p, v: int(v) if isinstance(v, str) and v.isdigit() and p.endswith("_id") and "sis" not in p else v,
        )
        for variant in (as_text, as_int):
            if variant != example:
                compared += 1
                p = only_publish(run(encode(variant)))
                assert p.dedupe_key == BASELINE[index].dedupe_key, index
                assert p.value == BASELINE[index].value, index
    assert compared > 100


# ---------------------------------------------------------------------------------------------
# Caliper: the key is the event's id
# ---------------------------------------------------------------------------------------------


def test_caliper_key_ignores_envelope_offsets_and_whitespace_and_follows_the_id() -> None:
    line = CALIPER_LINES[0]
    base = only_publish(run(line))
    tree = json.loads(line)
    tree["data"][0]["eventTime"] = rewrite_timestamp(tree["data"][0]["eventTime"], 330)
    tree["sendTime"] = "2030-01-01T00:00:00Z"
    same = only_publish(run(encode(tree, indent=2)))
    assert same.dedupe_key == base.dedupe_key
    assert value_of(same)["event_time"] == value_of(base)["event_time"]
    tree["data"][0]["id"] += "-2"
    assert only_publish(run(encode(tree))).dedupe_key != base.dedupe_key


def test_caliper_catalog_examples_that_reuse_an_id_do_not_share_a_key() -> None:
    """The documentation reuses three event ids across event types (41/42/62, 43/44/64, 48/49)."""
    for group in ((41, 42, 62), (43, 44, 64), (48, 49)):
        ids = {json.loads(CALIPER_LINES[i - 1])["data"][0]["id"] for i in group}
        assert len(ids) == 1
        keys = {only_publish(run(CALIPER_LINES[i - 1])).dedupe_key for i in group}
        assert len(keys) == len(group), group


def test_misfiled_body_is_rescued_whatever_the_timestamp_form() -> None:
    example = EXAMPLES[MISFILED]
    variant = map_leaves(
        example,
        lambda p, v: rewrite_timestamp(v, -480, "ruby") if p == "body.updated_at" else v,
    )
    p = only_publish(run(encode(variant)))
    assert p.dedupe_key == BASELINE[MISFILED].dedupe_key


def test_sub_microsecond_digits_give_one_key_on_both_decode_paths() -> None:
    example = EXAMPLES[0]
    meta = {**example["metadata"], "event_time": "2024-11-01T18:42:07.0919999Z", "user_id": "7"}
    fast = only_publish(run(encode({**example, "metadata": meta})))
    # the same event with the id written as an integer: the metadata takes the lenient path
    lenient = only_publish(run(encode({**example, "metadata": {**meta, "user_id": 7}})))
    assert value_of(fast)["event_time"] == value_of(lenient)["event_time"]
    assert fast.dedupe_key == lenient.dedupe_key


def test_sub_microsecond_digits_are_rounded_the_same_on_both_paths() -> None:
    example = EXAMPLES[1]
    meta = {**example["metadata"], "event_time": "2024-11-01T18:42:07.9999999Z"}
    p = only_publish(run(encode({**example, "metadata": meta})))
    assert value_of(p)["event_time"] == "2024-11-01T18:42:08.000Z"
    ruby = {**example["metadata"], "event_time": "2024-11-01 18:42:07.9999999 +0000"}  # the lenient path
    q = only_publish(run(encode({**example, "metadata": ruby})))
    assert value_of(q)["event_time"] == "2024-11-01T18:42:08.000Z"
    assert q.dedupe_key == p.dedupe_key


def test_offset_helper_round_trips() -> None:
    """The helper that writes the variants is itself right (guards the tests above)."""
    for minutes in OFFSETS:
        for style in STYLES:
            text = rewrite_timestamp("2024-07-30T19:04:35.872Z", minutes, style)
            assert instant_of(text) == instant_of("2024-07-30T19:04:35.872Z"), text
            assert offset_text(minutes, colon=style == "iso") in text


def test_the_canvas_key_is_the_documented_hash_of_the_value_without_it() -> None:
    """README: SHA-256 of the published value's bytes without ``"dedupe_key":"…",``, 32 hex."""
    import hashlib

    for p in BASELINE:
        prefix = b'{"dedupe_key":"' + p.dedupe_key.encode() + b'",'
        assert p.value.startswith(prefix)
        canonical = b"{" + p.value[len(prefix):]
        assert list(json.loads(canonical)) == ["event_name", "event_time", "event_time_ms", "format", "metadata",
                                               "body", "generic"]  # fmt: skip
        assert hashlib.sha256(canonical).hexdigest()[:32] == p.dedupe_key


def test_the_caliper_key_is_the_documented_hash_of_its_parts() -> None:
    import hashlib

    for line in CALIPER_LINES:
        for p in run(line):
            assert isinstance(p, Publish)
            event = json.loads(p.value)["event"]
            obj = event.get("object")
            object_id = obj if isinstance(obj, str) else (obj or {}).get("id") or ""
            parts = [b"caliper", event["id"].encode(), p.event_name.encode(), object_id.encode()]
            data = ",".join(str(len(x)) for x in parts).encode() + b";" + b"".join(parts)
            assert hashlib.sha256(data).hexdigest()[:32] == p.dedupe_key
