"""Plans: what each Struct type holds (timestamps, fields Canvas may leave out, depth), from one walker.

The normalizers (timestamps to UTC text) and the missing-fields check are built from the plans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from bridge.core.outputs import R_INVALID_TIMESTAMP, R_NAIVE_TIMESTAMP, Rejected
from bridge.events._base import CANVAS_ID
from bridge.timestamps import TimestampError, to_utc_text, utc_json

# ---------------------------------------------------------------------------
# One plan per Struct type, from one walk over its msgspec type info.
# ---------------------------------------------------------------------------

_KIND_DT, _KIND_STRUCT, _KIND_LIST_STRUCT, _KIND_LIST_DT, _KIND_DICT_STRUCT = range(5)
_PENDING = -1  # the depth of a plan being built: met again, it is a cycle (unbounded)


@dataclass(slots=True)
class _Plan:
    """What the strategies need of one Struct type, computed once by ``_build_plan``.

    ``steps``: its timestamp fields, and its nested Structs that have some (the normalizers);
    ``expected``/``nested``: its ``Expected`` fields (default ``UNSET``) and its nested Structs
    that have some (the missing-fields check); ``depth``: the deepest JSON nesting a value
    decoded into it can have (None: unbounded).
    """

    steps: list[tuple[str, str, int, _Plan | None]] = field(default_factory=list)
    expected: list[tuple[str, str]] = field(default_factory=list)  # (attribute, JSON name)
    nested: list[tuple[str, str, int, _Plan]] = field(default_factory=list)
    depth: int | None = _PENDING


def _unwrap_optional(t: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """``X | None`` -> ``X``; ``Annotated[X, Meta(...)]`` -> ``X``."""
    if isinstance(t, msgspec.inspect.UnionType):
        non_null = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        if len(non_null) == 1:
            t = non_null[0]
    if isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    return t


def _is_canvas_id(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_is_canvas_id(x) for x in t.types)
    return isinstance(t, msgspec.inspect.Metadata) and bool((t.extra or {}).get(CANVAS_ID))


def _field_kind(t: msgspec.inspect.Type) -> tuple[int, msgspec.inspect.Type] | None:
    """What the plans read of a field's (unwrapped) type: a timestamp, a Struct, or a list or dict of them."""
    if isinstance(t, msgspec.inspect.DateTimeType):
        return _KIND_DT, t
    if isinstance(t, msgspec.inspect.StructType):
        return _KIND_STRUCT, t
    if isinstance(t, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        item = _unwrap_optional(t.item_type)
        if isinstance(item, msgspec.inspect.DateTimeType):
            return _KIND_LIST_DT, item
        return (_KIND_LIST_STRUCT, item) if isinstance(item, msgspec.inspect.StructType) else None
    if isinstance(t, msgspec.inspect.DictType):
        value = _unwrap_optional(t.value_type)
        return (_KIND_DICT_STRUCT, value) if isinstance(value, msgspec.inspect.StructType) else None
    return None


def _build_plan(info: msgspec.inspect.StructType, cache: dict[type, _Plan]) -> _Plan:
    """The plan of a Struct type (and of the Structs it holds, in ``cache``): the one walker."""
    if info.cls in cache:
        return cache[info.cls]
    plan = cache[info.cls] = _Plan()  # before recursing: recursive Structs terminate
    # msgspec.inspect shows an UNSET default as NODEFAULT: the defaults come from the Struct.
    unset = {f.name for f in msgspec.structs.fields(info.cls) if f.default is msgspec.UNSET}
    for f in info.fields:
        if f.name in unset:
            plan.expected.append((f.name, f.encode_name))
        found = _field_kind(_unwrap_optional(f.type))
        if found is None:
            continue
        kind, t = found
        if kind in (_KIND_DT, _KIND_LIST_DT):
            plan.steps.append((f.name, f.encode_name, kind, None))
            continue
        assert isinstance(t, msgspec.inspect.StructType)
        sub = _build_plan(t, cache)
        if sub.steps:
            plan.steps.append((f.name, f.encode_name, kind, sub))
        if sub.expected or sub.nested:
            plan.nested.append((f.name, f.encode_name, kind, sub))
    inner = [_depth(f.type, cache) for f in info.fields]
    plan.depth = None if None in inner else 1 + max((d for d in inner if d is not None), default=0)
    return plan


def _depth(t: msgspec.inspect.Type, cache: dict[type, _Plan]) -> int | None:
    """The deepest JSON nesting a value of type ``t`` can have (None: unbounded, e.g. ``Any``).

    A value that decoded into Structs forbidding unknown fields cannot be deeper than this,
    so the exact strategy skips scanning it for ``limits.max_depth`` when the bound is below it.
    """
    if isinstance(t, msgspec.inspect.Metadata):
        return _depth(t.type, cache)
    if isinstance(t, msgspec.inspect.UnionType):
        depths = [_depth(x, cache) for x in t.types]
        return None if None in depths else max(d for d in depths if d is not None)
    if isinstance(t, msgspec.inspect.StructType):
        depth = _build_plan(t, cache).depth
        return None if depth == _PENDING else depth
    if isinstance(t, msgspec.inspect.ListType | msgspec.inspect.VarTupleType | msgspec.inspect.SetType
                  | msgspec.inspect.FrozenSetType):
        item = _depth(t.item_type, cache)
        return None if item is None else 1 + item
    if isinstance(t, msgspec.inspect.DictType):
        value = _depth(t.value_type, cache)
        return None if value is None else 1 + value
    if isinstance(t, msgspec.inspect.TupleType):
        items = [_depth(x, cache) for x in t.item_types]
        return None if None in items else 1 + max((d for d in items if d is not None), default=0)
    if isinstance(t, _SCALAR_TYPES):
        return 0
    return None  # Any, Raw, object, custom types...: unbounded


def _static_depth(t: msgspec.inspect.Type) -> int | None:
    """``_depth`` of any type, with plans of its own."""
    return _depth(t, {})


_SCALAR_TYPES = (
    msgspec.inspect.NoneType, msgspec.inspect.BoolType, msgspec.inspect.IntType, msgspec.inspect.FloatType,
    msgspec.inspect.StrType, msgspec.inspect.DateTimeType, msgspec.inspect.DateType, msgspec.inspect.TimeType,
    msgspec.inspect.LiteralType, msgspec.inspect.EnumType, msgspec.inspect.UUIDType, msgspec.inspect.DecimalType,
)  # fmt: skip


class _NormalizeState:
    __slots__ = ("assume_utc",)

    def __init__(self, assume_utc: bool) -> None:
        self.assume_utc = assume_utc


def _utc(value: datetime, path: str, wire: str, state: _NormalizeState) -> str:
    if value.tzinfo is None:
        if not state.assume_utc:
            raise Rejected(R_NAIVE_TIMESTAMP, f"{path}.{wire} has no UTC offset: {value.isoformat()}")
        value = value.replace(tzinfo=UTC)
    try:
        return to_utc_text(value)
    except TimestampError as exc:
        raise Rejected(R_INVALID_TIMESTAMP, f"{path}.{wire}: {exc}") from None


def _normalize(obj: Any, plan: _Plan, path: str, state: _NormalizeState) -> None:
    """Replace each timestamp attribute by its UTC wire text, in place, before encoding.

    After this the Struct is an output view: its datetime fields hold ``str``. msgspec does not
    validate on attribute assignment, and encodes the text as it is, which keeps the
    sub-second precision exactly as ``to_utc_text`` writes it (msgspec would write 6 digits).
    """
    for attr, wire, kind, sub in plan.steps:
        value = getattr(obj, attr)
        if value is None:
            continue
        if kind == _KIND_DT:
            if isinstance(value, datetime):
                setattr(obj, attr, _utc(value, path, wire, state))
        elif kind == _KIND_LIST_DT:
            setattr(obj, attr, [_utc(v, path, wire, state) if isinstance(v, datetime) else v for v in value])
        else:
            assert sub is not None
            for item, here in _sub_structs(value, kind, f"{path}.{wire}"):
                _normalize(item, sub, here, state)


def _sub_structs(value: Any, kind: int, here: str) -> Iterator[tuple[Any, str]]:
    """The Structs in a field of kind ``_KIND_STRUCT``/``_LIST_STRUCT``/``_DICT_STRUCT``, with their paths."""
    if kind == _KIND_STRUCT:
        yield value, here
    elif kind == _KIND_LIST_STRUCT:
        for i, item in enumerate(value):
            if item is not None:
                yield item, f"{here}[{i}]"
    else:  # _KIND_DICT_STRUCT
        for k, item in value.items():
            if item is not None:
                yield item, f"{here}.{k}"


def _compile_normalizer(root: _Plan) -> Callable[[Any], None]:
    """The plan as straight-line Python: one generated function per Struct type, no dispatch.

    Same effect as ``_normalize`` for Structs whose timestamps are all aware; anything else
    raises (``TimestampError``: naive, out of range) and the caller takes the general path, which
    reports the precise field. Attribute names are Struct field names: valid identifiers.

    ``exec`` stays because closures are slower: an interleaved A/B on the Structs of the catalog's
    Canvas examples (``benchmarks/normalizer_ab.py``, 21 rounds) measured 862 ns per Struct here,
    1054 ns (x1.24) for one closure per Struct over its steps and 1039 ns (x1.20) for
    ``operator.attrgetter`` closures: ~0.35 us per event, over 2 % of ``Core.process``.
    """
    plans: dict[int, _Plan] = {}

    def collect(plan: _Plan) -> None:
        if id(plan) not in plans:
            plans[id(plan)] = plan
            for *_, sub in plan.steps:
                if sub is not None:
                    collect(sub)

    collect(root)
    lines: list[str] = []
    for pid, plan in plans.items():
        lines.append(f"def n{pid}(o):")
        lines.append("    pass")
        for attr, _wire, kind, sub in plan.steps:
            lines += [f"    v = o.{attr}", "    if v is not None:"]
            if kind == _KIND_DT:
                lines.append(f"        o.{attr} = T(v)")
            elif kind == _KIND_LIST_DT:
                lines.append(f"        o.{attr} = [None if x is None else T(x) for x in v]")
            elif kind == _KIND_STRUCT:
                lines.append(f"        n{id(sub)}(v)")
            else:
                items = "v" if kind == _KIND_LIST_STRUCT else "v.values()"
                lines += [f"        for x in {items}:", "            if x is not None:"]
                lines.append(f"                n{id(sub)}(x)")
    namespace: dict[str, Any] = {"T": utc_json}
    exec(compile("\n".join(lines), "<bridge.core normalizer>", "exec"), namespace)  # our own generated code
    fn: Callable[[Any], None] = namespace[f"n{id(root)}"]
    return fn


# ---------------------------------------------------------------------------
# Missing fields: UNSET -> None, and the names of the fields an event lacked.
# ---------------------------------------------------------------------------


class _MissingFields:
    """For one Struct type: are some fields ``UNSET``, and which (replaced by ``None``)?

    ``check`` is the per-event cost, so it is generated code: one ``is UNSET`` test per
    ``Expected`` field, chained with ``or``. An interleaved A/B (benchmarks/missing_fields_ab.py)
    measured it against a closure over ``operator.attrgetter`` (one C call, then ``UNSET in``
    the tuple) and against ``None`` defaults with a key scan when a value is ``None``; the
    generated check was the cheapest (21 rounds: 2.24 us per body decoded and checked, against
    2.87 us, x1.21, with the closure; the decode alone: 1.63 us). ``fill`` runs only when
    ``check`` found something.
    """

    __slots__ = ("check", "plan")

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.check = self._compile(plan)

    @staticmethod
    def _compile(root: _Plan) -> Callable[[Any], bool]:
        plans: dict[int, _Plan] = {}

        def collect(plan: _Plan) -> None:
            if id(plan) not in plans:
                plans[id(plan)] = plan
                for *_, sub in plan.nested:
                    collect(sub)

        collect(root)
        lines: list[str] = []
        for pid, plan in plans.items():
            terms = [f"o.{attr} is U" for attr, _ in plan.expected]
            for attr, _wire, kind, sub in plan.nested:
                if kind == _KIND_STRUCT:
                    terms.append(f"(o.{attr} is not None and m{id(sub)}(o.{attr}))")
                else:
                    items = f"o.{attr}" if kind == _KIND_LIST_STRUCT else f"o.{attr}.values()"
                    terms.append(f"(o.{attr} is not None and any(m{id(sub)}(x) for x in {items} if x is not None))")
            lines += [f"def m{pid}(o):", f"    return {' or '.join(terms) or 'False'}"]
        namespace: dict[str, Any] = {"U": msgspec.UNSET}
        exec(compile("\n".join(lines), "<bridge.core missing fields>", "exec"), namespace)  # our own generated code
        fn: Callable[[Any], bool] = namespace[f"m{id(root)}"]
        return fn

    def fill(self, obj: Any, root: str) -> tuple[str, ...]:
        """Every ``UNSET`` field of ``obj`` (nested ones too) becomes ``None``; their paths."""
        out: list[str] = []
        _fill_missing(obj, self.plan, root, out)
        return tuple(out)


def _fill_missing(obj: Any, plan: _Plan, path: str, out: list[str]) -> None:
    for attr, wire in plan.expected:
        if getattr(obj, attr) is msgspec.UNSET:
            setattr(obj, attr, None)
            out.append(f"{path}.{wire}")
    for attr, wire, kind, sub in plan.nested:
        value = getattr(obj, attr)
        if value is not None and value is not msgspec.UNSET:
            for item, here in _sub_structs(value, kind, f"{path}.{wire}"):
                _fill_missing(item, sub, here, out)


def _missing_detail(root: str, path: str) -> str:
    """What strict mode says of a missing field, in msgspec's words (``- at`` a nested object)."""
    parent, _, name = path.rpartition(".")
    where = "" if parent == root else f" - at `{parent}`"
    return f"{root}: Object missing required field `{name}`{where}"
