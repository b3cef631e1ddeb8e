"""Missing is not invalid: a field other than the event's identifier may be absent.

A Canvas account with ``compact_live_events`` drops every null field from the body, and Canvas
versions add and remove fields. In ``lenient`` mode such an event is published typed: an absent
field is written as ``null`` exactly as an explicit ``null`` (same record, same dedupe key), and
the ``Expected`` fields it lacked are named in the ``missing_fields`` header. Only a body without
its identifier (docs/event-identifiers.md) is dead-lettered. ``strict`` mode dead-letters a
missing ``Expected`` field as before. Every case also runs through the general path (same outputs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bridge.core import Core
from bridge.events import CANVAS_EVENTS
from tests.unit._helpers import (
    CANVAS_LINES,
    NOW_MS,
    SOURCE,
    SOURCE_LINES,
    headers,
    make_core,
    only_dead_letter,
    only_publish,
    value_of,
)

ROOT = Path(__file__).resolve().parents[2]
FAST, GENERAL = make_core(), make_core(fast_paths=False)
STRICT, STRICT_GENERAL = make_core(decode={"mode": "strict"}), make_core(decode={"mode": "strict"}, fast_paths=False)


def identifiers(name: str) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(CANVAS_EVENTS[name]) if f.required}


def expected(name: str) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(CANVAS_EVENTS[name]) if f.default is msgspec.UNSET}


def both(value: bytes, fast: Core = FAST, general: Core = GENERAL) -> list[Any]:
    out = fast.process(value, SOURCE, NOW_MS)
    assert out == general.process(value, SOURCE, NOW_MS), "fast and general paths differ"
    return out


def drop_nulls(tree: Any) -> Any:
    """Every null field removed, at any depth (more than Canvas's own top-level ``compact!``)."""
    if isinstance(tree, dict):
        return {k: drop_nulls(v) for k, v in tree.items() if v is not None}
    if isinstance(tree, list):
        return [drop_nulls(v) for v in tree]
    return tree


CATALOG = [pytest.param(line, id=f"canvas-{i}") for i, line in enumerate(CANVAS_LINES, 1)]


@pytest.mark.parametrize("line", CATALOG)
def test_a_catalog_example_without_any_one_non_identifier_body_field_is_typed(line: bytes) -> None:
    original = only_publish(both(line))
    name = original.event_name  # the type it is published as (the misfiled example: grade_override)
    tree = json.loads(line)
    dropped = 0
    for key in tree["body"]:
        if key in identifiers(name):
            continue
        variant = json.loads(line)
        del variant["body"][key]
        p = only_publish(both(json.dumps(variant).encode()))
        assert (p.topic, p.event_name, p.generic) == (original.topic, name, False), key
        assert value_of(p)["body"][key] is None, key  # written, as null
        assert p.missing_fields == ((f"body.{key}",) if key in expected(name) else ()), key
        assert headers(p).get("missing_fields") == (f"body.{key}".encode() if p.missing_fields else None)
        dropped += 1
    assert dropped == len(set(tree["body"]) - identifiers(name))


@pytest.mark.parametrize("line", CATALOG)
def test_a_catalog_example_with_every_null_field_removed_gives_the_same_record_and_key(line: bytes) -> None:
    original = only_publish(both(line))
    tree = json.loads(line)
    top_level = {**tree, "body": {k: v for k, v in tree["body"].items() if v is not None}}  # Canvas's compact!
    for variant in (top_level, drop_nulls(tree)):
        p = only_publish(both(json.dumps(variant).encode()))
        assert p.dedupe_key == original.dedupe_key
        assert p.value == original.value  # the very same record: absent is written as null
        assert p.topic == original.topic


def test_the_examples_really_have_null_fields_to_remove() -> None:
    """The test above is not vacuous: many examples have nulls, at the top level and nested."""
    trees = [json.loads(line) for line in CANVAS_LINES]
    assert sum(any(v is None for v in t["body"].values()) for t in trees) >= 20
    assert sum(drop_nulls(t) != t for t in trees) >= 40


@pytest.mark.parametrize("line", [pytest.param(v, id=json.loads(v)["metadata"]["event_name"]) for v in SOURCE_LINES])
def test_a_body_of_identifiers_only_is_typed_and_names_every_expected_field(line: bytes) -> None:
    tree = json.loads(line)
    name = tree["metadata"]["event_name"]
    tree["body"] = {k: v for k, v in tree["body"].items() if k in identifiers(name)}
    p = only_publish(both(json.dumps(tree).encode()))
    body = value_of(p)["body"]
    assert all(v is None for k, v in body.items() if k not in identifiers(name))
    assert set(p.missing_fields) == {f"body.{k}" for k in expected(name)}
    assert headers(p).get("missing_fields", b"").decode().split(",") == list(p.missing_fields) or not p.missing_fields


@pytest.mark.parametrize("line", [pytest.param(v, id=json.loads(v)["metadata"]["event_name"]) for v in SOURCE_LINES])
def test_a_body_without_its_identifier_or_with_it_null_is_dead_lettered(line: bytes) -> None:
    tree = json.loads(line)
    name = tree["metadata"]["event_name"]
    for key in identifiers(name):
        for body in ({k: v for k, v in tree["body"].items() if k != key}, {**tree["body"], key: None}):
            for fast, general in ((FAST, GENERAL), (STRICT, STRICT_GENERAL)):
                d = only_dead_letter(both(json.dumps({**tree, "body": body}).encode(), fast, general))
                assert d.reason == "invalid_body" and key in d.detail, d.detail


def test_every_event_type_has_an_identifier_except_the_ones_about_no_entity() -> None:
    assert {name for name in CANVAS_EVENTS if not identifiers(name)} == {"heartbeat", "logged_in", "logged_out"}
    for body in (b"{}", b'{"environment":"production"}'):
        p = only_publish(both(b'{"metadata":{"event_name":"heartbeat","event_time":"2024-03-05T17:02:11Z"},"body":'
                              + body + b"}"))  # fmt: skip
        assert p.event_name == "heartbeat" and not p.generic
    d = only_dead_letter(both(b'{"metadata":{"event_name":"heartbeat","event_time":"2024-03-05T17:02:11Z"},"body":[]}'))
    assert d.reason == "invalid_body"


def test_a_missing_nested_field_is_named_with_its_path() -> None:
    line = next(v for v in SOURCE_LINES if b'"event_name":"course_progress"' in v)
    tree = json.loads(line)
    del tree["body"]["course"]["name"]
    del tree["body"]["progress"]
    p = only_publish(both(json.dumps(tree).encode()))
    assert p.missing_fields == ("body.progress", "body.course.name")
    assert headers(p)["missing_fields"] == b"body.progress,body.course.name"
    body = value_of(p)["body"]
    assert body["progress"] is None and body["course"]["name"] is None
    ratings = json.loads(next(v for v in SOURCE_LINES if b'"event_name":"outcome_proficiency_created"' in v))
    del ratings["body"]["outcome_proficiency_ratings"][1]["color"]
    assert only_publish(both(json.dumps(ratings).encode())).missing_fields == (
        "body.outcome_proficiency_ratings[1].color",
    )


def test_strict_mode_dead_letters_a_missing_expected_field_and_keeps_the_optional_ones() -> None:
    line = next(v for v in CANVAS_LINES if b'"account_notification_created"' in v)
    tree = json.loads(line)
    del tree["body"]["end_at"]  # Expected: Canvas always sends it
    d = only_dead_letter(both(json.dumps(tree).encode(), STRICT, STRICT_GENERAL))
    assert (d.reason, d.detail) == ("invalid_body", "body: Object missing required field `end_at`")
    progress = json.loads(next(v for v in SOURCE_LINES if b'"event_name":"course_progress"' in v))
    del progress["body"]["course"]["name"]
    d = only_dead_letter(both(json.dumps(progress).encode(), STRICT, STRICT_GENERAL))
    assert d.detail == "body: Object missing required field `name` - at `body.course`"
    grade = json.loads(next(v for v in SOURCE_LINES if b'"event_name":"grade_change"' in v))
    del grade["body"]["grader_id"]  # optional: sent only for a manual grade
    assert only_publish(both(json.dumps(grade).encode(), STRICT, STRICT_GENERAL)).missing_fields == ()


def test_missing_fields_come_with_the_other_lenient_headers_in_one_order() -> None:
    line = next(v for v in SOURCE_LINES if b'"event_name":"grade_change"' in v)
    tree = json.loads(line)
    del tree["body"]["muted"]
    tree["body"]["brand_new_field"] = 1
    tree["body"]["assignment_id"] = int(tree["body"]["assignment_id"])  # an integer id, too
    p = only_publish(both(json.dumps(tree).encode()))
    assert [k for k, _ in p.headers] == ["dedupe_key", "event_name", "event_format", "unknown_fields",
                                         "missing_fields"]  # fmt: skip
    assert (p.unknown_fields, p.missing_fields) == (("body.brand_new_field",), ("body.muted",))
    assert value_of(p)["body"]["assignment_id"] == str(tree["body"]["assignment_id"])


def test_a_misfiled_body_without_a_field_is_still_rescued() -> None:
    """The docs' grade_override body filed as grade_change, one of its fields dropped."""
    line = CANVAS_LINES[74]
    tree = json.loads(line)
    del tree["body"]["user_id"]
    p = only_publish(both(json.dumps(tree).encode()))
    assert (p.event_name, p.declared_event_name, p.missing_fields) == ("grade_override", "grade_change",
                                                                       ("body.user_id",))  # fmt: skip


def test_the_identifier_table_in_the_docs_matches_the_structs() -> None:
    text = (ROOT / "docs" / "event-identifiers.md").read_text()
    rows = re.findall(r"^\| `([^`]+)`[^|]* \| ([^|]*) \| ([^|]*) \|", text, re.MULTILINE)
    table = {name: (set(re.findall(r"`([^`]+)`", ident)), set(re.findall(r"`([^`]+)`", exp)))
             for name, ident, exp in rows}  # fmt: skip
    assert set(table) == set(CANVAS_EVENTS)
    for name in CANVAS_EVENTS:
        assert table[name] == (identifiers(name), expected(name)), name
    readme = (ROOT / "README.md").read_text()
    assert "docs/event-identifiers.md" in readme and "missing_fields" in readme


def test_an_integer_id_in_an_expected_field_and_a_missing_field_stay_on_the_fast_path() -> None:
    """The lenient twins (integer ids, Ruby times) keep UNSET apart from null, too."""
    line = next(v for v in SOURCE_LINES if b'"event_name":"grade_change"' in v)
    tree = json.loads(line)
    tree["body"]["assignment_id"] = int(tree["body"]["assignment_id"])
    del tree["body"]["muted"]
    tree["metadata"]["event_time"] = "2019-11-01 12:11:05 -0700"  # Ruby's form
    value = json.dumps(tree).encode()
    core = make_core()
    core.process(line, SOURCE, NOW_MS)  # names the topic
    fast = core.canvas.take(value, SOURCE)
    assert fast is not None and fast == only_publish(both(value))
    assert fast.missing_fields == ("body.muted",)
    body = value_of(fast)["body"]
    assert body["assignment_id"] == str(tree["body"]["assignment_id"]) and body["muted"] is None
