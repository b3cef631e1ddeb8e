"""The Canvas Live Events catalog as msgspec Structs.

``CANVAS_EVENTS`` maps ``metadata.event_name`` to the Struct of that event type's body: the
event types of Canvas's published catalog, and those its source emits beyond it.
Each Canvas area has its own module; find an event type by its area, e.g. ``grade_change``
in ``bridge/events/grades.py``.
"""

from __future__ import annotations

from bridge.events import (
    accounts,
    activity,
    assignments,
    blueprints,
    conversations,
    courses,
    discussions,
    enrollments,
    files,
    grades,
    groups,
    lti,
    migrations,
    modules,
    outcomes,
    quizzes,
    sis,
    submissions,
    system,
    users,
    wiki,
)
from bridge.events._base import UNSET, CanvasBody, CanvasObject, Expected, Id
from bridge.events.metadata import CanvasMetadata

_AREAS = (accounts, activity, assignments, blueprints, conversations, courses, discussions,
          enrollments, files, grades, groups, lti, migrations, modules, outcomes,
          quizzes, sis, submissions, system, users, wiki)


def _build_registry() -> dict[str, type[CanvasBody]]:
    registry: dict[str, type[CanvasBody]] = {}
    for area in _AREAS:
        for name, struct in area.EVENTS.items():
            if name in registry:
                raise RuntimeError(f"event type {name!r} is registered twice")
            registry[name] = struct
    return registry


CANVAS_EVENTS: dict[str, type[CanvasBody]] = _build_registry()

__all__ = ["CANVAS_EVENTS", "UNSET", "CanvasBody", "CanvasMetadata", "CanvasObject", "Expected", "Id"]
