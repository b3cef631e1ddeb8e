"""The route table (bridge/core/routing.py): fixed at start for every catalog type, never changed."""

from __future__ import annotations

import msgspec
import pytest

from bridge.core import DeadLetter, Publish
from bridge.events import CANVAS_EVENTS
from bridge.events.caliper import CALIPER_EVENTS
from tests.unit._helpers import CANVAS_LINES, NOW_MS, SOURCE, make_core


def test_every_catalog_type_has_its_route_before_any_event() -> None:
    core = make_core()
    assert set(core.routes.canvas) == set(CANVAS_EVENTS)
    assert set(core.routes.caliper) == set(CALIPER_EVENTS)
    assert core.routes.canvas["grade_change"] == "canvas.grade_change"
    with pytest.raises(TypeError):
        core.routes.canvas["grade_change"] = "elsewhere"  # type: ignore[index]
    before = dict(core.routes.canvas)
    core.process(b'{"metadata": {"event_name": "not_in_catalog", "event_time": "2024-07-30T19:04:35Z"}}', SOURCE, 0)
    for line in CANVAS_LINES:
        core.process(line, SOURCE, NOW_MS)
    assert dict(core.routes.canvas) == before  # events never change it


def test_a_catalog_type_whose_topic_cannot_exist_dead_letters_saying_why() -> None:
    core = make_core(topics={"prefix": "p" * 236 + "."})
    assert "account_created" not in core.routes.canvas  # 237 + 15 > 249; grade_change: 237 + 12 = 249
    assert "grade_change" in core.routes.canvas
    line = next(v for v in CANVAS_LINES if b'"account_created"' in v)
    (out,) = core.process(line, SOURCE, NOW_MS)
    assert isinstance(out, DeadLetter) and out.reason == "invalid_event_name", out
    (ok,) = core.process(next(v for v in CANVAS_LINES if b'"event_name":"grade_change"' in v), SOURCE, NOW_MS)
    assert isinstance(ok, Publish) and ok.topic == "p" * 236 + ".grade_change"
    assert msgspec.json.decode(ok.value)["event_name"] == "grade_change"
