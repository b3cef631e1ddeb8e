"""bridge/refusals.py: screening typed records against what their topics accept, offline."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka import errors as kerr

from bridge.config import ConfigError, load_config
from bridge.core import DeadLetter, Output, Publish
from bridge.refusals import (
    H_INTENDED_TOPIC,
    H_TIMESTAMP_CLAMPED,
    REFUSAL_REASONS,
    Screen,
    TopicLimits,
    count_refusals,
    dead_letter,
    refusal_reason,
    to_catch_all,
)

NOW = 1_800_000_000_000
HOUR = 3_600_000


def _publish(topic: str = "canvas.a", ts: int = NOW - HOUR, key: str = "k1", value: bytes = b"{}") -> Publish:
    return Publish(topic, b"key", value, [("dedupe_key", key.encode())], ts, "a", key)


def _screen(out_of_range: str = "clamp", missing: str = "dead_letter") -> Screen:
    return Screen(dead_letter_topic="canvas.dlq", catch_all_topic="canvas.unknown", out_of_range=out_of_range,
                  missing=missing, catalog_topics=frozenset({"canvas.a"}))


def test_the_happy_path_leaves_everything_as_it_is() -> None:
    sends: list[Output] = [_publish(key=f"k{n}") for n in range(100)]
    before = list(sends)
    reroute: dict[int, tuple[str, str]] = {}
    assert _screen().apply(sends, {"canvas.a": TopicLimits()}, NOW, reroute) == []
    assert reroute == {} and sends == before


def test_clamp_keeps_the_event_time_in_a_header_and_sends_the_processing_time() -> None:
    ahead, far = _publish(ts=NOW + 3 * HOUR, key="ahead"), _publish(ts=253402300799999, key="far")
    sends: list[Output] = [_publish(), ahead, far]
    reroute: dict[int, tuple[str, str]] = {}
    screen = _screen()
    screen.apply(sends, {"canvas.a": TopicLimits()}, NOW, reroute)
    assert reroute == {} and screen.clamped == 2
    for original, sent in ((ahead, sends[1]), (far, sends[2])):
        assert isinstance(sent, Publish)
        assert sent.timestamp_ms == NOW and sent.value == original.value
        assert dict(sent.headers)[H_TIMESTAMP_CLAMPED] == str(original.timestamp_ms).encode()


def test_dead_letter_policy_reroutes_out_of_range_times() -> None:
    sends: list[Output] = [_publish(), _publish(ts=NOW + 3 * HOUR, key="ahead")]
    reroute: dict[int, tuple[str, str]] = {}
    _screen(out_of_range="dead_letter").apply(sends, {"canvas.a": TopicLimits()}, NOW, reroute)
    assert list(reroute) == [1] and reroute[1][0] == "timestamp_out_of_range"


def test_the_range_is_the_topics_own_with_a_margin() -> None:
    limits = {"canvas.a": TopicLimits(after_ms=2 * HOUR, before_ms=24 * HOUR)}
    sends: list[Output] = [_publish(ts=NOW + 90 * 60_000, key="in"), _publish(ts=NOW + 2 * HOUR, key="edge"),
                           _publish(ts=NOW - 25 * HOUR, key="old")]
    reroute: dict[int, tuple[str, str]] = {}
    _screen(out_of_range="dead_letter").apply(sends, limits, NOW, reroute)
    assert sorted(reroute) == [1, 2]  # the edge is in the broker's range, but within the margin kept for its clock


def test_log_append_time_topics_take_any_timestamp() -> None:
    sends: list[Output] = [_publish(ts=NOW + 100 * HOUR)]
    reroute: dict[int, tuple[str, str]] = {}
    _screen(out_of_range="dead_letter").apply(sends, {"canvas.a": TopicLimits(create_time=False)}, NOW, reroute)
    assert reroute == {}


def test_a_record_over_max_message_bytes_is_rerouted() -> None:
    sends: list[Output] = [_publish(value=b"x" * 2000, key="big"), _publish(value=b"x" * 100)]
    reroute: dict[int, tuple[str, str]] = {}
    _screen().apply(sends, {"canvas.a": TopicLimits(max_bytes=1500)}, NOW, reroute)
    assert list(reroute) == [0] and reroute[0][0] == "record_too_large"


@pytest.mark.parametrize(("limits", "reason"), [(TopicLimits(exists=False), "missing_topic"),
                                                (TopicLimits(authorized=False), "topic_not_authorized")])
def test_missing_or_forbidden_topics(limits: TopicLimits, reason: str) -> None:
    sends: list[Output] = [_publish(), _publish("canvas.b", key="b")]
    reroute: dict[int, tuple[str, str]] = {}
    assert _screen().apply(sends, {"canvas.a": limits, "canvas.b": TopicLimits()}, NOW, reroute) == []
    assert list(reroute) == [0] and reroute[0][0] == reason and "canvas.a" in reroute[0][1]
    failing = _screen(missing="fail").apply(list(sends), {"canvas.a": limits}, NOW, {})
    assert failing == ["canvas.a"]


def test_refusals_are_learnt_a_batch_at_a_time_then_a_record_at_a_time() -> None:
    screen = _screen()
    a, b, c = _publish(key="a"), _publish(key="b"), _publish(key="c")
    screen.learn([a, b, c], kerr.for_code(87)(), "record_refused")
    assert screen.is_suspect(a) and screen.is_suspect(c) and not screen.refused
    screen.learn([b], kerr.for_code(87)(), "record_refused")
    assert not screen.is_suspect(b) and screen.refused == {("canvas.a", "b"): "record_refused"}
    sends: list[Output] = [_publish(key="a"), _publish(key="b")]
    reroute: dict[int, tuple[str, str]] = {}
    screen.apply(sends, {"canvas.a": TopicLimits()}, NOW, reroute)
    assert list(reroute) == [1] and reroute[1][0] == "record_refused"


def test_a_refused_timestamp_is_clamped_under_clamp() -> None:
    screen = _screen()
    screen.learn([_publish(key="t")], kerr.InvalidTimestampError(), "timestamp_out_of_range")
    sends: list[Output] = [_publish(key="t")]
    reroute: dict[int, tuple[str, str]] = {}
    screen.apply(sends, {"canvas.a": TopicLimits()}, NOW, reroute)
    assert reroute == {} and isinstance(sends[0], Publish) and sends[0].timestamp_ms == NOW


def test_only_errors_about_the_records_are_refusals() -> None:
    assert refusal_reason(kerr.InvalidTimestampError()) == "timestamp_out_of_range"
    assert refusal_reason(kerr.MessageSizeTooLargeError()) == "record_too_large"
    assert refusal_reason(kerr.TopicAuthorizationFailedError()) == "topic_not_authorized"
    assert refusal_reason(kerr.PolicyViolationError()) == "record_refused"
    assert refusal_reason(kerr.for_code(87)()) == "record_refused"  # INVALID_RECORD, unknown to aiokafka
    for retriable in (kerr.NotLeaderForPartitionError(), kerr.RequestTimedOutError(), kerr.KafkaConnectionError(),
                      kerr.UnknownError()):
        assert refusal_reason(retriable) is None


def test_dead_letters_carry_the_raw_bytes_and_the_intended_topic() -> None:
    raw = SimpleNamespace(key=b"raw-key", value=b'{"raw": true}', offset=42)
    letter = dead_letter(_publish(), raw, "canvas.raw", 3, "canvas.dlq", "missing_topic", "topic canvas.a ...", NOW)
    assert letter.value == raw.value and letter.key == raw.key and letter.topic == "canvas.dlq"
    headers = dict(letter.headers)
    assert headers["dlq_reason"] == b"missing_topic" and headers[H_INTENDED_TOPIC] == b"canvas.a"
    assert headers["dlq_source_offset"] == b"42" and headers["dlq_source_partition"] == b"3"
    assert count_refusals([letter, _publish(), DeadLetter("canvas.dlq", None, b"x", [], "invalid_json", "")]) == {
        ("missing_topic", "canvas.a"): 1}
    caught = to_catch_all(_publish(), "canvas.unknown")
    assert caught.topic == "canvas.unknown" and dict(caught.headers)[H_INTENDED_TOPIC] == b"canvas.a"
    assert set(REFUSAL_REASONS) == {"timestamp_out_of_range", "missing_topic", "topic_not_authorized",
                                    "record_too_large", "record_refused"}


def test_the_policies_are_validated_naming_the_setting() -> None:
    assert load_config(env={}).decode.out_of_range_time == "clamp"
    assert load_config(env={}).topics.missing == "dead_letter"
    assert load_config(env={"BRIDGE_TOPICS_MISSING": "catch_all"}).topics.missing == "catch_all"
    with pytest.raises(ConfigError, match=r"decode\.out_of_range_time.*BRIDGE_DECODE_OUT_OF_RANGE_TIME"):
        load_config(env={"BRIDGE_DECODE_OUT_OF_RANGE_TIME": "ignore"})
    with pytest.raises(ConfigError, match=r"topics\.missing.*BRIDGE_TOPICS_MISSING"):
        load_config(env={"BRIDGE_TOPICS_MISSING": "drop"})
