"""bridge.timestamps: the timestamp forms Canvas sends, and the UTC text the bridge publishes."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.timestamps import TimestampError, epoch_ms, parse_lenient, to_utc_text
from tests.unit._helpers import offset_text

HSETTINGS = settings(max_examples=400, deadline=None, derandomize=True, database=None)


def tz(hours: int = 0, minutes: int = 0) -> timezone:
    return timezone(timedelta(hours=hours, minutes=minutes))


# ---------------------------------------------------------------------------------------------
# parse_lenient: accepted forms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-07-30T19:04:35.872Z", datetime(2024, 7, 30, 19, 4, 35, 872000, UTC)),
        ("2024-07-30T19:04:35.872z", datetime(2024, 7, 30, 19, 4, 35, 872000, UTC)),
        ("2024-07-30T19:04:35Z", datetime(2024, 7, 30, 19, 4, 35, tzinfo=UTC)),
        ("2024-07-30T19:04:35+00:00", datetime(2024, 7, 30, 19, 4, 35, tzinfo=UTC)),
        ("2024-07-30T19:04:35+0000", datetime(2024, 7, 30, 19, 4, 35, tzinfo=UTC)),
        ("2020-03-30T11:18:51-06:00", datetime(2020, 3, 30, 11, 18, 51, tzinfo=tz(-6))),
        ("2020-03-30T11:18:51+0530", datetime(2020, 3, 30, 11, 18, 51, tzinfo=tz(5, 30))),
        ("2020-03-30T11:18:51+05:30", datetime(2020, 3, 30, 11, 18, 51, tzinfo=tz(5, 30))),
        ("2020-03-30T11:18:51-09:30", datetime(2020, 3, 30, 11, 18, 51, tzinfo=tz(-9, -30))),
        ("2019-11-05 07:38:00 -0800", datetime(2019, 11, 5, 7, 38, tzinfo=tz(-8))),
        ("2018-10-09 21:29:57 +0000", datetime(2018, 10, 9, 21, 29, 57, tzinfo=UTC)),
        ("2019-11-05 07:38:00 UTC", datetime(2019, 11, 5, 7, 38, tzinfo=UTC)),
        ("2024-01-01T00:00:00+14:00", datetime(2024, 1, 1, tzinfo=tz(14))),
        ("2024-01-01T00:00:00-12:00", datetime(2024, 1, 1, tzinfo=tz(-12))),
    ],
)
def test_parse_lenient_accepts_the_offset_forms_canvas_sends(text: str, expected: datetime) -> None:
    got = parse_lenient(text)
    assert got == expected  # the same instant
    assert got.utcoffset() == expected.utcoffset()  # and the offset as written
    assert got.replace(tzinfo=None) == expected.replace(tzinfo=None)  # and the wall clock


def test_parse_lenient_reads_the_ruby_form_as_the_right_instant() -> None:
    assert parse_lenient("2019-11-05 07:38:00 -0800") == datetime(2019, 11, 5, 15, 38, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fraction", "micro"),
    [
        ("1", 100000),
        ("12", 120000),
        ("123", 123000),
        ("1234", 123400),
        ("12345", 123450),
        ("123456", 123456),
        ("1234567", 123457),
        ("12345678", 123457),
        ("123456789", 123457),
        ("9999994", 999999),
        ("999999999", 1_000_000),  # rounded up into the next second, as msgspec does
        ("000000001", 0),
    ],
)
def test_parse_lenient_reads_fractions_of_1_to_9_digits_rounding_to_microseconds(fraction: str, micro: int) -> None:
    got = parse_lenient(f"2024-07-30T19:04:35.{fraction}Z")
    assert got == datetime(2024, 7, 30, 19, 4, 35, tzinfo=UTC) + timedelta(microseconds=micro)


def test_parse_lenient_accepts_a_comma_as_decimal_mark() -> None:
    assert parse_lenient("2024-07-30T19:04:35,5Z") == datetime(2024, 7, 30, 19, 4, 35, 500000, UTC)


@pytest.mark.parametrize(
    "text",
    ["2024-07-30T19:04:35", "2024-07-30T19:04:35.872", "2024-07-30 19:04:35", "2024-07-30T19:04"],
)
def test_parse_lenient_without_offset_gives_a_naive_datetime(text: str) -> None:
    got = parse_lenient(text)
    assert got.tzinfo is None
    assert got.replace(microsecond=0, second=0) == datetime(2024, 7, 30, 19, 4)


@pytest.mark.parametrize(
    "text",
    [
        "019-11-01T19:11:01.163Z",  # the catalog's malformed year
        "",
        " ",
        "garbage",
        "null",
        "2024-07-30",  # a date alone
        "19:04:35Z",  # a time alone
        "2024/07/30T19:04:35Z",
        "2024-07-30T19:04:35.Z",  # a decimal mark with no digits
        "2024-07-30T19:04:35.1234567890Z",  # 10 fraction digits
        "2024-07-30T19:04:35+5:30",
        "2024-07-30T19:04:35 PST",
        "2024-07-30T19:04:35Zjunk",
        "x2024-07-30T19:04:35Z",
        "1722366275872",
    ],
)
def test_parse_lenient_rejects_what_is_not_a_timestamp(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_lenient(text)


@pytest.mark.parametrize(
    "text",
    [
        "\uff12\uff10\uff12\uff14-07-30T19:04:35Z",  # fullwidth digits
        "\u0662\u0660\u0662\u0664-07-30T19:04:35Z",  # Arabic-Indic digits
        "2024-07-30T19:04:35\u2003Z",  # an em space before the zone
    ],
)
def test_parse_lenient_rejects_non_ascii_digits_and_spaces(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_lenient(text)


@pytest.mark.parametrize(
    "text",
    [
        "2024-13-01T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-01-32T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2024-01-01T00:00:60Z",
        "0000-01-01T00:00:00Z",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+05:60",
        "2024-01-01T00:00:00-9999",
    ],
)
def test_parse_lenient_rejects_out_of_range_fields(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_lenient(text)


def test_timestamp_error_is_a_value_error() -> None:
    assert issubclass(TimestampError, ValueError)


def test_parse_lenient_accepts_a_leap_day() -> None:
    assert parse_lenient("2024-02-29T12:00:00Z") == datetime(2024, 2, 29, 12, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# to_utc_text and epoch_ms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2024, 7, 30, 19, 4, 35, 872000, UTC), "2024-07-30T19:04:35.872Z"),
        (datetime(2024, 7, 30, 19, 4, 35, tzinfo=UTC), "2024-07-30T19:04:35.000Z"),
        (datetime(2024, 7, 30, 19, 4, 35, 1000, UTC), "2024-07-30T19:04:35.001Z"),
        (datetime(2024, 7, 30, 19, 4, 35, 123456, UTC), "2024-07-30T19:04:35.123456Z"),
        (datetime(2024, 7, 30, 19, 4, 35, 1, UTC), "2024-07-30T19:04:35.000001Z"),
        (datetime(2024, 7, 30, 19, 4, 35, 872100, UTC), "2024-07-30T19:04:35.872100Z"),
    ],
)
def test_to_utc_text_keeps_milliseconds_and_microseconds_when_present(value: datetime, text: str) -> None:
    assert to_utc_text(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2019, 11, 5, 7, 38, tzinfo=tz(-8)), "2019-11-05T15:38:00.000Z"),
        (datetime(2020, 3, 30, 11, 18, 51, tzinfo=tz(-6)), "2020-03-30T17:18:51.000Z"),
        (datetime(2024, 1, 1, 1, 0, 0, 872000, tz(5, 30)), "2023-12-31T19:30:00.872Z"),
        (datetime(2024, 12, 31, 23, 0, tzinfo=tz(-12)), "2025-01-01T11:00:00.000Z"),
        (datetime(2024, 3, 1, 0, 0, tzinfo=tz(14)), "2024-02-29T10:00:00.000Z"),
    ],
)
def test_to_utc_text_converts_offsets_to_z(value: datetime, text: str) -> None:
    assert to_utc_text(value) == text


def test_to_utc_text_of_parsed_ruby_form() -> None:
    assert to_utc_text(parse_lenient("2019-11-05 07:38:00 -0800")) == "2019-11-05T15:38:00.000Z"


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
        (datetime(1970, 1, 1, 0, 0, 0, 1000, UTC), 1),
        (datetime(1970, 1, 1, 0, 0, 0, 999, UTC), 0),
        (datetime(1969, 12, 31, 23, 59, 59, 999999, UTC), -1),  # floor, not toward zero
        (datetime(1969, 12, 31, 23, 59, 59, 999000, UTC), -1),
        (datetime(2024, 7, 30, 19, 4, 35, 872000, UTC), 1722366275872),
        (datetime(2024, 7, 30, 13, 4, 35, 872999, tz(-6)), 1722366275872),
        (datetime(9999, 12, 31, 23, 59, 59, 999999, UTC), 253402300799999),
        (datetime(1, 1, 1, tzinfo=UTC), -62135596800000),
    ],
)
def test_epoch_ms_is_exact_integer_milliseconds(value: datetime, ms: int) -> None:
    assert epoch_ms(value) == ms


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

OFFSET_MINUTES = st.integers(min_value=-12 * 60, max_value=14 * 60)
# Keep the local wall clock inside datetime's range whatever the offset.
INSTANTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))


@st.composite
def written_timestamps(draw: st.DrawFn) -> tuple[str, datetime]:
    """A timestamp text in any accepted form, and the instant it denotes (micro precision)."""
    instant = draw(INSTANTS).replace(microsecond=0)
    minutes = draw(OFFSET_MINUTES)
    digits = draw(st.integers(0, 9))
    frac = draw(st.text(alphabet="0123456789", min_size=digits, max_size=digits))
    micro = (int(frac.ljust(9, "0")[:9]) + 500) // 1000 if frac else 0  # rounded, as msgspec does
    local = instant.astimezone(timezone(timedelta(minutes=minutes)))
    sep = draw(st.sampled_from(["T", " "]))
    colon = draw(st.booleans())
    space = draw(st.sampled_from(["", " "]))
    zone = offset_text(minutes, colon=colon)
    if minutes == 0:
        zone = draw(st.sampled_from([zone, "Z", "+00:00", "+0000"]))
    clock = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}{sep}{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    )
    text = clock + (f".{frac}" if frac else "") + space + zone
    return text, instant + timedelta(microseconds=micro)


@HSETTINGS
@given(written_timestamps())
def test_any_offset_with_or_without_colon_parses_back_to_the_same_instant(case: tuple[str, datetime]) -> None:
    text, instant = case
    got = parse_lenient(text)
    assert got.tzinfo is not None
    assert got == instant
    assert to_utc_text(got) == to_utc_text(instant)
    assert epoch_ms(got) == epoch_ms(instant)


@HSETTINGS
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    OFFSET_MINUTES,
    st.booleans(),
)
def test_any_aware_datetime_written_at_any_offset_round_trips(naive: datetime, minutes: int, colon: bool) -> None:
    value = naive.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:"
        f"{value.second:02d}.{value.microsecond:06d}{offset_text(minutes, colon=colon)}"
    )
    got = parse_lenient(text)
    assert got == value
    assert got.utcoffset() == value.utcoffset()


@HSETTINGS
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_to_utc_text_round_trips_through_parse_lenient(value: datetime) -> None:
    text = to_utc_text(value)
    assert text.endswith("Z")
    assert parse_lenient(text) == value
    # milliseconds always, microseconds only when there are sub-millisecond digits
    frac = text[text.index(".") + 1 : -1]
    assert len(frac) == (3 if value.microsecond % 1000 == 0 else 6)


@HSETTINGS
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    OFFSET_MINUTES,
)
def test_epoch_ms_matches_calendar_arithmetic(naive: datetime, minutes: int) -> None:
    value = naive.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    utc = value.astimezone(UTC)
    expected = calendar.timegm(utc.utctimetuple()) * 1000 + utc.microsecond // 1000
    assert epoch_ms(value) == expected


# The Ruby form ("2019-11-05 07:38:00 -0800") has a fast reading through datetime.fromisoformat;
# whatever the characters, it must agree with the regular expression's reading, which the same
# text with a leading space always takes (the expression allows leading whitespace).
_RUBY_ALPHABET = "0123456789 -+:T.Z²٣"


def _either(text: str) -> tuple[datetime, timedelta | None] | str:
    try:
        parsed = parse_lenient(text)
    except TimestampError:
        return "error"
    return parsed, parsed.utcoffset()


@HSETTINGS
@given(
    st.sampled_from(["2019-11-05 07:38:00 -0800", "2000-02-29 23:59:59 +1400", "1970-01-01 00:00:00 -2359"]),
    st.lists(st.tuples(st.integers(0, 24), st.sampled_from(_RUBY_ALPHABET)), max_size=4),
)
def test_the_ruby_form_reads_the_same_on_both_paths(base: str, edits: list[tuple[int, str]]) -> None:
    chars = list(base)
    for at, ch in edits:
        chars[at] = ch
    text = "".join(chars)
    assert _either(text) == _either(" " + text)


@pytest.mark.parametrize(
    "text",
    ["2019-11-05 07:38:00 -0860", "2019-11-05 07:38.00 -0800", "2019-11-05 073800   -0800",
     "2019-11-05 07:38:00 +2400", "2019-02-29 07:38:00 -0800", "2019-11-05 07:38:00 -08:0"],
)
def test_the_ruby_form_fast_reading_refuses_what_the_expression_refuses(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_lenient(text)
