"""Size, depth and string-length checks on a raw value (``[limits]``), before any decoding."""

from __future__ import annotations

import re

from bridge.config import LimitsSettings
from bridge.core.outputs import R_EMPTY, R_STRING_TOO_LONG, R_TOO_DEEP, R_TOO_LARGE, Rejected

_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


_BRACKETS = re.compile(rb"[\[\]{}]")


def _max_depth(value: bytes) -> int:
    """Exact JSON nesting depth, ignoring brackets inside strings."""
    depth = best = 0
    for m in _BRACKETS.finditer(_STRING_RE.sub(b'""', value)):
        if m.group() in (b"{", b"["):
            depth += 1
            if depth > best:
                best = depth
        else:
            depth -= 1
    return best


def check_size(value: bytes | None, limits: LimitsSettings) -> bytes:
    if not value:
        raise Rejected(R_EMPTY, "the record has no value")
    if len(value) > limits.max_message_bytes:
        raise Rejected(R_TOO_LARGE, f"{len(value)} bytes > limits.max_message_bytes={limits.max_message_bytes}")
    return value


def check_shape(value: bytes, limits: LimitsSettings) -> None:
    # Cheap bounds first: depth <= number of brackets; a string <= the whole value.
    if value.count(b"{") + value.count(b"[") > limits.max_depth:
        depth = _max_depth(value)
        if depth > limits.max_depth:
            raise Rejected(R_TOO_DEEP, f"nesting depth {depth} > limits.max_depth={limits.max_depth}")
    if len(value) > limits.max_string_length:
        for m in _STRING_RE.finditer(value):
            if m.end() - m.start() - 2 > limits.max_string_length:
                raise Rejected(
                    R_STRING_TOO_LONG,
                    f"a string of {m.end() - m.start() - 2} bytes at byte {m.start()}"
                    f" > limits.max_string_length={limits.max_string_length}",
                )


def depth_ok(value: bytes, max_depth: int) -> bool:
    """For the exact strategy, when the Structs do not bound the depth: within ``limits.max_depth``?"""
    return value.count(b"{") + value.count(b"[") <= max_depth or _max_depth(value) <= max_depth
