"""Every documented catalog example goes through Core.process typed, on its topic, in UTC."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bridge.core import Publish
from tests.unit._helpers import (
    CALIPER_LINES,
    CALIPER_NAMES,
    CANVAS_LINES,
    encode,
    headers,
    make_core,
    only_publish,
    publishes,
    run,
    value_of,
    walk,
)

# A value that starts like a date-time (so also the catalog's malformed ``019-11-01T...``);
# free text that merely contains one (``"... time: 2018-10-09 21:29:57 +0000"``) is not one.
LOOKS_LIKE_TIMESTAMP = re.compile(r"^\s*\d{1,4}-\d{1,2}-\d{1,2}[Tt ]\d{1,2}:\d{2}")
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.(\d{3}|\d{6})Z$")

CANVAS_CASES = [pytest.param(i, line, id=f"canvas-{i}") for i, line in enumerate(CANVAS_LINES, 1)]
CALIPER_CASES = [
    pytest.param(i, line, name, id=f"caliper-{i}-{name}")
    for i, (line, name) in enumerate(zip(CALIPER_LINES, CALIPER_NAMES, strict=True), 1)
]


def test_the_catalog_fixtures_have_the_documented_sizes() -> None:
    assert len(CANVAS_LINES) == 121
    assert len(CALIPER_LINES) == 71


def _assert_timestamps_in_utc(p: Publish, parts: dict[str, str]) -> None:
    """Every timestamp-looking string under the given parts ends with Z, except malformed fields.

    ``parts`` maps an output key (``metadata``, ``body``, ``event``) to the root the core uses
    in its ``malformed_fields`` header (``metadata``, ``body``, ``data[0]``).
    """
    value = value_of(p)
    malformed = set(p.malformed_fields)
    hs = headers(p)
    if malformed:
        assert hs["malformed_fields"].decode().split(",") == list(p.malformed_fields)
    else:
        assert "malformed_fields" not in hs
    checked = 0
    for out_key, root in parts.items():
        for path, leaf in walk(value[out_key], root):
            if isinstance(leaf, str) and LOOKS_LIKE_TIMESTAMP.match(leaf):
                if path in malformed:
                    continue
                checked += 1
                assert ISO_Z.match(leaf), f"{path} = {leaf!r} is not UTC ISO-8601 with Z"
    # the sanity of the check itself: each event has at least its own event time
    assert checked >= 1


def _assert_common(p: Publish) -> dict[str, Any]:
    value = value_of(p)
    hs = headers(p)
    assert ISO_Z.match(value["event_time"]), value["event_time"]
    assert p.timestamp_ms == value["event_time_ms"]
    assert hs["dedupe_key"].decode() == value["dedupe_key"] == p.dedupe_key
    assert re.fullmatch(r"[0-9a-f]{32}", p.dedupe_key)
    assert hs["event_name"].decode() == value["event_name"] == p.event_name
    assert value["generic"] is False and p.generic is False
    assert "generic_body" not in hs
    assert "unknown_fields" not in hs and p.unknown_fields == ()
    return value


@pytest.mark.parametrize(("index", "line"), CANVAS_CASES)
def test_every_canvas_catalog_example_is_published_typed_in_utc(index: int, line: bytes) -> None:
    p = only_publish(run(line))
    value = _assert_common(p)
    raw = json.loads(line)
    assert p.topic == f"canvas.{p.event_name}"
    assert value["format"] == "canvas"
    assert headers(p)["event_format"] == b"canvas"
    assert set(value) == {
        "event_name", "event_time", "event_time_ms", "dedupe_key", "format", "metadata", "body", "generic",
    }  # fmt: skip
    # the metadata's own event time, normalized, is the record's event time
    assert value["metadata"]["event_time"] == value["event_time"]
    if p.declared_event_name is None:
        assert p.event_name == raw["metadata"]["event_name"]
    _assert_timestamps_in_utc(p, {"metadata": "metadata", "body": "body"})


@pytest.mark.parametrize(("index", "line", "name"), CALIPER_CASES)
def test_every_caliper_catalog_example_is_published_typed_in_utc(index: int, line: bytes, name: str) -> None:
    out = run(line)
    raw = json.loads(line)
    assert len(out) == len(raw["data"]) == 1
    p = only_publish(out)
    value = _assert_common(p)
    assert p.event_name == name
    assert p.topic == f"canvas.caliper.{name}"
    assert value["format"] == "caliper"
    assert headers(p)["event_format"] == b"caliper"
    assert value["event"]["eventTime"] == value["event_time"]
    assert value["event"]["id"] == raw["data"][0]["id"]
    assert ISO_Z.match(value["send_time"])
    assert value["sensor"] == raw["sensor"]
    assert value["data_version"] == raw["dataVersion"]
    _assert_timestamps_in_utc(p, {"event": "data[0]"})


def test_the_catalog_quirks_are_carried_as_documented() -> None:
    """The two catalog examples that need the lenient path, and only those, say so in headers."""
    flagged = {}
    for i, line in enumerate(CANVAS_LINES, 1):
        p = only_publish(run(line))
        hs = headers(p)
        extra = {k: v for k, v in hs.items() if k not in ("dedupe_key", "event_name", "event_format")}
        if extra:
            flagged[i] = extra
    assert flagged == {
        # a grade_override body filed under event_name grade_change
        75: {"declared_event_name": b"grade_change"},
        # the malformed year 019-11-01 in a secondary timestamp is carried as it came
        118: {"malformed_fields": b"body.updated_at"},
    }
    p75 = only_publish(run(CANVAS_LINES[74]))
    assert p75.topic == "canvas.grade_override" and p75.declared_event_name == "grade_change"
    v118 = value_of(only_publish(run(CANVAS_LINES[117])))
    assert v118["body"]["updated_at"] == "019-11-01T19:11:01.163Z"


def test_ruby_form_event_time_is_published_in_utc() -> None:
    (line,) = [ln for ln in CANVAS_LINES if b'"event_time":"2019-11-05 07:38:00 -0800"' in ln]
    value = value_of(only_publish(run(line)))
    assert value["event_time"] == "2019-11-05T15:38:00.000Z"
    assert value["event_time_ms"] == 1572968280000
    assert value["body"]["updated_at"] == "2019-11-05T15:38:00.000Z"


def test_minus_six_hours_body_timestamp_is_converted_to_utc() -> None:
    (line,) = [ln for ln in CANVAS_LINES if b'"updated_at":"2020-03-30T11:18:51-06:00"' in ln]
    assert value_of(only_publish(run(line)))["body"]["updated_at"] == "2020-03-30T17:18:51.000Z"


def test_seed_retry_outcome_alignment_clone_keeps_its_milliseconds() -> None:
    (line,) = [ln for ln in CANVAS_LINES if b'"event_name":"outcomes.retry_outcome_alignment_clone"' in ln]
    p = only_publish(run(line))
    value = value_of(p)
    assert p.topic == "canvas.outcomes.retry_outcome_alignment_clone"
    assert value["event_time"] == "2024-07-30T19:04:35.872Z"
    assert value["event_time_ms"] == p.timestamp_ms == 1722366275872


def test_processing_is_deterministic_and_independent_of_the_source() -> None:
    from bridge.core import Source

    core = make_core()
    for line in CANVAS_LINES[:20] + CALIPER_LINES[:20]:
        a = core.process(line, Source("t", 0, 0), 0)
        b = core.process(line, Source("other", 9, 99, b"k"), 123)
        assert [(o.topic, o.value, o.dedupe_key, o.timestamp_ms) for o in publishes(a)] == [
            (o.topic, o.value, o.dedupe_key, o.timestamp_ms) for o in publishes(b)
        ]


# ---------------------------------------------------------------------------------------------
# Caliper envelopes with several events
# ---------------------------------------------------------------------------------------------


def _caliper(i: int) -> dict[str, Any]:
    return json.loads(CALIPER_LINES[i - 1])


def _envelope(events: list[dict[str, Any]], send_time: str = "2019-11-16T02:08:46.287Z") -> bytes:
    first = _caliper(1)
    return encode(
        {"sensor": first["sensor"], "sendTime": send_time, "dataVersion": first["dataVersion"], "data": events}
    )


# Three examples of three different event types with three different ids.
THREE = (1, 45, 56)


def test_caliper_envelope_with_n_events_gives_n_records_in_order() -> None:
    events = [_caliper(i)["data"][0] for i in THREE]
    assert len({e["id"] for e in events}) == 3
    out = run(_envelope(events))
    assert len(out) == 3
    ps = publishes(out)
    assert len(ps) == 3
    assert [p.event_name for p in ps] == [CALIPER_NAMES[i - 1] for i in THREE]
    assert len({p.event_name for p in ps}) == 3
    for p, e in zip(ps, events, strict=True):
        value = _assert_common(p)
        assert p.topic == f"canvas.caliper.{p.event_name}"
        assert value["event"]["id"] == e["id"]


def test_caliper_each_record_key_comes_from_its_own_event_id() -> None:
    events = [_caliper(i)["data"][0] for i in THREE]
    together = publishes(run(_envelope(events)))
    alone = [only_publish(run(CALIPER_LINES[i - 1])) for i in THREE]
    assert [p.dedupe_key for p in together] == [p.dedupe_key for p in alone]
    assert len({p.dedupe_key for p in together}) == 3
    for p in together:
        assert headers(p)["dedupe_key"].decode() == p.dedupe_key == value_of(p)["dedupe_key"]
    # another envelope (send time), another position: the same keys
    shuffled = publishes(run(_envelope(events[::-1], send_time="2020-01-01T00:00:00.000Z")))
    assert [p.dedupe_key for p in shuffled] == [p.dedupe_key for p in together][::-1]
    # changing the id of the middle event changes its key only
    changed = [dict(e) for e in events]
    changed[1]["id"] = "urn:uuid:00000000-0000-4000-8000-000000000000"
    after = publishes(run(_envelope(changed)))
    assert [p.dedupe_key == q.dedupe_key for p, q in zip(together, after, strict=True)] == [True, False, True]


def test_two_different_caliper_catalog_examples_never_share_a_key() -> None:
    """Also the documentation's examples that reuse one event id across event types
    (lines 41/42/62, 43/44/64, 48/49): they are different events."""
    keys = [only_publish(run(line)).dedupe_key for line in CALIPER_LINES]
    assert len(set(keys)) == len(keys) == 71


def test_caliper_empty_data_is_a_dead_letter() -> None:
    from tests.unit._helpers import only_dead_letter

    value = _envelope([])
    d = only_dead_letter(run(value))
    assert d.value == value and d.reason == "invalid_caliper_event"


def test_caliper_one_bad_event_dead_letters_the_whole_envelope() -> None:
    from tests.unit._helpers import only_dead_letter

    events = [_caliper(i)["data"][0] for i in THREE]
    events[2] = {k: v for k, v in events[2].items() if k != "id"}
    value = _envelope(events)
    d = only_dead_letter(run(value))
    assert d.value == value and d.reason == "invalid_caliper_event"


# ---------------------------------------------------------------------------------------------
# Topics and record keys follow the config
# ---------------------------------------------------------------------------------------------


def test_topic_prefixes_follow_the_config() -> None:
    core = make_core(topics={"prefix": "lms.", "caliper_prefix": "lms.cal."})
    p = only_publish(run(CANVAS_LINES[0], core))
    assert p.topic == f"lms.{p.event_name}"
    q = only_publish(run(CALIPER_LINES[0], core))
    assert q.topic == f"lms.cal.{q.event_name}"


def test_record_key_modes() -> None:
    from tests.unit._helpers import SOURCE

    (line,) = [ln for ln in CANVAS_LINES if b'"event_name":"outcomes.retry_outcome_alignment_clone"' in ln]
    entity = only_publish(run(line, make_core(topics={"key": "entity"})))
    assert entity.key == b"Course:10000000000001"
    by_key = only_publish(run(line, make_core(topics={"key": "dedupe_key"})))
    assert by_key.key == by_key.dedupe_key.encode()
    by_source = only_publish(run(line, make_core(topics={"key": "source"})))
    assert by_source.key == SOURCE.key


def test_caliper_send_time_in_ruby_form_is_accepted_like_event_time() -> None:
    tree = _caliper(1)
    tree["data"][0]["eventTime"] = "2019-11-04 06:46:31.249 -0800"
    assert value_of(only_publish(run(encode(tree))))["event_time"] == "2019-11-04T14:46:31.249Z"
    tree["sendTime"] = "2019-11-16 02:08:46.287 +0000"
    assert value_of(only_publish(run(encode(tree))))["send_time"] == "2019-11-16T02:08:46.287Z"


@pytest.mark.parametrize(
    "send_time", ["2019-11-16T07:38:46.287+05:30", "2019-11-15T20:08:46.287-0600", "2019-11-16T02:08:46.287+00:00"]
)
def test_caliper_send_time_with_an_offset_is_published_in_utc(send_time: str) -> None:
    tree = _caliper(1)
    tree["sendTime"] = send_time
    assert value_of(only_publish(run(encode(tree))))["send_time"] == "2019-11-16T02:08:46.287Z"
