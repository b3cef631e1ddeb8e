"""The core's fast paths: taken by what fits the Structs exactly, and never a different result.

``Core.process`` first tries a fast path (metadata and body, or every Caliper event, decoded
strictly in as few msgspec calls as possible); anything unusual goes the general path. These
tests pin that both give identical outputs (value bytes, key, headers, topic, timestamp) and
that the fast path is really taken, so that a change cannot silently slow every event down.
(The fuzz tests also run all of their 11,000 cases through both paths.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import Core, Publish
from bridge.core.plans import _static_depth
from bridge.events import CANVAS_EVENTS, CanvasMetadata
from bridge.timestamps import to_utc_text, utc_json
from tests.unit._helpers import CALIPER_LINES, CANVAS_LINES, NOW_MS, SOURCE, make_core, rewrite_timestamp

FAST = make_core()
GENERAL = make_core(fast_paths=False)


def _both(value: bytes, fast: Core = FAST, general: Core = GENERAL) -> list[Publish]:
    out = fast.process(value, SOURCE, NOW_MS)
    assert out == general.process(value, SOURCE, NOW_MS)
    return [o for o in out if isinstance(o, Publish)]


@pytest.mark.parametrize("line", CANVAS_LINES + CALIPER_LINES)
def test_every_catalog_example_gives_the_same_records_on_both_paths(line: bytes) -> None:
    assert _both(line)


@pytest.mark.parametrize("settings_", [{"topics": {"key": "dedupe_key"}}, {"topics": {"key": "source"}},
                                       {"decode": {"mode": "strict"}}])  # fmt: skip
def test_other_settings_give_the_same_records_on_both_paths(settings_: dict[str, dict[str, str]]) -> None:
    fast, general = make_core(**settings_), make_core(**settings_, fast_paths=False)  # type: ignore[arg-type]
    for line in CANVAS_LINES + CALIPER_LINES:
        _both(line, fast, general)


def _fast_taken(core: Core, line: bytes) -> bool:
    """The exact strategy takes ``line``, also as the first event of its type (no memo to fill first)."""
    if b'"metadata"' in line:
        return core.canvas.take(line, SOURCE) is not None
    return core.caliper.take(line, SOURCE) is not None


def test_the_fast_path_takes_every_example_that_fits_its_struct_exactly() -> None:
    core = make_core()
    strict = make_core(decode={"mode": "strict"})
    for line in CANVAS_LINES + CALIPER_LINES:
        if all(isinstance(o, Publish) for o in strict.process(line, SOURCE, NOW_MS)):
            assert _fast_taken(core, line), line[:200]
    taken = sum(_fast_taken(core, line) for line in CANVAS_LINES + CALIPER_LINES)
    assert taken >= 187  # of 192: the rest needs the general path (Ruby times, misfiled, malformed)


def test_integer_ids_take_the_fast_path_as_strings() -> None:
    line = next(v for v in CANVAS_LINES if b'"account_created"' in v)
    assert b'"account_id":3' in line  # the catalog's own example has integer ids
    assert _fast_taken(make_core(), line)
    body = json.loads(_both(line)[0].value)["body"]
    assert body["account_id"] == "3" and body["root_account_id"] == "1"
    strict = make_core(decode={"mode": "strict"})
    assert not _fast_taken(strict, line)
    assert [getattr(o, "reason", None) for o in strict.process(line, SOURCE, NOW_MS)] == ["invalid_body"]


def test_offsets_reordered_keys_and_whitespace_still_take_the_fast_path() -> None:
    line = next(v for v in CANVAS_LINES if b'"grade_change"' in v and b"+" not in v)
    tree = json.loads(line)
    tree["metadata"]["event_time"] = rewrite_timestamp(tree["metadata"]["event_time"], 330, "iso")
    variant = json.dumps(dict(reversed(tree.items())), indent=2).encode()
    assert _fast_taken(make_core(), variant)
    assert _both(variant)[0].dedupe_key == _both(line)[0].dedupe_key


def test_a_naive_timestamp_leaves_the_fast_path_and_is_dead_lettered() -> None:
    line = next(v for v in CANVAS_LINES if b'"account_notification_created"' in v)
    tree = json.loads(line)
    tree["metadata"]["event_time"] = "2024-07-30T19:04:35.872"
    out = FAST.process(json.dumps(tree).encode(), SOURCE, NOW_MS)
    assert out == GENERAL.process(json.dumps(tree).encode(), SOURCE, NOW_MS)
    assert [getattr(o, "reason", None) for o in out] == ["naive_timestamp"]


OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30)),
    st.one_of(st.just(UTC), OFFSETS),
    st.sampled_from([0, 1, 999, 1000, 123000, 123456, 999999]),
)
def test_utc_json_writes_utc_with_milliseconds_or_microseconds(naive: datetime, tz: timezone, micro: int) -> None:
    """The one UTC writer, against datetime's own (slower) ISO-8601 writer."""
    value = naive.replace(microsecond=micro, tzinfo=tz)
    spec = "milliseconds" if micro % 1000 == 0 else "microseconds"
    expected = value.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")
    assert bytes(utc_json(value)) == msgspec.json.encode(expected)
    assert to_utc_text(value) == expected


def test_static_depth_bounds_the_structs_and_gives_up_on_any() -> None:
    assert _static_depth(msgspec.inspect.type_info(CanvasMetadata)) == 1
    assert _static_depth(msgspec.inspect.type_info(dict[str, int])) == 1
    assert _static_depth(msgspec.inspect.type_info(list[list[int]])) == 2
    assert _static_depth(msgspec.inspect.type_info(dict[str, object])) is None
    depths = {name: _static_depth(msgspec.inspect.type_info(t)) for name, t in CANVAS_EVENTS.items()}
    assert depths["assignment_group_created"] is None  # integration_data: dict[str, Any]
    assert all(d is None or 1 <= d <= 8 for d in depths.values())


def test_a_deep_value_inside_an_open_field_is_still_too_deep_on_the_fast_path() -> None:
    line = next(v for v in CANVAS_LINES if b"\"assignment_group_created\"" in v)
    tree = json.loads(line)
    deep: object = 1
    for _ in range(80):
        deep = [deep]
    tree["body"]["integration_data"] = {"x": deep}
    value = json.dumps(tree).encode()
    out = FAST.process(value, SOURCE, NOW_MS)
    assert out == GENERAL.process(value, SOURCE, NOW_MS)
    assert [getattr(o, "reason", None) for o in out] == ["too_deep"]


def test_an_unknown_top_level_field_goes_the_general_way_with_the_same_result() -> None:
    line = CANVAS_LINES[0]
    value = line[:-1] + b',"extra":{"a":[1,2,3]}}'
    assert not _fast_taken(make_core(), value)
    assert _both(value)


def test_the_ferpa_policy_gives_the_same_records_on_both_paths() -> None:
    """PII redaction runs after the key, on whatever path produced the value."""
    import tomllib
    from pathlib import Path

    from bridge.config import load_config
    from bridge.pii import PiiPolicy, PiiSettings

    with open(Path(__file__).resolve().parents[2] / "config" / "ferpa.toml", "rb") as fh:
        settings = msgspec.convert(tomllib.load(fh)["pii"], PiiSettings)
    policy = PiiPolicy(msgspec.structs.replace(settings, secret="0123456789abcdef-test"))
    assert policy.active
    cfg = load_config(env={})
    fast = Core(cfg.topics, cfg.decode, cfg.limits, policy)
    general = Core(cfg.topics, cfg.decode, cfg.limits, policy, fast_paths=False)
    for line in CANVAS_LINES + CALIPER_LINES:
        records = _both(line, fast, general)
        plain = _both(line)
        assert [r.dedupe_key for r in records] == [r.dedupe_key for r in plain]
    assert any(r.value != p.value for line in CANVAS_LINES for r, p in zip(_both(line, fast, general), _both(line),
                                                                         strict=True))  # fmt: skip


def test_the_decode_strategy_metric_reads_the_cores_counts_at_scrape_time() -> None:
    from bridge.metrics import DecodeStrategies

    collector = DecodeStrategies()
    cores = [make_core(), make_core()]
    for core in cores:
        collector.watch(core.strategy_counts)

    def scrape() -> dict[str, float]:
        (family,) = collector.collect()
        assert family.name == "canvas_bridge_decode_strategy_events"
        return {s.labels["strategy"]: s.value for s in family.samples if s.name.endswith("_total")}

    assert scrape() == {"exact": 0, "twin": 0, "lenient": 0, "generic": 0}
    cores[0].process(CANVAS_LINES[-1], SOURCE, NOW_MS)
    cores[1].process(CANVAS_LINES[-1], SOURCE, NOW_MS)
    cores[1].process(b'{"metadata": {"event_name": "x", "event_time": "2024-07-30T19:04:35Z"}, "body": {}}', SOURCE, 0)
    assert scrape() == {"exact": 2, "twin": 0, "lenient": 0, "generic": 1}, CANVAS_LINES[-1][:80]
