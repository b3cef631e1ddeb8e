"""Helpers shared by the catalog Struct tests: reading a Struct's fields as written."""

from __future__ import annotations

import datetime
import inspect
import re
import types
import typing
from typing import Any

import msgspec

_ID_ANNOTATION = re.compile(r"\b(?:External)?Id\b")


def _raw_annotation(struct: type[msgspec.Struct], name: str) -> str:
    """The field's annotation as written (a string under postponed evaluation)."""
    for klass in struct.__mro__:
        annotations = inspect.get_annotations(klass)
        if name in annotations:
            return str(annotations[name])
    raise KeyError(name)


def _is_id_field(struct: type[msgspec.Struct], name: str) -> bool:
    # ``Id`` is an alias of ``str``: only the annotation as written tells them apart.
    return _ID_ANNOTATION.search(_raw_annotation(struct, name)) is not None


def _members(tp: Any) -> list[Any]:
    """The non-None members of a (possibly optional) type."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [arg for arg in typing.get_args(tp) if arg is not type(None)]
    return [tp]


def _struct_of(tp: Any) -> type[msgspec.Struct] | None:
    for member in _members(tp):
        if isinstance(member, type) and issubclass(member, msgspec.Struct):
            return member
    return None


def _list_item_of(tp: Any) -> Any:
    for member in _members(tp):
        if typing.get_origin(member) is list:
            return typing.get_args(member)[0]
    return None


def _is_timestamp(tp: Any) -> bool:
    return any(member in (datetime.datetime, datetime.date) for member in _members(tp))


def _parses(value: str, tp: Any) -> bool:
    try:
        msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError:
        return False
    return True
