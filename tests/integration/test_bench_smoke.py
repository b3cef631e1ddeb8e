"""`make bench` keeps working: a small run of benchmarks/run.py against the test broker.

The figures of so small a run mean nothing; what is checked is that every phase runs end to end
(the bridge, both baselines, the two diagnostic drains, the latency consumer, the backlog
drain), that nothing was lost on the way, and that the results file has the keys the README
and issue #6 promise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kafka_helpers import REPO


@pytest.mark.broker
def test_a_small_bench_run_writes_every_figure(bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--bootstrap", bootstrap,
         "--events", "3000", "--backlog", "3000", "--rate", "500", "--latency-seconds", "4",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(out.read_text())

    for key in ("bridge_eps", "passthrough_eps", "naive_eps", "p50_ms", "p99_ms", "peak_rss_mb"):
        assert isinstance(r[key], int | float) and r[key] > 0, (key, r[key])
    assert r["p50_ms"] <= r["p99_ms"]
    for key in ("cpu_count", "python", "kafka"):
        assert r["machine"][key], key

    # Nothing lost: every typed record of the paced phase reached the timing consumer, and every
    # drain ended with the raw topic committed to its end (run.py fails otherwise).
    lat = r["latency"]
    assert lat["typed_records_received"] == lat["typed_records_expected"] > 0
    assert lat["consumer"] == ("kcat" if shutil.which("kcat") else "aiokafka")
    assert "MET" in proc.stdout and "peak_rss_mb" in proc.stdout

    # Each drain published what it should: the diagnostics too (the core's typed records to
    # the typed topics, the raw values to one topic).
    for kind in ("bridge", "passthrough", "naive"):
        fig = r[kind]["runs"][0]
        assert fig["outputs"] == fig["expected_outputs"] > 0, kind
    diag = r["diagnostics"]
    for kind in ("core_passthrough", "core_fanout"):
        fig = diag[kind]["runs"][0]
        assert diag[f"{kind}_eps"] > 0 and fig["outputs"] == fig["expected_outputs"] > 0, kind
    assert diag["core_fanout"]["runs"][0]["expected_outputs"] == r["bridge"]["runs"][0]["expected_outputs"]
    assert diag["core_passthrough"]["runs"][0]["expected_outputs"] == 3000
