"""What cannot be published typed becomes exactly one dead letter, with the original bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.core import DEAD_LETTER_REASONS, Core, DeadLetter, Source
from tests.unit._helpers import (
    CALIPER_LINES,
    CANVAS_LINES,
    NOW_MS,
    SOURCE,
    canvas_examples,
    default_core,
    encode,
    headers,
    make_core,
    only_dead_letter,
    only_publish,
    run,
    value_of,
)

EXAMPLES = canvas_examples()
# account_created: integer ids in its body (needs the lenient path)
LENIENT_EXAMPLE = EXAMPLES[0]
# account_notification_created: decodes strictly as it is
STRICT_EXAMPLE = EXAMPLES[1]
STRICT = make_core(decode={"mode": "strict"})


def with_metadata(example: dict[str, Any], **changes: Any) -> dict[str, Any]:
    meta = {**example["metadata"], **changes}
    return {**example, "metadata": {k: v for k, v in meta.items() if v is not _DROP}}


def with_body(example: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {**example["body"], **changes}
    return {**example, "body": {k: v for k, v in body.items() if v is not _DROP}}


_DROP = object()


def assert_dead_letter(
    value: bytes | None, reason: str, core: Core | None = None, source: Source = SOURCE
) -> DeadLetter:
    out = (core or default_core()).process(value, source, NOW_MS)
    d = only_dead_letter(out)
    assert d.reason == reason, d.detail
    assert d.value == value  # the original bytes, unchanged (the same object is fine too)
    assert d.topic == "canvas.dlq"
    assert d.key == source.key
    hs = headers(d)
    assert hs["dlq_reason"] == reason.encode()
    assert hs["dlq_detail"] == d.detail[:1000].encode("utf-8", "replace")
    assert hs["dlq_source_topic"] == source.topic.encode()
    assert hs["dlq_source_partition"] == str(source.partition).encode()
    assert hs["dlq_source_offset"] == str(source.offset).encode()
    assert hs["dlq_time"] == str(NOW_MS).encode()
    assert reason in DEAD_LETTER_REASONS
    return d


# ---------------------------------------------------------------------------------------------
# Not JSON, not an object, not an event
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"{", b'{"metadata":', b"not json", b'{"a":1,}', b"{'a': 1}", b'{"a":1}{"b":2}', b'{"a": NaN}', b"\x00"],
)
def test_invalid_json_is_dead_lettered(value: bytes) -> None:
    assert_dead_letter(value, "invalid_json")


def test_a_truncated_catalog_example_is_invalid_json() -> None:
    assert_dead_letter(CANVAS_LINES[5][:-7], "invalid_json")


@pytest.mark.parametrize("value", [b"[]", b"[1, 2]", b'"a string"', b"42", b"-1.5e3", b"null", b"true", b" [ {} ] "])
def test_valid_json_that_is_not_an_object_is_dead_lettered(value: bytes) -> None:
    assert_dead_letter(value, "not_an_object")


def test_a_catalog_example_wrapped_in_an_array_is_not_an_object() -> None:
    assert_dead_letter(b"[" + CANVAS_LINES[0] + b"]", "not_an_object")


@pytest.mark.parametrize(
    "value",
    [
        b"{}",
        b'{"a": 1}',
        b'{"body": {"x": 1}}',
        b'{"sensor": "s", "sendTime": "2019-11-16T02:08:46.287Z"}',
        b'{"data": []}',
        b'{"event_name": "account_created", "event_time": "2024-11-01T18:42:07.091Z"}',
    ],
)
def test_an_object_that_is_neither_format_is_dead_lettered(value: bytes) -> None:
    assert_dead_letter(value, "unknown_envelope")


# ---------------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["event_name", "event_time"])
def test_missing_metadata_field_is_dead_lettered(field: str) -> None:
    value = encode(with_metadata(STRICT_EXAMPLE, **{field: _DROP}))
    d = assert_dead_letter(value, "invalid_metadata")
    assert field in d.detail


@pytest.mark.parametrize(
    "metadata",
    [None, [], "x", 1, {"event_name": ["x"], "event_time": "2024-11-01T18:42:07.091Z"}, {"event_name": None}],
)
def test_metadata_that_is_not_an_object_or_of_the_wrong_types_is_dead_lettered(metadata: Any) -> None:
    assert_dead_letter(encode({"metadata": metadata, "body": STRICT_EXAMPLE["body"]}), "invalid_metadata")


def test_an_integer_event_name_is_invalid_metadata() -> None:
    assert_dead_letter(encode(with_metadata(STRICT_EXAMPLE, event_name=1)), "invalid_metadata")


@pytest.mark.parametrize(
    "event_time",
    [
        "019-11-01T19:11:01.163Z",
        "not a time",
        "",
        "2024-13-01T00:00:00Z",
        "2024-02-30T10:00:00Z",
        "2024-11-01T18:42:07+25:00",
    ],
)
def test_malformed_event_time_is_dead_lettered(event_time: str) -> None:
    d = assert_dead_letter(encode(with_metadata(STRICT_EXAMPLE, event_time=event_time)), "invalid_timestamp")
    assert "event_time" in d.detail


@pytest.mark.parametrize("event_time", [1730486527091, None, True, ["2024-11-01T18:42:07.091Z"]])
def test_event_time_that_is_not_a_string_is_dead_lettered(event_time: Any) -> None:
    d = only_dead_letter(run(encode(with_metadata(STRICT_EXAMPLE, event_time=event_time))))
    assert d.reason in ("invalid_metadata", "invalid_timestamp")
    assert "event_time" in d.detail


@pytest.mark.parametrize("event_time", ["2024-11-01T18:42:07.091", "2024-11-01 18:42:07", "2024-11-01T18:42"])
def test_event_time_without_offset_is_a_naive_timestamp(event_time: str) -> None:
    value = encode(with_metadata(STRICT_EXAMPLE, event_time=event_time))
    d = assert_dead_letter(value, "naive_timestamp")
    assert "metadata.event_time" in d.detail


def test_naive_body_timestamp_names_the_field() -> None:
    value = encode(with_body(STRICT_EXAMPLE, end_at="2018-10-12T06:00:00"))
    d = assert_dead_letter(value, "naive_timestamp")
    assert "body.end_at" in d.detail


def test_naive_caliper_event_time_names_the_field() -> None:
    tree = json.loads(CALIPER_LINES[0])
    tree["data"][0]["eventTime"] = "2019-11-04T14:46:31.249"
    d = assert_dead_letter(encode(tree), "naive_timestamp")
    assert "data[0].eventTime" in d.detail


def test_naive_timestamps_assume_utc_publishes_instead() -> None:
    core = make_core(decode={"naive_timestamps": "assume_utc"})
    value = encode(
        with_body(with_metadata(STRICT_EXAMPLE, event_time="2024-11-01T18:42:07.091"), end_at="2018-10-12T06:00:00")
    )
    p = only_publish(run(value, core))
    v = value_of(p)
    assert v["event_time"] == "2024-11-01T18:42:07.091Z"
    assert v["body"]["end_at"] == "2018-10-12T06:00:00.000Z"
    assert p.timestamp_ms == 1730486527091
    # and it is the same event as the one written with Z
    with_z = encode(
        with_body(with_metadata(STRICT_EXAMPLE, event_time="2024-11-01T18:42:07.091Z"), end_at="2018-10-12T06:00:00Z")
    )
    assert only_publish(run(with_z, core)).dedupe_key == p.dedupe_key


def test_naive_caliper_event_time_assume_utc_publishes() -> None:
    tree = json.loads(CALIPER_LINES[0])
    tree["data"][0]["eventTime"] = "2019-11-04T14:46:31.249"
    p = only_publish(run(encode(tree), make_core(decode={"naive_timestamps": "assume_utc"})))
    assert value_of(p)["event_time"] == "2019-11-04T14:46:31.249Z"


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


def test_a_value_over_max_message_bytes_is_dead_lettered() -> None:
    line = CANVAS_LINES[1]
    core = make_core(limits={"max_message_bytes": len(line)})
    only_publish(run(line, core))  # exactly at the limit: fine
    padded = line + b" "
    d = assert_dead_letter(padded, "too_large", core)
    assert str(len(padded)) in d.detail


def test_nesting_deeper_than_max_depth_is_dead_lettered() -> None:
    core = make_core(limits={"max_depth": 6})
    # metadata/body are depth 2; the extra field adds its own levels
    ok = encode(with_body(STRICT_EXAMPLE, deep=[[[[1]]]]))  # depth 6
    only_publish(run(ok, core))
    deep = encode(with_body(STRICT_EXAMPLE, deep=[[[[[1]]]]]))  # depth 7
    d = assert_dead_letter(deep, "too_deep", core)
    assert "7" in d.detail


def test_very_deep_nesting_with_default_limits_is_dead_lettered() -> None:
    value = b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_dead_letter(value, "too_deep")


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    core = make_core(limits={"max_depth": 3})
    brackets = "[[[[[[[[{{{{{{{{" + '\\"[[[[' + "]]]]"
    value = encode(with_body(STRICT_EXAMPLE, message=brackets))
    p = only_publish(run(value, core))
    assert value_of(p)["body"]["message"] == brackets


def test_escaped_quotes_do_not_hide_real_nesting() -> None:
    core = make_core(limits={"max_depth": 4})
    value = encode(with_body(STRICT_EXAMPLE, subject='a "quoted" \\ string', deep=[[[1]]]))  # depth 5
    assert_dead_letter(value, "too_deep", core)


def test_a_string_longer_than_max_string_length_is_dead_lettered() -> None:
    assert max(len(line) for line in CANVAS_LINES[1].split(b'"')) < 300
    core = make_core(limits={"max_string_length": 300})
    ok = encode(with_body(STRICT_EXAMPLE, message="x" * 300))
    only_publish(run(ok, core))
    long = encode(with_body(STRICT_EXAMPLE, message="x" * 301))
    d = assert_dead_letter(long, "string_too_long", core)
    assert "301" in d.detail


def test_a_long_object_key_is_a_long_string_too() -> None:
    core = make_core(limits={"max_string_length": 300})
    value = encode(with_body(STRICT_EXAMPLE, **{"k" * 301: 1}))
    assert_dead_letter(value, "string_too_long", core)


def test_a_long_string_with_escapes_counts_its_raw_bytes() -> None:
    core = make_core(limits={"max_string_length": 300})
    value = encode(with_body(STRICT_EXAMPLE, message='"' * 160))  # 160 characters, 320 raw bytes
    assert_dead_letter(value, "string_too_long", core)


def test_default_limits_pass_every_catalog_example() -> None:
    for line in CANVAS_LINES + CALIPER_LINES:
        assert all(not isinstance(o, DeadLetter) for o in run(line))


# ---------------------------------------------------------------------------------------------
# Encoding and empty values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        CANVAS_LINES[1] + b"\xff",
        b"\xff" + CANVAS_LINES[1],
        CANVAS_LINES[1].replace(b'{"metadata"', b'{\xfe"metadata"', 1),
    ],
    ids=["after", "before", "between-tokens"],
)
def test_invalid_utf8_outside_strings_is_dead_lettered_as_invalid_utf8(value: bytes) -> None:
    assert_dead_letter(value, "invalid_utf8")


INVALID_UTF8_IN_STRINGS = [
    pytest.param(CANVAS_LINES[1].replace(b"Announcement</p>", b"Announ\xffcement</p>", 1), id="body-value-ff"),
    pytest.param(
        CANVAS_LINES[1].replace(b"Announcement</p>", b"Announ\xc3cement</p>", 1), id="body-value-truncated-seq"
    ),
    pytest.param(
        CANVAS_LINES[1].replace(b"Announcement</p>", b"Announ\xed\xa0\x80cement</p>", 1), id="body-value-surrogate"
    ),
    pytest.param(CANVAS_LINES[1].replace(b'"icon"', b'"ic\xffon"', 1), id="body-key"),
    pytest.param(CANVAS_LINES[0].replace(b"Account.api_create", b"Account.\xffapi", 1), id="metadata-value"),
    pytest.param(CALIPER_LINES[0].replace(b"oxana@example.com", b"ox\xffana", 1), id="caliper-value"),
]


@pytest.mark.parametrize("value", INVALID_UTF8_IN_STRINGS)
def test_invalid_utf8_inside_a_string_is_one_dead_letter_with_the_original_bytes(value: bytes) -> None:
    d = only_dead_letter(run(value))
    assert d.value == value
    assert headers(d)["dlq_reason"] == d.reason.encode()


@pytest.mark.parametrize("value", INVALID_UTF8_IN_STRINGS)
def test_invalid_utf8_inside_a_string_has_reason_invalid_utf8(value: bytes) -> None:
    assert_dead_letter(value, "invalid_utf8")


@pytest.mark.parametrize("value", [b"", None])
def test_an_empty_value_is_dead_lettered(value: bytes | None) -> None:
    assert_dead_letter(value, "empty_value")


@pytest.mark.parametrize("value", [b" ", b"\n", b"\t\r\n "])
def test_whitespace_only_is_invalid_json(value: bytes) -> None:
    assert_dead_letter(value, "invalid_json")


def test_a_source_without_key_gives_a_dead_letter_without_key() -> None:
    assert_dead_letter(b"[]", "not_an_object", source=Source("canvas.raw", 0, 7))


# ---------------------------------------------------------------------------------------------
# Strict and lenient modes
# ---------------------------------------------------------------------------------------------


def test_strict_mode_publishes_an_example_that_fits_its_struct() -> None:
    only_publish(run(encode(STRICT_EXAMPLE), STRICT))


def test_strict_mode_dead_letters_an_unknown_body_field() -> None:
    value = encode(with_body(STRICT_EXAMPLE, brand_new_field="x"))
    d = assert_dead_letter(value, "invalid_body", STRICT)
    assert "brand_new_field" in d.detail


def test_strict_mode_dead_letters_an_unknown_metadata_field() -> None:
    value = encode(with_metadata(STRICT_EXAMPLE, brand_new_field="x"))
    d = assert_dead_letter(value, "invalid_metadata", STRICT)
    assert "brand_new_field" in d.detail


def test_strict_mode_dead_letters_an_integer_id() -> None:
    assert_dead_letter(encode(LENIENT_EXAMPLE), "invalid_body", STRICT)


def test_strict_mode_dead_letters_a_malformed_secondary_timestamp() -> None:
    value = encode(with_body(STRICT_EXAMPLE, end_at="019-11-01T19:11:01.163Z"))
    assert_dead_letter(value, "invalid_body", STRICT)


def test_strict_mode_dead_letters_an_unknown_caliper_field() -> None:
    tree = json.loads(CALIPER_LINES[0])
    tree["data"][0]["brand_new_field"] = 1
    assert_dead_letter(encode(tree), "invalid_caliper_event", STRICT)


def test_lenient_mode_carries_an_unknown_body_field_and_lists_it() -> None:
    value = encode(with_body(STRICT_EXAMPLE, brand_new_field={"nested": [1, "two"]}, other=None))
    p = only_publish(run(value))
    v = value_of(p)
    assert v["body"]["brand_new_field"] == {"nested": [1, "two"]}
    assert v["body"]["other"] is None
    assert v["generic"] is False
    assert headers(p)["unknown_fields"] == b"body.brand_new_field,body.other"
    assert p.unknown_fields == ("body.brand_new_field", "body.other")


def test_lenient_mode_lists_unknown_metadata_and_nested_fields() -> None:
    caliper = json.loads(CALIPER_LINES[0])
    caliper["data"][0]["actor"]["brand_new"] = "x"
    p = only_publish(run(encode(caliper)))
    assert headers(p)["unknown_fields"] == b"data[0].actor.brand_new"
    assert value_of(p)["event"]["actor"]["brand_new"] == "x"
    value = encode(with_metadata(STRICT_EXAMPLE, brand_new_meta=3))
    p = only_publish(run(value))
    assert headers(p)["unknown_fields"] == b"metadata.brand_new_meta"
    assert value_of(p)["metadata"]["brand_new_meta"] == 3


def test_an_unknown_field_changes_the_dedupe_key() -> None:
    base = only_publish(run(encode(STRICT_EXAMPLE)))
    extra = only_publish(run(encode(with_body(STRICT_EXAMPLE, brand_new_field="x"))))
    assert extra.dedupe_key != base.dedupe_key


def test_lenient_mode_publishes_an_integer_id_as_a_string() -> None:
    p = only_publish(run(encode(LENIENT_EXAMPLE)))
    body = value_of(p)["body"]
    assert body["account_id"] == "3"
    assert body["root_account_id"] == "1"
    assert body["parent_account_id"] == "2"
    assert "unknown_fields" not in headers(p)
    meta = value_of(only_publish(run(encode(with_metadata(STRICT_EXAMPLE, user_id=2**70)))))["metadata"]
    assert meta["user_id"] == str(2**70)


def test_lenient_mode_does_not_turn_a_bool_into_an_id() -> None:
    d = only_dead_letter(run(encode(with_metadata(STRICT_EXAMPLE, user_id=True))))
    assert d.reason == "invalid_metadata"


def test_lenient_mode_carries_a_malformed_secondary_timestamp_and_flags_it() -> None:
    value = encode(with_body(STRICT_EXAMPLE, end_at="019-11-01T19:11:01.163Z"))
    p = only_publish(run(value))
    assert value_of(p)["body"]["end_at"] == "019-11-01T19:11:01.163Z"
    assert headers(p)["malformed_fields"] == b"body.end_at"


def test_a_body_of_the_wrong_type_is_dead_lettered() -> None:
    for body in (None, [], "x", 3):
        assert_dead_letter(encode({**STRICT_EXAMPLE, "body": body}), "invalid_body")
    assert_dead_letter(encode({"metadata": STRICT_EXAMPLE["metadata"]}), "invalid_body")


def test_a_required_body_field_missing_is_dead_lettered() -> None:
    assert_dead_letter(encode(with_body(STRICT_EXAMPLE, account_notification_id=_DROP)), "invalid_body")


def test_a_number_out_of_range_is_the_part_s_fault_not_an_internal_error() -> None:
    """``1e999`` is valid JSON but no float: found by the fuzz tests (it was an internal_error)."""
    line = next(v for v in CANVAS_LINES if b'"course_grade_change"' in v)
    assert b'"old_final_score":9.72' in line
    d = assert_dead_letter(line.replace(b'"old_final_score":9.72', b'"old_final_score":9.1e99972'), "invalid_body")
    assert "body" in d.detail and "out of range" in d.detail
    generic = encode(with_metadata(with_body(STRICT_EXAMPLE, x="@@"), event_name="brand_new_event"))
    assert b'"@@"' in generic
    assert_dead_letter(generic.replace(b'"@@"', b"1e999"), "invalid_body")
    caliper = next(v for v in CALIPER_LINES if b'"NavigationEvent"' in v)
    assert_dead_letter(caliper.replace(b'"type":"NavigationEvent"', b'"type":"NavigationEvent","n":-1e999'),
                       "invalid_caliper_event")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Unknown and unusable event names
# ---------------------------------------------------------------------------------------------


def test_an_unknown_event_name_is_published_generic_on_its_own_topic() -> None:
    value = encode(with_metadata(STRICT_EXAMPLE, event_name="brand_new_event"))
    p = only_publish(run(value))
    assert p.topic == "canvas.brand_new_event"
    assert p.generic is True
    hs = headers(p)
    assert hs["generic_body"] == b"true"
    assert hs["event_name"] == b"brand_new_event"
    v = value_of(p)
    assert v["generic"] is True
    assert v["body"] == STRICT_EXAMPLE["body"]  # carried as it came (timestamps are not typed)
    assert v["event_time"] == value_of(only_publish(run(encode(STRICT_EXAMPLE))))["event_time"]


def test_an_unknown_event_name_goes_to_the_catch_all_topic_when_configured() -> None:
    core = make_core(topics={"unknown_events": "catch_all"})
    value = encode(with_metadata(STRICT_EXAMPLE, event_name="brand_new_event"))
    p = only_publish(run(value, core))
    assert p.topic == "canvas.unknown"
    assert headers(p)["generic_body"] == b"true"
    # known events still go to their own topic
    assert only_publish(run(encode(STRICT_EXAMPLE), core)).topic == "canvas.account_notification_created"


def test_the_catch_all_topic_name_follows_the_config() -> None:
    core = make_core(topics={"unknown_events": "catch_all", "catch_all": "lms.other"})
    value = encode(with_metadata(STRICT_EXAMPLE, event_name="brand_new_event"))
    assert only_publish(run(value, core)).topic == "lms.other"


@pytest.mark.parametrize(
    "name",
    ["bad name", "a/b", "a:b", "", "é", "a\nb", "a" * 201, "grade change", "x*", "${jndi}"],
)
def test_an_event_name_that_cannot_name_a_topic_is_dead_lettered(name: str) -> None:
    assert_dead_letter(encode(with_metadata(STRICT_EXAMPLE, event_name=name)), "invalid_event_name")


@pytest.mark.parametrize("name", ["bad name", "a/b"])
def test_an_illegal_event_name_is_dead_lettered_in_catch_all_mode_too(name: str) -> None:
    core = make_core(topics={"unknown_events": "catch_all"})
    assert_dead_letter(encode(with_metadata(STRICT_EXAMPLE, event_name=name)), "invalid_event_name", core)


def test_the_longest_legal_event_name_is_published() -> None:
    name = "a" * 200
    p = only_publish(run(encode(with_metadata(STRICT_EXAMPLE, event_name=name))))
    assert p.topic == "canvas." + name


def test_an_unknown_caliper_event_is_published_generic() -> None:
    tree = json.loads(CALIPER_LINES[0])
    tree["data"][0]["type"] = "BrandNewEvent"
    tree["data"][0]["action"] = "Exploded"
    p = only_publish(run(encode(tree)))
    assert p.generic is True
    assert p.topic == "canvas.caliper.brand_new_event_exploded"
    assert headers(p)["generic_body"] == b"true"
    catch_all = only_publish(run(encode(tree), make_core(topics={"unknown_events": "catch_all"})))
    assert catch_all.topic == "canvas.unknown"


def test_the_dead_letter_reasons_are_a_small_fixed_set() -> None:
    """Each reason but internal_error is reached by one of the inputs above; they are metric labels."""
    assert set(DEAD_LETTER_REASONS) == {
        "too_large", "too_deep", "string_too_long", "empty_value", "invalid_utf8", "invalid_json",
        "not_an_object", "unknown_envelope", "invalid_metadata", "invalid_event_name", "invalid_body",
        "invalid_timestamp", "naive_timestamp", "invalid_caliper_event", "internal_error",
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Timestamps whose UTC instant is outside datetime's range
# ---------------------------------------------------------------------------------------------


def _out_of_range_cases() -> list[Any]:
    cases = []
    for text in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01 00:30:00 +0100"):
        cases.append(pytest.param(encode(with_metadata(STRICT_EXAMPLE, event_time=text)), id=f"event_time-{text}"))
        cases.append(pytest.param(encode(with_body(STRICT_EXAMPLE, end_at=text)), id=f"body-{text}"))
    caliper = json.loads(CALIPER_LINES[0])
    caliper["data"][0]["eventTime"] = "9999-12-31T23:59:59-01:00"
    cases.append(pytest.param(encode(caliper), id="caliper-eventTime"))
    caliper = json.loads(CALIPER_LINES[0])
    caliper["sendTime"] = "0001-01-01T00:00:00+01:00"
    cases.append(pytest.param(encode(caliper), id="caliper-sendTime"))
    return cases


@pytest.mark.parametrize("value", _out_of_range_cases())
def test_a_timestamp_out_of_range_in_utc_is_one_dead_letter_with_the_original_bytes(value: bytes) -> None:
    d = only_dead_letter(run(value))
    assert d.value == value


@pytest.mark.parametrize("value", _out_of_range_cases())
def test_a_timestamp_out_of_range_in_utc_is_an_invalid_timestamp(value: bytes) -> None:
    assert_dead_letter(value, "invalid_timestamp")


def test_the_extreme_representable_event_times_are_published_when_kafka_can_carry_them() -> None:
    # The event time becomes the Kafka record timestamp: from 1970 on. Body timestamps may be older.
    for text, expected in (
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
        ("1970-01-01T00:00:00-01:00", "1970-01-01T01:00:00.000Z"),
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
    ):
        p = only_publish(run(encode(with_metadata(STRICT_EXAMPLE, event_time=text))))
        assert value_of(p)["event_time"] == expected


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z", "1970-01-01T00:30:00+01:00"])
def test_an_event_time_before_1970_is_an_invalid_timestamp(text: str) -> None:
    assert_dead_letter(encode(with_metadata(STRICT_EXAMPLE, event_time=text)), "invalid_timestamp")


@pytest.mark.parametrize("name", [".", ".."])
def test_an_event_name_that_makes_the_topic_dot_or_dotdot_is_dead_lettered(name: str) -> None:
    core = make_core(topics={"prefix": ""})
    assert_dead_letter(encode(with_metadata(STRICT_EXAMPLE, event_name=name)), "invalid_event_name", core)
