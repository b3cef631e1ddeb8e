"""Outputs unchanged: ``Core.process`` and ``canvas-bridge transform`` give, byte for byte, the
outputs pinned in ``tests/fixtures/pinned`` (see ``tests/unit/_pinned.py``, which writes them)."""

from __future__ import annotations

import gzip
import json
from functools import cache

import pytest

from bridge.core import Core
from tests.unit._helpers import NOW_MS, SOURCE
from tests.unit._pinned import (
    CATALOG_FILE,
    FUZZ_FILE,
    INPUTS,
    SETTINGS,
    TRANSFORM_FILE,
    digest,
    make_core,
    record,
    transform_stdout,
)


@cache
def core(settings: int, fast_paths: bool = True) -> Core:
    return make_core(SETTINGS[settings], fast_paths)


def test_the_pins_cover_both_formats_every_setting_and_the_whole_fuzz_corpus() -> None:
    with gzip.open(CATALOG_FILE, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == len(SETTINGS) * sum(len(lines) for lines in INPUTS.values())
    formats = {o["format"] for row in rows for o in row["out"] if o["type"] == "Publish"}
    assert formats == {"canvas", "caliper"}
    with gzip.open(FUZZ_FILE, "rt") as fh:
        assert sum(1 for _ in fh) == 11_000  # as many cases as test_fuzz_core.py runs


@pytest.mark.parametrize("settings", range(len(SETTINGS)))
def test_catalog_outputs_are_the_pinned_ones(settings: int) -> None:
    with gzip.open(CATALOG_FILE, "rt") as fh:
        rows = [row for row in map(json.loads, fh) if row["settings"] == settings]
    assert rows
    for row in rows:
        name, index = row["input"].split(":")
        value = INPUTS[name][int(index)]
        for fast_paths in (True, False):
            got = [record(o) for o in core(settings, fast_paths).process(value, SOURCE, NOW_MS)]
            assert got == row["out"], (row["input"], SETTINGS[settings], fast_paths)


def test_fuzz_corpus_outputs_are_the_pinned_ones() -> None:
    differ = []
    with gzip.open(FUZZ_FILE, "rt") as fh:
        for n, row in enumerate(map(json.loads, fh)):
            value = row["input"].encode("latin-1")
            if digest(core(row["settings"]).process(value, SOURCE, NOW_MS)) != row["sha256"]:
                differ.append((n, row["test"], value[:200]))
    assert not differ, f"{len(differ)} fuzz cases differ from the pinned outputs, e.g. {differ[:3]}"


def test_transform_prints_the_pinned_bytes() -> None:
    assert transform_stdout() == gzip.decompress(TRANSFORM_FILE.read_bytes())
