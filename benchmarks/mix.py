"""The data of the end-to-end benchmark: the catalog mix made distinct per event, and what the core
makes of it (checked offline, untimed)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from benchmarks.common import CALIPER_FILE, CANVAS_FILE, BenchError, read_lines
from benchmarks.naive import naive_process

#: Partitions of every raw topic (``run.py --raw-partitions``).
DEFAULT_RAW_PARTITIONS = 6
PLACEHOLDER = b"@@BENCH_SEQ@@"


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def build_templates() -> list[bytes]:
    """Each catalog sample once, with PLACEHOLDER where a per-event token goes.

    Canvas: ``metadata.request_id = "bench-<token>"``; Caliper: ``data[i].id =
    "urn:uuid:bench-<token>-<i>"``. Both enter the dedupe key, so no two events share one
    (the bridge would suppress repeats, which would flatter it).
    """
    ph = PLACEHOLDER.decode()
    out: list[bytes] = []
    for line in read_lines(CANVAS_FILE):
        obj = json.loads(line)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise BenchError(f"unexpected Canvas sample: {line[:80]!r}")
        obj["metadata"]["request_id"] = f"bench-{ph}"
        out.append(_dump(obj))
    for line in read_lines(CALIPER_FILE):
        obj = json.loads(line)
        data = obj.get("data") if isinstance(obj, dict) else None
        if not isinstance(data, list) or not all(isinstance(ev, dict) for ev in data):
            raise BenchError(f"unexpected Caliper sample: {line[:80]!r}")
        for i, ev in enumerate(data):
            ev["id"] = f"urn:uuid:bench-{ph}-{i}"
        out.append(_dump(obj))
    return out


def seq_token(seq: int) -> bytes:
    return b"%d" % seq


def time_token(send_ns: int, seq: int) -> bytes:
    return b"t%ds%d" % (send_ns, seq)


_TIME_TOKEN = re.compile(r"bench-t(\d+)s\d+")


def partition_of(seq: int, n_templates: int, partitions: int) -> int:
    """Spread events over the raw partitions so that each partition sees the whole mix."""
    return (seq + seq // n_templates) % partitions


@dataclass
class MixShape:
    """What the core makes of one pass over the templates (checked offline, untimed)."""

    templates: int
    canvas: int
    caliper: int
    typed_outputs: int
    dead_letters: int
    bridge_topic_names: set[tuple[str, str]]  # (format, event_name)
    naive_topic_names: set[str]
    outputs_per_template: list[int]
    avg_value_bytes: float


def mix_shape(templates: list[bytes]) -> MixShape:
    from bridge.config import load_config
    from bridge.core import Core, DeadLetter, Publish, Source

    cfg = load_config(env={})
    core = Core(cfg.topics, cfg.decode, cfg.limits)
    typed = dead = 0
    names: set[tuple[str, str]] = set()
    naive: set[str] = set()
    per: list[int] = []
    keys: set[str] = set()
    for i, tpl in enumerate(templates):
        for token in (seq_token(i), seq_token(i + 10**9)):
            outs = core.process(tpl.replace(PLACEHOLDER, token), Source("raw", 0, i), 0)
            n_typed = 0
            for o in outs:
                if isinstance(o, Publish):
                    n_typed += 1
                    names.add((o.format, o.event_name))
                    if o.dedupe_key in keys:
                        raise BenchError(f"template {i}: two tokens gave the same dedupe key")
                    keys.add(o.dedupe_key)
                elif isinstance(o, DeadLetter):
                    dead += 1
            typed += n_typed
        per.append(n_typed)
        for topic, *_ in naive_process(tpl.replace(PLACEHOLDER, b"0"), "", "caliper."):
            naive.add(topic)
    n_canvas = len(read_lines(CANVAS_FILE))
    return MixShape(
        templates=len(templates),
        canvas=n_canvas,
        caliper=len(templates) - n_canvas,
        typed_outputs=typed // 2,
        dead_letters=dead // 2,
        bridge_topic_names=names,
        naive_topic_names=naive,
        outputs_per_template=per,
        avg_value_bytes=sum(len(t) for t in templates) / len(templates),
    )


def expected_outputs(shape: MixShape, n: int) -> int:
    t = shape.templates
    full, rest = divmod(n, t)
    return full * sum(shape.outputs_per_template) + sum(shape.outputs_per_template[:rest])
