"""The Caliper 1.1 Structs against the 71 documented Caliper examples.

``caliper-expected-names.txt`` holds, line for line, the Canvas event name of the
documentation file each line of ``caliper-examples.jsonl`` comes from.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bridge.events.caliper import (
    CALIPER_EVENTS,
    CaliperEnvelope,
    CaliperEvent,
    CaliperEventHead,
    caliper_event_name,
)

CATALOG = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"
LINES = (CATALOG / "caliper-examples.jsonl").read_bytes().splitlines()
NAMES = (CATALOG / "caliper-expected-names.txt").read_text().split()

# Line numbers (1-based) of examples with quirks that make the strict decode fail and
# that need a coercion + ``msgspec.convert(..., strict=False)``. None today: every one of
# the 71 examples decodes strictly.
LENIENT_LINES: frozenset[int] = frozenset()

CASES = [
    pytest.param(i, line, name, id=f"{i}-{name}")
    for i, (line, name) in enumerate(zip(LINES, NAMES, strict=True), 1)
]


def _event(action: str, type_: str = "Event", obj: dict[str, Any] | str | None = None) -> CaliperEventHead:
    body: dict[str, Any] = {"id": "urn:uuid:x", "type": type_, "action": action}
    if obj is not None:
        body["object"] = obj
    return msgspec.json.decode(json.dumps(body), type=CaliperEventHead)


def _keys(value: Any) -> Any:
    """The shape of a JSON value: its object keys, recursively, ignoring null members."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_keys(v) for v in value]
    return None


def test_fixture_files_agree() -> None:
    assert len(LINES) == 71
    assert len(NAMES) == 71
    assert set(NAMES) == set(CALIPER_EVENTS)
    assert len(CALIPER_EVENTS) == 32


@pytest.mark.parametrize(("lineno", "line", "expected"), CASES)
def test_example_routes_and_decodes(lineno: int, line: bytes, expected: str) -> None:
    envelope = msgspec.json.decode(line, type=CaliperEnvelope)
    assert isinstance(envelope.send_time, datetime)
    assert envelope.data
    for raw in envelope.data:
        head = msgspec.json.decode(raw, type=CaliperEventHead)
        assert caliper_event_name(head) == expected
        struct = CALIPER_EVENTS[expected]
        if lineno in LENIENT_LINES:
            event = msgspec.convert(msgspec.json.decode(raw), struct, strict=False)
        else:
            event = msgspec.json.decode(raw, type=struct)
        assert isinstance(event, CaliperEvent)
        assert event.id == head.id
        assert event.event_time.tzinfo is not None


@pytest.mark.parametrize(("lineno", "line", "expected"), CASES)
def test_example_reencodes_with_caliper_wire_names(lineno: int, line: bytes, expected: str) -> None:
    envelope = msgspec.json.decode(line, type=CaliperEnvelope)
    for raw in envelope.data:
        struct = CALIPER_EVENTS[expected]
        event = msgspec.json.decode(raw, type=struct)
        encoded = msgspec.json.encode(event)
        assert _keys(json.loads(encoded)) == _keys(json.loads(bytes(raw)))
        assert msgspec.json.decode(encoded, type=struct) == event


def test_unknown_field_fails_the_strict_decode() -> None:
    raw = json.loads(LINES[NAMES.index("grade_change")])["data"][0]
    raw["object"]["extensions"]["com.instructure.canvas"]["new_field"] = 1
    with pytest.raises(msgspec.ValidationError, match="new_field"):
        msgspec.json.decode(json.dumps(raw), type=CALIPER_EVENTS["grade_change"])
    # ... while the head ignores it and still routes the event.
    head = msgspec.json.decode(json.dumps(raw), type=CaliperEventHead)
    assert caliper_event_name(head) == "grade_change"


@pytest.mark.parametrize("missing", ["id", "type", "action", "eventTime"])
def test_required_event_fields(missing: str) -> None:
    raw = json.loads(LINES[NAMES.index("logged_out")])["data"][0]
    del raw[missing]
    with pytest.raises(msgspec.ValidationError, match=missing):
        msgspec.json.decode(json.dumps(raw), type=CALIPER_EVENTS["logged_out"])


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        # specific Caliper event types route on (type, action) whatever the object
        (
            _event(
                "NavigatedTo", "NavigationEvent", {"id": "urn:instructure:canvas:module:1", "type": "Entity"}
            ),
            "asset_accessed",
        ),
        (_event("Submitted", "AssessmentEvent"), "quiz_submitted"),
        # generic Event: action suffix + object type
        (_event("Deleted", obj={"id": "x", "type": "Page"}), "wiki_page_deleted"),
        (_event("Modified", obj={"id": "x", "type": "Attempt"}), "submission_updated"),
        # Document: attachment by extension hint even without a Canvas URN
        (
            _event(
                "Modified",
                obj={
                    "id": "x",
                    "type": "Document",
                    "extensions": {"com.instructure.canvas": {"folder_id": "1"}},
                },
            ),
            "attachment_updated",
        ),
        # Entity: enrollment state hints win over the enrollment URN kind
        (
            _event(
                "Modified",
                obj={
                    "id": "urn:instructure:canvas:enrollment:1",
                    "type": "Entity",
                    "extensions": {"com.instructure.canvas": {"state": "active"}},
                },
            ),
            "enrollment_state_updated",
        ),
        (
            _event("Modified", obj={"id": "urn:instructure:canvas:enrollment:1", "type": "Entity"}),
            "enrollment_updated",
        ),
        (
            _event("Created", obj={"id": "urn:instructure:canvas:group_category:1", "type": "Entity"}),
            "group_category_created",
        ),
        (
            _event("Modified", obj={"id": "urn:instructure:canvas:assignmentOverride:1", "type": "Entity"}),
            "assignment_override_updated",
        ),
        # cannot tell
        (_event("Created", obj={"id": "urn:instructure:canvas:module:1", "type": "Entity"}), None),
        (_event("Deleted", obj={"id": "x", "type": "CourseOffering"}), None),  # no course_deleted
        (
            _event("Modified", obj={"id": "urn:instructure:canvas:course:1", "type": "Document"}),
            "syllabus_updated",
        ),
        (_event("Created", obj={"id": "urn:instructure:canvas:course:1", "type": "Document"}), None),
        (_event("Created", obj="urn:instructure:canvas:groupCategory:1"), None),  # IRI only: no object type
        (_event("Graded", "Event", {"id": "x", "type": "Attempt"}), None),
        (_event("Viewed", "ViewEvent"), None),
        (_event("Created"), None),
        (msgspec.json.decode(b"{}", type=CaliperEventHead), None),
    ],
)
def test_routing_rules(head: CaliperEventHead, expected: str | None) -> None:
    assert caliper_event_name(head) == expected
