"""The documented Canvas examples decode into the catalog Structs (areas of batch B).

Batch B: groups, outcomes, lti, modules, quizzes, sis, submissions, users, wiki.
For every example of these event types in ``canvas-examples.jsonl``:

- every body key (also in nested objects) is a field of the Struct;
- ``msgspec.convert(body, Struct, strict=False)`` succeeds once integer values of
  ``Id`` fields are turned into strings (what the lenient decoder does).

Timestamps that are not RFC 3339 (real traffic quirks) are listed in
``KNOWN_TIMESTAMP_QUIRKS``: their value check is skipped (the value is replaced by a
valid placeholder), the field name is still checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bridge.events import (
    groups,
    lti,
    modules,
    outcomes,
    quizzes,
    sis,
    submissions,
    users,
    wiki,
)
from bridge.events._base import CanvasBody
from tests.unit._struct_helpers import (
    _is_id_field,
    _is_timestamp,
    _list_item_of,
    _parses,
    _struct_of,
)

EXAMPLES_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "catalog" / "canvas-examples.jsonl"

EVENT_NAMES: tuple[str, ...] = (
    # groups
    "group_category_created",
    "group_category_updated",
    "group_created",
    "group_updated",
    "group_membership_created",
    "group_membership_updated",
    # outcomes
    "learning_outcome_created",
    "learning_outcome_updated",
    "learning_outcome_group_created",
    "learning_outcome_group_updated",
    "learning_outcome_link_created",
    "learning_outcome_link_updated",
    "learning_outcome_result_created",
    "learning_outcome_result_updated",
    "outcome_calculation_method_created",
    "outcome_calculation_method_updated",
    "outcome_proficiency_created",
    "outcome_proficiency_updated",
    "rubric_assessed",
    # lti
    "lti_resource_link_created",
    "lti_resource_link_updated",
    # modules
    "module_created",
    "module_updated",
    "module_item_created",
    "module_item_updated",
    # quizzes
    "quiz_created",
    "quiz_submitted",
    "quiz_updated",
    # sis
    "sis_batch_created",
    "sis_batch_updated",
    # submissions
    "submission_created",
    "submission_updated",
    "submission_comment_created",
    "submission_custom_grade_status",
    "plagiarism_resubmit",
    # users
    "user_created",
    "user_updated",
    "logged_in",
    "logged_out",
    # wiki
    "wiki_page_created",
    "wiki_page_deleted",
    "wiki_page_updated",
)

STRUCTS: dict[str, type[CanvasBody]] = {}
for _area in (groups, outcomes, lti, modules, quizzes, sis, submissions, users, wiki):
    STRUCTS.update(_area.EVENTS)

# (event_name, dotted field path, value): timestamps msgspec cannot parse.
KNOWN_TIMESTAMP_QUIRKS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("user_updated", "updated_at", "019-11-01T19:11:01.163Z"),
    }
)

# (event_name, dotted field path, value): integer values of Id fields.
KNOWN_INTEGER_IDS: frozenset[tuple[str, str, int]] = frozenset()

PLACEHOLDER_TIMESTAMP = "1970-01-01T00:00:00Z"



def _load_examples() -> list[tuple[int, dict[str, Any]]]:
    examples = []
    with EXAMPLES_PATH.open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            payload = json.loads(line)
            if payload["metadata"]["event_name"] in EVENT_NAMES:
                examples.append((lineno, payload))
    return examples


EXAMPLES = _load_examples()


class _Findings:
    def __init__(self, event_name: str) -> None:
        self.event_name = event_name
        self.unknown_keys: list[str] = []
        self.timestamp_quirks: set[tuple[str, str, str]] = set()
        self.integer_ids: set[tuple[str, str, int]] = set()


def _prepare(
    struct: type[msgspec.Struct], obj: dict[str, Any], path: str, found: _Findings
) -> dict[str, Any]:
    """Check the keys of ``obj`` against ``struct``; return a copy ready to convert."""
    fields = {field.encode_name: field for field in msgspec.structs.fields(struct)}
    prepared: dict[str, Any] = {}
    for key, value in obj.items():
        where = f"{path}{key}"
        field = fields.get(key)
        if field is None:
            found.unknown_keys.append(where)
            continue
        is_id = _is_id_field(struct, field.name)
        nested = _struct_of(field.type)
        item = _list_item_of(field.type)
        if is_id and isinstance(value, int) and not isinstance(value, bool):
            found.integer_ids.add((found.event_name, where, value))
            value = str(value)
        elif is_id and isinstance(value, list):
            coerced = []
            for element in value:
                if isinstance(element, int) and not isinstance(element, bool):
                    found.integer_ids.add((found.event_name, where, element))
                    element = str(element)
                coerced.append(element)
            value = coerced
        elif _is_timestamp(field.type) and isinstance(value, str) and not _parses(value, field.type):
            found.timestamp_quirks.add((found.event_name, where, value))
            value = PLACEHOLDER_TIMESTAMP
        elif nested is not None and isinstance(value, dict):
            value = _prepare(nested, value, f"{where}.", found)
        elif item is not None and isinstance(value, list):
            item_struct = _struct_of(item)
            if item_struct is not None:
                value = [
                    _prepare(item_struct, element, f"{where}[].", found)
                    if isinstance(element, dict)
                    else element
                    for element in value
                ]
        prepared[key] = value
    return prepared


def _check(payload: dict[str, Any]) -> _Findings:
    event_name = payload["metadata"]["event_name"]
    struct = STRUCTS[event_name]
    found = _Findings(event_name)
    prepared = _prepare(struct, payload["body"], "", found)
    assert not found.unknown_keys, f"{event_name}: fields not in {struct.__name__}: {found.unknown_keys}"
    decoded = msgspec.convert(prepared, struct, strict=False)
    assert isinstance(decoded, struct)
    return found


def test_every_event_type_has_a_struct_and_an_example() -> None:
    assert len(EVENT_NAMES) == len(set(EVENT_NAMES)) == 42
    missing_structs = [name for name in EVENT_NAMES if name not in STRUCTS]
    assert not missing_structs
    seen = {payload["metadata"]["event_name"] for _, payload in EXAMPLES}
    assert seen == set(EVENT_NAMES)


@pytest.mark.parametrize(
    "payload",
    [payload for _, payload in EXAMPLES],
    ids=[f"line{lineno}-{payload['metadata']['event_name']}" for lineno, payload in EXAMPLES],
)
def test_example_body_converts(payload: dict[str, Any]) -> None:
    _check(payload)


def test_quirks_are_the_known_ones() -> None:
    timestamp_quirks: set[tuple[str, str, str]] = set()
    integer_ids: set[tuple[str, str, int]] = set()
    for _, payload in EXAMPLES:
        found = _check(payload)
        timestamp_quirks |= found.timestamp_quirks
        integer_ids |= found.integer_ids
    assert timestamp_quirks == KNOWN_TIMESTAMP_QUIRKS
    assert integer_ids == KNOWN_INTEGER_IDS


def test_quirky_timestamps_fail_without_the_placeholder() -> None:
    """The skipped values really are rejected by the Struct (the skip is not a no-op)."""
    for _, payload in EXAMPLES:
        event_name = payload["metadata"]["event_name"]
        for quirk_event, field_path, _value in KNOWN_TIMESTAMP_QUIRKS:
            if quirk_event != event_name or "." in field_path:
                continue
            found = _Findings(event_name)
            prepared = _prepare(STRUCTS[event_name], payload["body"], "", found)
            prepared[field_path] = payload["body"][field_path]
            with pytest.raises(msgspec.ValidationError):
                msgspec.convert(prepared, STRUCTS[event_name], strict=False)


def test_integer_ids_are_coerced_and_other_integers_kept() -> None:
    """The test's own coercion touches ``Id`` fields only, nested ones included."""
    found = _Findings("synthetic")
    prepared = _prepare(
        outcomes.OutcomeProficiencyCreated,
        {
            "outcome_proficiency_id": 1,
            "context_id": 2,
            "outcome_proficiency_ratings": [
                {
                    "outcome_proficiency_rating_id": 3,
                    "description": "Mastery",
                    "points": 3,
                    "mastery": True,
                    "color": "0B874B",
                    "workflow_state": "active",
                }
            ],
        },
        "",
        found,
    )
    assert prepared["outcome_proficiency_id"] == "1"
    assert prepared["context_id"] == "2"
    rating = prepared["outcome_proficiency_ratings"][0]
    assert rating["outcome_proficiency_rating_id"] == "3"
    assert rating["points"] == 3
    assert rating["mastery"] is True
    comment = _prepare(
        submissions.SubmissionCommentCreated,
        {"submission_comment_id": 4, "attachment_ids": [5, "6"]},
        "",
        found,
    )
    assert comment["attachment_ids"] == ["5", "6"]
    group = _prepare(groups.GroupCreated, {"group_id": 7, "max_membership": 100}, "", found)
    assert group == {"group_id": "7", "max_membership": 100}
    assert not found.unknown_keys
    msgspec.convert(prepared, outcomes.OutcomeProficiencyCreated, strict=False)
