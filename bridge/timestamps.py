"""Timestamps as Canvas sends them, and as the bridge publishes them.

Canvas documents ISO-8601 with an offset, and warns that the offset is unspecified and may
differ between timestamps inside one event. Its own examples also use Ruby's
``2019-11-05 07:38:00 -0800`` form and ``+0000`` without a colon. The bridge publishes every
timestamp as UTC ISO-8601 with ``Z``: milliseconds always, microseconds when the input had
sub-millisecond digits (Python's datetime keeps microseconds; finer digits are rounded).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import msgspec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

_LENIENT = re.compile(
    r"""^\s*(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})
    [Tt\ ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?
    \s*(?P<tz>[Zz]|UTC|[+-]\d{2}(?::?\d{2})?)?\s*$""",
    re.VERBOSE | re.ASCII,
)


class TimestampError(ValueError):
    """A string that is not a timestamp in any form Canvas is known to send."""


def parse_lenient(text: str) -> datetime:
    """Parse the ISO-8601 and Ruby forms Canvas sends. A missing offset gives a naive datetime.

    Raises ``TimestampError`` for anything else (e.g. the catalog's ``019-11-01T...``).
    """
    if (
        len(text) == 25
        and text[4] == text[7] == "-"
        and text[10] == text[19] == " "
        and text[13] == text[16] == ":"
        and text[20] in "+-"
        and text.isascii()
        and f"{text[:4]}{text[5:7]}{text[8:10]}{text[11:13]}{text[14:16]}{text[17:19]}{text[21:]}".isdigit()
        and text[23] < "6"
    ):
        # Ruby's form, "2019-11-05 07:38:00 -0800" (in the catalog's examples), as ISO-8601
        # through datetime.fromisoformat (in C; it checks the ranges). Anything it refuses is
        # explained by the regular expression below.
        try:
            return datetime.fromisoformat(f"{text[:10]}T{text[11:19]}{text[20:23]}:{text[23:]}")
        except ValueError:
            pass
    m = _LENIENT.match(text)
    if m is None:
        raise TimestampError(f"not an ISO-8601 timestamp: {text[:64]!r}")
    # Round to the microsecond, as msgspec does on the fast path, so both paths agree.
    nanos = int((m["f"] or "").ljust(9, "0"))
    micro, carry = (nanos + 500) // 1000, 0
    if micro == 1_000_000:
        micro, carry = 0, 1
    tz: timezone | None = None
    raw_tz = m["tz"]
    if raw_tz is not None:
        if raw_tz in ("Z", "z", "UTC"):
            tz = UTC
        else:
            sign = -1 if raw_tz[0] == "-" else 1
            digits = raw_tz[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
            if hours > 23 or minutes > 59:
                raise TimestampError(f"offset out of range: {text[:64]!r}")
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        year, month, day, hour, minute = (int(m[k]) for k in ("y", "mo", "d", "h", "mi"))
        parsed = datetime(year, month, day, hour, minute, int(m["s"] or 0), micro, tz)
        return parsed + timedelta(seconds=carry) if carry else parsed
    except (ValueError, OverflowError) as exc:
        raise TimestampError(f"{exc}: {text[:64]!r}") from None


def utc_json(value: datetime) -> msgspec.Raw:
    """The bridge's one UTC writer: ``value`` as the JSON string of its UTC text.

    ``"2024-07-30T19:04:35.872Z"``: milliseconds always, microseconds only when present.
    msgspec's C encoder writes ``"YYYY-MM-DDTHH:MM:SS[.ffffff]Z"`` about 10x faster than
    ``datetime.isoformat``; only the fraction is adjusted. A ``msgspec.Raw``: the core's records
    embed it as it is. Raises ``TimestampError`` when ``value`` is naive (the caller decides what
    that means) or outside the years 1-9999 once in UTC.
    """
    tz = value.tzinfo
    if tz is not UTC:
        if tz is None:
            raise TimestampError(f"{value.isoformat()} has no UTC offset")
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise TimestampError(f"{value.isoformat()} is outside the years 1-9999 in UTC") from None
    text = _encode_datetime(value)
    if len(text) == 22:  # no fraction
        return msgspec.Raw(text[:20] + b'.000Z"')
    return msgspec.Raw(text[:24] + b'Z"' if text[24:27] == b"000" else text)


def to_utc_text(value: datetime) -> str:
    """``utc_json`` as text, without the quotes: ``2024-07-30T19:04:35.872Z``."""
    return bytes(utc_json(value))[1:-1].decode()


_encode_datetime = msgspec.json.Encoder().encode


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime (floor, exact integer arithmetic)."""
    return (value - _EPOCH) // _MS
