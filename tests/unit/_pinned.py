"""Pinned outputs of ``Core.process``: the catalog, the source payloads and the fuzz corpus.

``tests/unit/test_pinned_outputs.py`` compares the core's outputs with the files written here
from the core as it was when they were pinned (refactorings must not change a byte). Regenerate
only for an intended change, and say why in the commit:

    .venv/bin/python -m tests.unit._pinned

- ``catalog.jsonl.gz``: every record, all fields, for every line of the catalog examples (both
  formats) and of the source-shaped payloads, under each of ``SETTINGS``;
- ``transform-catalog.jsonl.gz``: the standard output of ``canvas-bridge transform`` on those
  lines, with the default configuration;
- ``fuzz-corpus.jsonl.gz``: the inputs the fuzz tests of ``test_fuzz_core.py`` generate
  (``derandomize=True``; bytes as latin-1 text), with the core settings they ran under, and the
  SHA-256 of the outputs (of ``record`` of each, as sorted JSON).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from bridge.config import load_config
from bridge.core import Core, Output
from tests.unit._helpers import CALIPER_LINES, CANVAS_LINES, CATALOG, NOW_MS, SOURCE, SOURCE_LINES

PINNED = Path(__file__).resolve().parents[1] / "fixtures" / "pinned"
CATALOG_FILE = PINNED / "catalog.jsonl.gz"
FUZZ_FILE = PINNED / "fuzz-corpus.jsonl.gz"
TRANSFORM_FILE = PINNED / "transform-catalog.jsonl.gz"
#: ``canvas-bridge transform``'s input for TRANSFORM_FILE: both formats and the source-shaped payloads.
TRANSFORM_INPUT = [CATALOG / "canvas-examples.jsonl", CATALOG / "caliper-examples.jsonl",
                   CATALOG.parent / "source" / "canvas-source-payloads.jsonl"]
SECRET = "test-secret-0123456789abcdef"

#: The fuzz tests' four settings, then the other record keys and the FERPA preset.
SETTINGS: list[dict[str, Any]] = [
    {},
    {"decode": {"mode": "strict"}},
    {"decode": {"naive_timestamps": "assume_utc"}, "topics": {"unknown_events": "catch_all"}},
    {"limits": {"max_depth": 8, "max_string_length": 200, "max_message_bytes": 4000}},
    {"topics": {"key": "source"}},
    {"topics": {"key": "dedupe_key"}},
    {"pii": "ferpa"},
]
INPUTS: dict[str, list[bytes]] = {"canvas": CANVAS_LINES, "caliper": CALIPER_LINES, "source": SOURCE_LINES}


def make_core(settings: dict[str, Any], fast_paths: bool = True) -> Core:
    from bridge.pii import PiiPolicy, PiiSettings

    cfg = load_config(env={})
    pii = None
    if settings.get("pii") == "ferpa":
        import tomllib

        data = tomllib.loads((Path(__file__).resolve().parents[2] / "config" / "ferpa.toml").read_text())
        pii = PiiPolicy(msgspec.structs.replace(msgspec.convert(data["pii"], PiiSettings), secret=SECRET))
    return Core(
        msgspec.structs.replace(cfg.topics, **settings.get("topics", {})),
        msgspec.structs.replace(cfg.decode, **settings.get("decode", {})),
        msgspec.structs.replace(cfg.limits, **settings.get("limits", {})),
        pii,
        fast_paths=fast_paths,
    )


def record(out: Output) -> dict[str, Any]:
    """Every field of an output record, bytes as text (they are UTF-8 JSON) or base64."""

    def text(b: bytes | None) -> Any:
        if b is None:
            return None
        try:
            return b.decode()
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(b).decode()}

    fields = msgspec.structs.asdict(out)
    fields = {k: text(v) if isinstance(v, bytes) else v for k, v in fields.items()}
    fields["headers"] = [[name, text(value)] for name, value in out.headers]
    return json.loads(json.dumps({"type": type(out).__name__, **fields}))  # tuples as lists


def digest(outs: list[Output]) -> str:
    return hashlib.sha256(json.dumps([record(o) for o in outs], sort_keys=True).encode()).hexdigest()


def catalog_rows(cores: list[Core]) -> Iterator[dict[str, Any]]:
    for s, core in enumerate(cores):
        for name, lines in INPUTS.items():
            for i, line in enumerate(lines):
                outs = core.process(line, SOURCE, NOW_MS)
                yield {"settings": s, "input": f"{name}:{i}", "out": [record(o) for o in outs]}


def fuzz_corpus() -> list[tuple[str, int, bytes]]:
    """(test name, core settings index, input) of every case the fuzz tests generate."""
    import hypothesis.strategies as st
    from hypothesis import given

    from tests.unit import test_fuzz_core as fz

    cases: list[tuple[str, int, bytes]] = []
    for name in sorted(dir(fz)):
        test = getattr(fz, name)
        if not name.startswith("test_fuzz_") or not hasattr(test, "hypothesis"):
            continue
        if name == "test_fuzz_valid_offsets_publish_the_same_instants":
            def inner(data: st.DataObject) -> None:
                cases.append(("test_fuzz_valid_offsets_publish_the_same_instants", 0, _valid_offsets_value(data)))
            fn: Callable[..., None] = fz.fuzz_settings(500)(given(st.data())(inner))
        else:
            def collect(value: bytes, core_index: int, name: str = name) -> None:
                cases.append((name, core_index, value))
            test.hypothesis.inner_test = collect
            fn = test
        fn()
    return cases


def _valid_offsets_value(data: Any) -> bytes:
    """The input ``test_fuzz_valid_offsets_publish_the_same_instants`` builds (same draws)."""
    import hypothesis.strategies as st

    from tests.unit import test_fuzz_core as fz
    from tests.unit._helpers import TIMESTAMP_RE, rewrite_timestamp

    index = data.draw(st.integers(min_value=0, max_value=len(fz.TREES) - 1))
    tree = fz.copy(fz.TREES[index])
    for path in fz.all_paths(tree):
        leaf = fz.get(tree, path)
        if isinstance(leaf, str) and (m := TIMESTAMP_RE.match(leaf)) and m["tz"]:
            minutes = data.draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
            style = data.draw(st.sampled_from(["iso", "iso_nocolon", "ruby"]))
            tree = fz.put(tree, path, rewrite_timestamp(leaf, minutes, style))
    return json.dumps(tree).encode()


def transform_stdout() -> bytes:
    import subprocess
    import sys

    data = b"".join(p.read_bytes() for p in TRANSFORM_INPUT)
    result = subprocess.run([sys.executable, "-m", "bridge", "transform"], input=data, capture_output=True,
                            cwd=PINNED.parents[2], check=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    return result.stdout


def write() -> None:
    TRANSFORM_FILE.write_bytes(gzip.compress(transform_stdout(), 9, mtime=0))
    cores = [make_core(s) for s in SETTINGS]
    with gzip.open(CATALOG_FILE, "wt", compresslevel=9) as fh:
        for row in catalog_rows(cores):
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    fuzz_cores = [make_core(s) for s in SETTINGS[:4]]
    with gzip.open(FUZZ_FILE, "wt", compresslevel=9) as fh:
        for name, core_index, value in fuzz_corpus():
            outs = fuzz_cores[core_index].process(value, SOURCE, NOW_MS)
            row = {"test": name, "settings": core_index, "input": value.decode("latin-1"),
                   "sha256": digest(outs)}
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    write()
