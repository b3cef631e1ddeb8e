"""The documented Canvas examples decode into the catalog Structs, every event type of the registry.

For every example in ``canvas-examples.jsonl``, checked against the Struct that
``CANVAS_EVENTS`` (the registry) gives for the event type it is filed under:

- every body key (also in nested objects) is a field of the Struct;
- ``msgspec.convert(body, Struct, strict=False)`` succeeds once integer values of ``Id``
  fields are turned into strings (what the lenient decoder does).

The examples are real traffic with known quirks, pinned below so that a new one fails:

- ``KNOWN_TIMESTAMP_QUIRKS``: timestamps that are not RFC 3339 (Ruby's
  ``2019-11-05 07:38:00 -0800``, the docs' ``019-11-01T...``). Their value check is skipped (the
  value is replaced by a valid placeholder); the field name is still checked.
- ``KNOWN_INTEGER_IDS``: integer values of ``Id`` fields.
- ``KNOWN_MISFILED``: an example filed under one event type in the docs whose
  ``metadata.event_name`` names another (the ``grade_override`` example says
  ``grade_change``). It is checked against the Struct of the type it is filed under.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bridge.events import CANVAS_EVENTS, assignments, conversations, courses, groups, outcomes, submissions
from bridge.events._base import CanvasBody
from tests.unit._struct_helpers import _is_id_field, _is_timestamp, _list_item_of, _parses, _struct_of

EXAMPLES_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "catalog" / "canvas-examples.jsonl"

#: Documented event types: the docs have at least one example of each (82, ``grade_override``'s
#: filed as ``grade_change``).
DOCUMENTED_TYPES = 82
#: Event types that Canvas's source emits and its docs do not document (no example here;
#: tests/unit/test_source_shapes.py decodes source-shaped payloads of them).
SOURCE_ONLY = frozenset({
    "blueprint_restrictions_updated", "blueprint_subscription_created", "blueprint_subscription_deleted",
    "content_export_created", "default_blueprint_restrictions_updated", "heartbeat", "master_migration_completed",
    "master_template_created", "outcome_friendly_description_created", "outcome_friendly_description_updated",
    "quiz_export_complete", "quiz_extension_created", "quizzes_next_migration_urls_complete",
    "quizzes_next_quiz_duplicated",
})  # fmt: skip
#: Registry names that are not snake_case event names (their Struct is named after the dotted name).
DOTTED = {"outcomes.retry_outcome_alignment_clone": "OutcomesRetryOutcomeAlignmentClone"}

# line number in canvas-examples.jsonl -> (metadata.event_name, event type it is filed under).
KNOWN_MISFILED: dict[int, tuple[str, str]] = {
    75: ("grade_change", "grade_override"),
}

# (event type, dotted field path, value): timestamps msgspec cannot parse.
KNOWN_TIMESTAMP_QUIRKS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("course_updated", "updated_at", "2019-11-05 07:38:00 -0800"),
        ("enrollment_state_created", "state_started_at", "2019-10-05 05:38:00 -0800"),
        ("enrollment_state_updated", "state_started_at", "2018-11-05 05:38:00 -0800"),
        ("user_updated", "updated_at", "019-11-01T19:11:01.163Z"),
    }
)

# (event type, dotted field path, value): integer values of Id fields.
KNOWN_INTEGER_IDS: frozenset[tuple[str, str, int]] = frozenset(
    {
        ("account_created", "account_id", 3),
        ("account_created", "root_account_id", 1),
        ("account_created", "parent_account_id", 2),
        ("account_updated", "account_id", 3),
        ("account_updated", "root_account_id", 1),
        ("account_updated", "parent_account_id", 2),
        ("assignment_override_created", "assignment_override_id", 1),
        ("assignment_override_created", "assignment_id", 1),
        ("assignment_override_created", "course_section_id", 1),
        ("assignment_override_updated", "assignment_override_id", 1),
        ("assignment_override_updated", "assignment_id", 1),
        ("assignment_override_updated", "course_section_id", 1),
    }
)

PLACEHOLDER_TIMESTAMP = "1970-01-01T00:00:00Z"


def _load_examples() -> list[tuple[int, str, dict[str, Any]]]:
    """(line number, event type the example is filed under, payload) of every example."""
    examples = []
    with EXAMPLES_PATH.open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            payload = json.loads(line)
            event_name = payload["metadata"]["event_name"]
            filed_under = KNOWN_MISFILED.get(lineno, (event_name, event_name))[1]
            examples.append((lineno, filed_under, payload))
    return examples


EXAMPLES = _load_examples()


class _Findings:
    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        self.unknown_keys: list[str] = []
        self.timestamp_quirks: set[tuple[str, str, str]] = set()
        self.integer_ids: set[tuple[str, str, int]] = set()


def _coerce_id(value: Any, where: str, found: _Findings) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        found.integer_ids.add((found.event_type, where, value))
        return str(value)
    return value


def _prepare(struct: type[msgspec.Struct], obj: dict[str, Any], path: str, found: _Findings) -> dict[str, Any]:
    """Check the keys of ``obj`` against ``struct``; return a copy ready to convert."""
    fields = {field.encode_name: field for field in msgspec.structs.fields(struct)}
    prepared: dict[str, Any] = {}
    for key, value in obj.items():
        where = f"{path}{key}"
        field = fields.get(key)
        if field is None:
            found.unknown_keys.append(where)
            continue
        nested = _struct_of(field.type)
        item = _list_item_of(field.type)
        if _is_id_field(struct, field.name):
            if isinstance(value, list):
                value = [_coerce_id(v, where, found) for v in value]
            else:
                value = _coerce_id(value, where, found)
        elif _is_timestamp(field.type) and isinstance(value, str) and not _parses(value, field.type):
            found.timestamp_quirks.add((found.event_type, where, value))
            value = PLACEHOLDER_TIMESTAMP
        elif nested is not None and isinstance(value, dict):
            value = _prepare(nested, value, f"{where}.", found)
        elif item is not None and isinstance(value, list):
            item_struct = _struct_of(item)
            if item_struct is not None:
                value = [
                    _prepare(item_struct, element, f"{where}[].", found) if isinstance(element, dict) else element
                    for element in value
                ]
        prepared[key] = value
    return prepared


def _check(event_type: str, body: dict[str, Any]) -> _Findings:
    struct = CANVAS_EVENTS[event_type]
    found = _Findings(event_type)
    prepared = _prepare(struct, body, "", found)
    assert not found.unknown_keys, f"{event_type}: fields not in {struct.__name__}: {found.unknown_keys}"
    decoded = msgspec.convert(prepared, struct, strict=False)
    assert isinstance(decoded, struct)
    return found


def _camel_case(event_name: str) -> str:
    return "".join(part.capitalize() for part in event_name.split("_"))


def test_every_event_type_has_a_struct_and_an_example_or_a_source_shape() -> None:
    documented = {filed_under for _, filed_under, _ in EXAMPLES}
    assert len(documented) == DOCUMENTED_TYPES
    assert set(CANVAS_EVENTS) == documented | SOURCE_ONLY
    assert not documented & SOURCE_ONLY
    for name, struct in CANVAS_EVENTS.items():
        assert struct.__name__ == DOTTED.get(name, _camel_case(name))
        assert issubclass(struct, CanvasBody)
        assert struct.__match_args__ == ()  # kw_only: every field is keyword-only
        assert struct.__struct_config__.forbid_unknown_fields


@pytest.mark.parametrize(
    ("filed_under", "payload"),
    [(filed_under, payload) for _, filed_under, payload in EXAMPLES],
    ids=[f"line{lineno}-{filed_under}" for lineno, filed_under, _ in EXAMPLES],
)
def test_example_body_converts(filed_under: str, payload: dict[str, Any]) -> None:
    _check(filed_under, payload["body"])


def test_quirks_are_the_known_ones() -> None:
    timestamp_quirks: set[tuple[str, str, str]] = set()
    integer_ids: set[tuple[str, str, int]] = set()
    for _, filed_under, payload in EXAMPLES:
        found = _check(filed_under, payload["body"])
        timestamp_quirks |= found.timestamp_quirks
        integer_ids |= found.integer_ids
    assert timestamp_quirks == KNOWN_TIMESTAMP_QUIRKS
    assert integer_ids == KNOWN_INTEGER_IDS


def test_misfiled_examples_are_the_known_ones() -> None:
    """Only the known examples are re-routed, and they do not fit their own event_name."""
    by_line = {lineno: (filed_under, payload) for lineno, filed_under, payload in EXAMPLES}
    for lineno, (event_name, filed_under) in KNOWN_MISFILED.items():
        assert by_line[lineno][0] == filed_under
        payload = by_line[lineno][1]
        assert payload["metadata"]["event_name"] == event_name
        found = _Findings(event_name)
        _prepare(CANVAS_EVENTS[event_name], payload["body"], "", found)
        assert found.unknown_keys, f"line {lineno} fits {event_name} after all"
    rerouted = [lineno for lineno, filed_under, p in EXAMPLES if filed_under != p["metadata"]["event_name"]]
    assert rerouted == sorted(KNOWN_MISFILED)


def test_quirky_timestamps_fail_without_the_placeholder() -> None:
    """The skipped values really are rejected by the Struct (the skip is not a no-op)."""
    checked = 0
    for _, filed_under, payload in EXAMPLES:
        for quirk_event, field_path, value in KNOWN_TIMESTAMP_QUIRKS:
            if quirk_event != filed_under:
                continue
            assert payload["body"][field_path] == value
            prepared = _prepare(CANVAS_EVENTS[filed_under], payload["body"], "", _Findings(filed_under))
            prepared[field_path] = value
            with pytest.raises(msgspec.ValidationError):
                msgspec.convert(prepared, CANVAS_EVENTS[filed_under], strict=False)
            checked += 1
    assert checked == len(KNOWN_TIMESTAMP_QUIRKS)


def test_integer_ids_are_coerced_and_other_integers_kept() -> None:
    """The test's own coercion touches ``Id`` fields only, nested ones and lists included."""
    found = _Findings("synthetic")
    group = _prepare(
        assignments.AssignmentGroupCreated,
        {"assignment_group_id": 1, "context_id": 2, "position": 10, "group_weight": 0},
        "",
        found,
    )
    assert group == {"assignment_group_id": "1", "context_id": "2", "position": 10, "group_weight": 0}
    progress = _prepare(
        courses.CourseProgress,
        {
            "course": {"id": 3, "account_id": 4, "name": "Algebra"},
            "user": {"id": 5, "name": "Ada"},
            "progress": {"requirement_count": 6, "requirement_completed_count": 5},
        },
        "",
        found,
    )
    assert progress["course"] == {"id": "3", "account_id": "4", "name": "Algebra"}
    assert progress["user"] == {"id": "5", "name": "Ada"}
    assert progress["progress"] == {"requirement_count": 6, "requirement_completed_count": 5}
    proficiency = {
        "outcome_proficiency_id": 6,
        "context_id": 7,
        "outcome_proficiency_ratings": [{"outcome_proficiency_rating_id": 8, "description": "Mastery", "points": 3,
                                         "mastery": True, "color": "0B874B", "workflow_state": "active"}],
    }  # fmt: skip
    prepared = _prepare(outcomes.OutcomeProficiencyCreated, proficiency, "", found)
    rating = prepared["outcome_proficiency_ratings"][0]
    assert (prepared["outcome_proficiency_id"], prepared["context_id"]) == ("6", "7")
    assert (rating["outcome_proficiency_rating_id"], rating["points"], rating["mastery"]) == ("8", 3, True)
    comment = _prepare(submissions.SubmissionCommentCreated, {"submission_comment_id": 9, "attachment_ids": [10, "11"]},
                       "", found)  # fmt: skip
    assert comment["attachment_ids"] == ["10", "11"]
    assert _prepare(groups.GroupCreated, {"group_id": 12, "max_membership": 100}, "", found) == {
        "group_id": "12", "max_membership": 100,
    }  # fmt: skip
    assert not found.unknown_keys
    assert found.integer_ids == {
        ("synthetic", "assignment_group_id", 1),
        ("synthetic", "context_id", 2),
        ("synthetic", "course.id", 3),
        ("synthetic", "course.account_id", 4),
        ("synthetic", "user.id", 5),
        ("synthetic", "outcome_proficiency_id", 6),
        ("synthetic", "context_id", 7),
        ("synthetic", "outcome_proficiency_ratings[].outcome_proficiency_rating_id", 8),
        ("synthetic", "submission_comment_id", 9),
        ("synthetic", "attachment_ids", 10),
        ("synthetic", "group_id", 12),
    }
    decoded = msgspec.convert(progress, courses.CourseProgress, strict=False)
    assert decoded.course.id == "3"
    assert decoded.progress.completed_at is None
    msgspec.convert(prepared, outcomes.OutcomeProficiencyCreated, strict=False)


def test_unknown_body_fields_are_rejected() -> None:
    """The Structs forbid unknown fields, nested objects included (the base class's contract)."""
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(
            {"conversation_id": "1", "updated_at": "2020-03-24T16:55:59Z", "x": 1},
            conversations.ConversationCreated,
        )
    body = {
        "course": {"id": "1", "account_id": "2", "name": "n", "extra": True},
        "user": {"id": "3", "name": "u"},
        "progress": {},
    }
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, courses.CourseCompleted)
