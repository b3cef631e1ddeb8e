"""Interleaved in-process A/B: how to tell an absent field from ``null`` after a typed decode.

    python benchmarks/missing_fields_ab.py [--rounds R] [--repeat N] [--clock cpu|wall]

An absent field must be published as ``null``, exactly as an explicit ``null``, and the
fields Canvas always sends (``Expected``) that an event lacked must be named. Three ways, each
timed as "decode the body into its Struct, then find (and fill) the absent fields", on the same
bodies, in alternating order round after round:

- ``generated`` (what ``bridge.core`` does): ``Expected`` fields default to ``msgspec.UNSET``;
  a generated function tests ``o.f is UNSET`` for each, chained with ``or`` (nested Structs
  through their own function); the rare hit walks the plan, writes ``None`` and names them;
- ``attrgetter``: the same ``UNSET`` defaults; one ``operator.attrgetter`` over the
  ``Expected`` fields (one C call) and ``UNSET in`` its tuple, nested Structs checked alike;
- ``none+keys``: twins of the Structs whose ``Expected`` fields default to ``None`` (absent
  becomes ``None`` by itself); when one of them is ``None`` (absent, or an explicit null),
  a second decode of the body's keys (``dict[str, msgspec.Raw]``) tells which were absent.

Bodies: every Canvas-format catalog example, every source-shaped payload (as sent and
compacted: top-level nulls dropped), and each source-shaped payload without its first
``Expected`` field (another Canvas version), so the set has the explicit nulls of real traffic,
the absent fields of compacted accounts and absent ``Expected`` fields. ``decode only`` (the
``None``-default twins decoded, nothing named) is the floor the three pay on top of. Printed:
µs per body (median of the rounds) and the ratio to ``generated`` per round (median, min-max),
in the thread's CPU time by default (as ``core_ab.py``). The script checks that the three
agree on every body before timing.
"""

from __future__ import annotations

import argparse
import gc
import json
import operator
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import CANVAS_FILE, SOURCE_FILE, read_lines, source_shaped  # noqa: E402
from bridge.core.plans import _build_plan, _fill_missing, _MissingFields  # noqa: E402
from bridge.core.plans import _Plan as _MissingPlan  # noqa: E402
from bridge.events import CANVAS_EVENTS  # noqa: E402

UNSET = msgspec.UNSET
Finder = Callable[[bytes], tuple[Any, tuple[str, ...]]]


def generated(typ: type) -> Finder:
    decode = msgspec.json.Decoder(typ).decode
    plan = _build_plan(msgspec.inspect.type_info(typ), {})  # type: ignore[arg-type]
    missing = _MissingFields(plan)
    check, fill = missing.check, missing.fill

    def find(raw: bytes) -> tuple[Any, tuple[str, ...]]:
        obj = decode(raw)
        return obj, (fill(obj, "body") if check(obj) else ())

    return find


def _attr_check(plan: _MissingPlan, marker: Any = UNSET) -> Callable[[Any], bool]:
    """Is ``marker`` the value of an Expected field (nested ones too)?"""
    names = [attr for attr, _ in plan.expected]
    get = operator.attrgetter(*names) if len(names) > 1 else None
    single = names[0] if len(names) == 1 else None
    subs = [(attr, kind, _attr_check(sub, marker)) for attr, _w, kind, sub in plan.nested]

    def check(o: Any) -> bool:
        if get is not None:
            if marker in get(o):
                return True
        elif single is not None and getattr(o, single) is marker:
            return True
        for attr, kind, sub_check in subs:
            v = getattr(o, attr)
            if v is None:
                continue
            items = [v] if kind == 1 else (v if kind == 2 else list(v.values()))
            if any(x is not None and sub_check(x) for x in items):
                return True
        return False

    return check


def attrgetter(typ: type) -> Finder:
    decode = msgspec.json.Decoder(typ).decode
    plan = _build_plan(msgspec.inspect.type_info(typ), {})  # type: ignore[arg-type]
    check = _attr_check(plan)

    def find(raw: bytes) -> tuple[Any, tuple[str, ...]]:
        obj = decode(raw)
        if not check(obj):
            return obj, ()
        out: list[str] = []
        _fill_missing(obj, plan, "body", out)
        return obj, tuple(out)

    return find


def _none_twin(cls: type, memo: dict[type, type]) -> type:
    """``cls`` with every UNSET default replaced by None (nested Structs too)."""
    if cls in memo:
        return memo[cls]
    fields = []
    for f in msgspec.structs.fields(cls):
        t = _retype(f.type, memo)
        default = None if f.default is UNSET else f.default
        spec: Any = msgspec.field(default=default, name=f.encode_name)
        if f.required:
            spec = msgspec.field(name=f.encode_name)
        if f.default_factory is not msgspec.NODEFAULT:
            spec = msgspec.field(default_factory=f.default_factory, name=f.encode_name)
        fields.append((f.name, t, spec))
    twin = msgspec.defstruct(cls.__name__ + "None", fields, kw_only=True, forbid_unknown_fields=True)
    memo[cls] = twin
    return twin


def _retype(t: Any, memo: dict[type, type]) -> Any:
    import types
    import typing

    origin = typing.get_origin(t)
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        return _none_twin(t, memo)
    if origin in (typing.Union, types.UnionType):
        args = [_retype(a, memo) for a in typing.get_args(t) if a is not msgspec.UnsetType]
        out = args[0]
        for a in args[1:]:
            out = typing.Union[out, a]  # noqa: UP007
        return out
    if origin is list:
        return list[_retype(typing.get_args(t)[0], memo)]  # type: ignore[misc]
    return t


def none_keys(typ: type) -> Finder:
    twin = _none_twin(typ, {})
    decode = msgspec.json.Decoder(twin).decode
    keys_of = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
    plan = _build_plan(msgspec.inspect.type_info(typ), {})  # type: ignore[arg-type]
    suspect = _attr_check(plan, None)  # an Expected field is None: absent, or an explicit null

    def nested_missing(obj: Any, sub_plan: _MissingPlan, raw: bytes, path: str, out: list[str]) -> None:
        keys = keys_of(raw)
        for attr, wire in sub_plan.expected:
            if getattr(obj, attr) is None and wire not in keys:
                out.append(f"{path}.{wire}")
        for attr, wire, kind, sub in sub_plan.nested:
            v = getattr(obj, attr)
            if v is None or wire not in keys:
                continue
            if kind == 1:
                nested_missing(v, sub, bytes(keys[wire]), f"{path}.{wire}", out)
            elif kind == 2:
                items = msgspec.json.decode(bytes(keys[wire]), type=list[msgspec.Raw])
                for i, (x, xraw) in enumerate(zip(v, items, strict=True)):
                    nested_missing(x, sub, bytes(xraw), f"{path}.{wire}[{i}]", out)

    def find(raw: bytes) -> tuple[Any, tuple[str, ...]]:
        obj = decode(raw)
        if not suspect(obj):
            return obj, ()
        out: list[str] = []
        nested_missing(obj, plan, raw, "body", out)
        return obj, tuple(out)

    return find


def decode_only(typ: type) -> Finder:
    """The floor, not an option: the None-default twins decoded, absent fields never named."""
    decode = msgspec.json.Decoder(_none_twin(typ, {})).decode

    def find(raw: bytes) -> tuple[Any, tuple[str, ...]]:
        return decode(raw), ()

    return find


OPTIONS: dict[str, Callable[[type], Finder]] = {"generated": generated, "attrgetter": attrgetter,
                                                 "none+keys": none_keys, "decode only": decode_only}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--repeat", type=int, default=20, help="passes over the bodies per timed run")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="thread CPU time (default) or wall")
    args = ap.parse_args(argv)
    clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns

    bodies: list[tuple[str, bytes]] = []
    for line in read_lines(CANVAS_FILE) + source_shaped():
        tree = json.loads(line)
        name = tree["metadata"]["event_name"]
        body = json.dumps(tree["body"]).encode()
        try:
            msgspec.json.decode(body, type=CANVAS_EVENTS[name])
        except msgspec.ValidationError:
            continue  # integer ids, Ruby times, misfiled: not this step's concern
        bodies.append((name, body))
    for line in read_lines(SOURCE_FILE):  # another Canvas version: one Expected field absent
        tree = json.loads(line)
        name = tree["metadata"]["event_name"]
        gone = [f.encode_name for f in msgspec.structs.fields(CANVAS_EVENTS[name]) if f.default is UNSET]
        if gone:
            bodies.append((name, json.dumps({k: v for k, v in tree["body"].items() if k != gone[0]}).encode()))
    finders = {opt: {name: make(CANVAS_EVENTS[name]) for name in {n for n, _ in bodies}}
               for opt, make in OPTIONS.items()}  # fmt: skip
    for name, body in bodies:  # the three agree: same fields named, same record
        results = {opt: finders[opt][name](body) for opt in OPTIONS if opt != "decode only"}
        names = {opt: r[1] for opt, r in results.items()}
        assert len(set(names.values())) == 1, (name, names)
        encoded = {msgspec.json.encode(r[0]) for r in results.values()}
        assert len(encoded) == 1, (name, encoded)
    absent = sum(bool(finders["generated"][n](b)[1]) for n, b in bodies)
    print(f"missing-fields A/B: {len(bodies)} bodies ({absent} lack an Expected field), "
          f"{args.repeat} passes per run, {args.rounds} rounds, {args.clock} time")  # fmt: skip

    def run(opt: str) -> float:
        table = finders[opt]
        work = [(table[n], b) for n, b in bodies] * args.repeat
        gc.collect()
        t0 = clock()
        for find, body in work:
            find(body)
        return (clock() - t0) / 1000.0 / len(work)

    for opt in OPTIONS:
        run(opt)  # warm-up
    times: dict[str, list[float]] = {opt: [] for opt in OPTIONS}
    ratios: dict[str, list[float]] = {opt: [] for opt in OPTIONS}
    order = list(OPTIONS)
    for r in range(args.rounds):
        timed = {opt: run(opt) for opt in (order if r % 2 == 0 else order[::-1])}
        for opt, us in timed.items():
            times[opt].append(us)
            ratios[opt].append(us / timed["generated"])
    print(f"{'option':<12}{'µs/body':>9}   ratio to generated: median (min-max)")
    for opt in OPTIONS:
        rs = ratios[opt]
        print(f"{opt:<12}{statistics.median(times[opt]):>9.3f}   {statistics.median(rs):.3f}"
              f" ({min(rs):.3f}-{max(rs):.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
