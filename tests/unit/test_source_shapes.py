"""Real Canvas traffic: payloads shaped as Canvas's source builds them, not only the docs' examples.

``tests/fixtures/source/canvas-source-payloads.jsonl`` has one payload per event type that
``Canvas::LiveEvents`` emits, with every key its source writes (conditional ones included).
These tests pin that the Structs declare all of them (no ``unknown_fields``), that such events
take the core's first decode strategy (the exact Struct, not a twin or the lenient fallback),
that the 14 event types the docs lack decode into their own Structs, and that
``canvas-bridge schema`` shows the new fields and which fields are required.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bridge.events import CANVAS_EVENTS, CanvasMetadata
from tests.unit._helpers import (
    CANVAS_LINES,
    NOW_MS,
    SOURCE,
    SOURCE_LINES,
    TIMESTAMP_RE,
    headers,
    instant_of,
    make_core,
    only_publish,
    value_of,
)

ROOT = Path(__file__).resolve().parents[2]
TREES = [json.loads(line) for line in SOURCE_LINES]
NAMES = [t["metadata"]["event_name"] for t in TREES]
CASES = [pytest.param(line, id=name) for line, name in zip(SOURCE_LINES, NAMES, strict=True)]
# The docs' only grade_override example carries event_name grade_change (a misfiled body).
CORE = make_core()
DOCUMENTED = {json.loads(line)["metadata"]["event_name"] for line in CANVAS_LINES} | {"grade_override"}

#: The event types Canvas's source emits and its docs do not document (issue #18).
NEW_TYPES = {
    "quiz_export_complete": "QuizExportComplete",
    "quizzes_next_quiz_duplicated": "QuizzesNextQuizDuplicated",
    "content_export_created": "ContentExportCreated",
    "blueprint_subscription_created": "BlueprintSubscriptionCreated",
    "blueprint_subscription_deleted": "BlueprintSubscriptionDeleted",
    "blueprint_restrictions_updated": "BlueprintRestrictionsUpdated",
    "default_blueprint_restrictions_updated": "DefaultBlueprintRestrictionsUpdated",
    "master_template_created": "MasterTemplateCreated",
    "master_migration_completed": "MasterMigrationCompleted",
    "outcome_friendly_description_created": "OutcomeFriendlyDescriptionCreated",
    "outcome_friendly_description_updated": "OutcomeFriendlyDescriptionUpdated",
    "quizzes_next_migration_urls_complete": "QuizzesNextMigrationUrlsComplete",
    "heartbeat": "Heartbeat",
    "quiz_extension_created": "QuizExtensionCreated",
}


def compact(tree: dict[str, Any]) -> dict[str, Any]:
    """What Canvas's ``payload.compact!`` does with ``compact_live_events``: top-level nulls go."""
    return {**tree, "body": {k: v for k, v in tree["body"].items() if v is not None}}


def test_the_fixture_has_one_payload_per_source_built_type_and_every_new_one() -> None:
    assert len(NAMES) == len(set(NAMES)) == 85
    assert set(NEW_TYPES) <= set(NAMES)
    assert set(NEW_TYPES) == set(CANVAS_EVENTS) - DOCUMENTED
    assert len(CANVAS_EVENTS) == 82 + 14


@pytest.mark.parametrize("line", CASES)
def test_a_source_shaped_payload_is_typed_with_every_field_declared(line: bytes) -> None:
    tree = json.loads(line)
    name = tree["metadata"]["event_name"]
    p = only_publish(CORE.process(line, SOURCE, NOW_MS))
    assert p.topic == f"canvas.{name}" and not p.generic
    assert set(headers(p)) == {"dedupe_key", "event_name", "event_format"}  # no unknown/missing/malformed
    assert p.unknown_fields == p.missing_fields == p.malformed_fields == ()
    body = value_of(p)["body"]
    fields = [f.encode_name for f in msgspec.structs.fields(CANVAS_EVENTS[name])]
    assert list(body) == fields  # the Struct's fields, in its order, each written
    for key, value in tree["body"].items():
        if isinstance(value, str) and TIMESTAMP_RE.match(value):  # rewritten in UTC: the same instant
            assert instant_of(body[key]) == instant_of(value), key
        else:
            assert body[key] == value, key


@pytest.mark.parametrize("compacted", [False, True], ids=["as-sent", "compacted"])
def test_source_shaped_events_take_the_first_decode_strategy(compacted: bool) -> None:
    """The exact Struct takes them, from the first event of each type: no twin, no lenient fallback."""
    core = make_core()
    values = [json.dumps(compact(t) if compacted else t).encode() for t in TREES]
    for value, tree in zip(values, TREES, strict=True):
        fast = core.canvas.take(value, SOURCE)  # the first strategy, on its own
        assert fast is not None, tree["metadata"]["event_name"]
        assert fast == core.process(value, SOURCE, NOW_MS)[0]
        name = tree["metadata"]["event_name"]
        msgspec.json.decode(json.dumps(tree["body"]), type=CANVAS_EVENTS[name])  # the exact Struct fits
        msgspec.json.decode(json.dumps(tree["metadata"]), type=CanvasMetadata)
    assert core.strategy_counts() == {"exact": 2 * len(values), "twin": 0, "lenient": 0, "generic": 0}
    # The counters see the other strategies: the docs' account_created example has integer ids.
    line = next(v for v in CANVAS_LINES if b'"account_created"' in v and b'"account_id":3' in v)
    assert core.canvas.take(line, SOURCE) is not None
    only_publish(core.process(line, SOURCE, NOW_MS))
    assert core.strategy_counts()["twin"] == 2


def test_a_compacted_source_shaped_event_gives_the_same_record_and_key() -> None:
    core, general = make_core(), make_core(fast_paths=False)
    compacted_some = 0
    for tree in TREES:
        full = json.dumps(tree).encode()
        small = json.dumps(compact(tree)).encode()
        a = only_publish(core.process(full, SOURCE, NOW_MS))
        b = only_publish(core.process(small, SOURCE, NOW_MS))
        assert b == only_publish(general.process(small, SOURCE, NOW_MS))
        assert (a.value, a.dedupe_key) == (b.value, b.dedupe_key)
        compacted_some += small != full
    assert compacted_some >= 10  # those with a null field


@pytest.mark.parametrize(("name", "struct_name"), sorted(NEW_TYPES.items()))
def test_each_new_event_type_decodes_into_its_own_struct(name: str, struct_name: str) -> None:
    struct = CANVAS_EVENTS[name]
    assert struct.__name__ == struct_name
    assert sum(s is struct for s in CANVAS_EVENTS.values()) == 1  # its own, not shared
    (tree,) = [t for t in TREES if t["metadata"]["event_name"] == name]
    decoded = msgspec.json.decode(json.dumps(tree["body"]), type=struct)
    assert type(decoded) is struct
    p = only_publish(CORE.process(json.dumps(tree).encode(), SOURCE, NOW_MS))
    assert p.topic == f"canvas.{name}" and p.event_name == name
    assert p.generic is False and "generic_body" not in headers(p)
    assert list(value_of(p)["body"]) == [f.encode_name for f in msgspec.structs.fields(struct)]


def test_the_source_s_learning_outcome_result_updated_without_id_is_typed() -> None:
    """The issue's example: dead-lettered every time before (the docs' Struct required ``id``)."""
    (tree,) = [t for t in TREES if t["metadata"]["event_name"] == "learning_outcome_result_updated"]
    assert "id" not in tree["body"]
    p = only_publish(make_core(decode={"mode": "strict"}).process(json.dumps(tree).encode(), SOURCE, NOW_MS))
    assert value_of(p)["body"]["id"] is None


def _schema(name: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "bridge", "schema", name], capture_output=True, cwd=ROOT,
                            check=True, timeout=60)  # fmt: skip
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def test_canvas_bridge_schema_shows_the_new_fields_and_that_only_identifiers_are_required() -> None:
    grade = _schema("grade_change")["$defs"]["GradeChange"]
    assert grade["required"] == ["submission_id"]
    assert {"type": "null"} in grade["properties"]["assignment_id"]["anyOf"]  # Expected: may be null
    assert {"type": "null"} in grade["properties"]["assignment_name"]["anyOf"]  # new, from the source
    assert {"type": "null"} not in grade["properties"]["submission_id"].get("anyOf", [])
    result = _schema("learning_outcome_result_updated")["$defs"]["LearningOutcomeResultUpdated"]
    assert result["required"] == ["learning_outcome_id"]
    assert "workflow_state" in result["properties"]
    extension = _schema("quiz_extension_created")["$defs"]["QuizExtensionCreated"]
    assert sorted(extension["required"]) == ["quiz_id", "user_id"]
    assert set(extension["properties"]) == {"quiz_id", "user_id", "extra_attempts", "extra_time", "manually_unlocked"}
    enrollment = _schema("enrollment_created")["$defs"]["EnrollmentCreated"]
    assert {"course_uuid", "user_uuid"} <= set(enrollment["properties"])
