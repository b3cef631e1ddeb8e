"""Interleaved in-process A/B: the generated timestamp normalizer against closures over the same plan.

    python benchmarks/normalizer_ab.py [ROUNDS]

``bridge.core.plans._compile_normalizer`` writes each Struct's plan as straight-line Python
(``exec``). Timed against it, on the metadata and body Structs of every Canvas catalog example
(decoded untimed before each run; the three are checked to write the same bytes first):
``closure``, one closure per Struct looping over its plan's steps, and ``specialized closure``,
``operator.attrgetter`` over the timestamp fields of a Struct that has only those. Printed: ns
per Struct normalized (median of the rounds) and the median of the per-round ratios to ``exec``,
in the thread's CPU time, in alternating order round after round.

Then the same for the lenient twins' fix-ups (``bridge.core.twins._Twins.fixer``: integer ids to
strings, timestamp texts parsed), on every metadata and body part of the catalog a twin decodes:
the generated fix-up against one composed closure per type.
"""

import gc
import operator
import statistics
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bridge.core import plans as P
from bridge.events import CANVAS_EVENTS, CanvasMetadata
from bridge.timestamps import utc_json

CATALOG = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "catalog"
CANVAS_LINES = (CATALOG / "canvas-examples.jsonl").read_bytes().splitlines()

def closure_normalizer(root):
    made = {}
    def build(plan):
        if id(plan) in made:
            return made[id(plan)]
        steps = []
        def norm(o):
            for attr, kind, sub in steps:
                v = getattr(o, attr)
                if v is None:
                    continue
                if kind == 0:
                    setattr(o, attr, T(v))
                elif kind == 1:
                    sub(v)
                elif kind == 3:
                    setattr(o, attr, [None if x is None else T(x) for x in v])
                else:
                    for x in (v if kind == 2 else v.values()):
                        if x is not None:
                            sub(x)
        made[id(plan)] = norm
        for attr, _w, kind, sub in plan.steps:
            steps.append((attr, kind, build(sub) if sub is not None else None))
        return norm
    T = utc_json
    return build(root)

def closure_normalizer2(root):
    """Specialized: a timestamp-only Struct gets attrgetter + setattr over its fields."""
    made = {}
    T = utc_json
    def build(plan):
        if id(plan) in made:
            return made[id(plan)]
        simple = all(k == 0 for _, _, k, _ in plan.steps)
        if simple:
            attrs = tuple(a for a, *_ in plan.steps)
            if not attrs:

                def fn(o):
                    return None

            elif len(attrs) == 1:
                (a,) = attrs
                def fn(o, a=a):
                    v = getattr(o, a)
                    if v is not None:
                        setattr(o, a, T(v))
            else:
                get = operator.attrgetter(*attrs)
                def fn(o, attrs=attrs, get=get):
                    for a, v in zip(attrs, get(o), strict=True):
                        if v is not None:
                            setattr(o, a, T(v))
            made[id(plan)] = fn
            return fn
        return closure_normalizer(plan)
    return build(root)

pairs = []
for line in CANVAS_LINES:
    tree = msgspec.json.decode(line)
    t = CANVAS_EVENTS.get(tree["metadata"]["event_name"])
    if t is None:
        continue
    for typ, part in ((CanvasMetadata, tree["metadata"]), (t, tree["body"])):
        raw = msgspec.json.encode(part)
        try:
            obj = msgspec.json.decode(raw, type=typ)
        except msgspec.ValidationError:
            continue
        plan = P._build_plan(msgspec.inspect.type_info(typ), {})
        fns = (P._compile_normalizer(plan), closure_normalizer(plan), closure_normalizer2(plan))
        pairs.append((msgspec.json.Decoder(typ).decode, raw, *fns))
# check same effect
for dec, raw, a, b, c in pairs:
    x, y, z = dec(raw), dec(raw), dec(raw)
    a(x)
    b(y)
    c(z)
    assert msgspec.json.encode(x) == msgspec.json.encode(y) == msgspec.json.encode(z)
REP = 20
def run(which):
    objs = [(dec(raw), fns[which]) for dec, raw, *fns in pairs for _ in range(REP)]
    gc.collect()
    t0 = time.thread_time_ns()
    for o, f in objs:
        f(o)
    return (time.thread_time_ns() - t0) / len(objs)
res = {0: [], 1: [], 2: []}
for r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 31):
    order = [0, 1, 2] if r % 2 == 0 else [2, 1, 0]
    for w in order:
        res[w].append(run(w))
ratios1 = [b / a for a, b in zip(res[0], res[1], strict=True)]
ratios2 = [c / a for a, c in zip(res[0], res[2], strict=True)]
print(f"ns per Struct normalized ({len(pairs)} Structs x {REP}): exec {statistics.median(res[0]):.0f}, "
      f"closure {statistics.median(res[1]):.0f} (ratio {statistics.median(ratios1):.2f}), "
      f"specialized closure {statistics.median(res[2]):.0f} (ratio {statistics.median(ratios2):.2f})")


# ---------------------------------------------------------------------------------------------
# The twins' fix-ups: generated (exec) against closures over the same types
# ---------------------------------------------------------------------------------------------


def closure_fixer(maker, twin):
    """``_Twins.fixer`` as closures: one per type, composed (same effect, no generated code)."""
    import types
    import typing

    from bridge.core.twins import _NO_VALUE_TYPES, _TIME_TEXT
    from bridge.timestamps import parse_lenient

    twins = {x for x in maker._types.values() if x is not None}
    made = {}
    unset = msgspec.UNSET

    def conv(t):
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            base, *metas = typing.get_args(t)
            return parse_lenient if _TIME_TEXT in metas else conv(base)
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(t) if a not in _NO_VALUE_TYPES]
            if int in members and str in members:
                return lambda v: str(v) if v.__class__ is int else v
            if len(members) == 1:
                inner = conv(members[0])
                return None if inner is None else (lambda v: v if v is None or v is unset else inner(v))
            return None
        if origin is list:
            inner = conv(typing.get_args(t)[0])
            return None if inner is None else (lambda v: [inner(y) for y in v])
        if origin is dict:
            inner = conv(typing.get_args(t)[1])
            return None if inner is None else (lambda v: {k: inner(y) for k, y in v.items()})
        if isinstance(t, type) and t in twins:
            return struct(t)
        return None

    def struct(cls):
        if cls in made:
            return made[cls]
        steps = []

        def fix(o):
            for name, f in steps:
                setattr(o, name, f(getattr(o, name)))
            return o

        made[cls] = fix
        for f in msgspec.structs.fields(cls):
            c = conv(f.type)
            if c is not None:
                steps.append((f.name, c))
        return fix

    return struct(twin)


def fixup_ab(rounds: int) -> None:
    from bridge.core.twins import _Twins

    makers = (_Twins(times=False), _Twins(times=True))
    cases = []  # (twin decode, raw, generated fix-up, closure fix-up) of each part a twin takes
    for line in CANVAS_LINES:
        tree = msgspec.json.decode(line)
        t = CANVAS_EVENTS.get(tree["metadata"]["event_name"])
        for typ, part in ((CanvasMetadata, tree["metadata"]), (t, tree["body"])):
            if typ is None:
                continue
            raw = msgspec.json.encode(part)
            for maker in makers:
                twin = maker.twin(typ)
                if twin is None:
                    continue
                decode = msgspec.json.Decoder(twin).decode
                try:
                    maker.fixer(twin)(decode(raw))
                except (msgspec.ValidationError, ValueError):  # ValueError: a malformed timestamp
                    continue
                cases.append((decode, raw, maker.fixer(twin), closure_fixer(maker, twin)))
                break
    for decode, raw, gen, clo in cases:
        x, y = decode(raw), decode(raw)
        gen(x)
        clo(y)
        assert x == y
    timed: dict[int, list[float]] = {0: [], 1: []}
    for r in range(rounds):
        for w in (0, 1) if r % 2 == 0 else (1, 0):
            objs = [(decode(raw), fns[w]) for decode, raw, *fns in cases for _ in range(REP)]
            gc.collect()
            t0 = time.thread_time_ns()
            for o, f in objs:
                f(o)
            timed[w].append((time.thread_time_ns() - t0) / len(objs))
    ratio = statistics.median(b / a for a, b in zip(timed[0], timed[1], strict=True))
    print(f"ns per part fixed up ({len(cases)} twin-decoded parts x {REP}): exec {statistics.median(timed[0]):.0f},"
          f" closure {statistics.median(timed[1]):.0f} (ratio {ratio:.2f})")


fixup_ab(int(sys.argv[1]) if len(sys.argv) > 1 else 31)
