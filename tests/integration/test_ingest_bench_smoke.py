"""``benchmarks/ingest_bench.py`` keeps working: a short run against the test broker.

The figures of so short a run mean nothing; what is checked is that both servers answered every
request with 200 through wrk and hey, and that the results file has the figures the README quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.kafka_helpers import REPO


@pytest.mark.broker
def test_a_short_ingest_bench_run_writes_every_figure(bootstrap: str, tmp_path: Path) -> None:
    require_tool("wrk")
    require_tool("hey")
    out = tmp_path / "ingest-bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ingest_bench.py"), "--bootstrap", bootstrap,
         "--seconds", "2", "--rounds", "1", "--rate", "200", "--connections", "8", "--tokens", "20",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(out.read_text())
    for key in ("ingest_eps", "baseline_rps", "ingest_p50_ms", "ingest_p99_ms", "baseline_p99_ms"):
        assert isinstance(r[key], int | float) and r[key] > 0, (key, r[key])
    assert r["ingest_p50_ms"] <= r["ingest_p99_ms"]
    assert r["ingest_non_200"] == 0
    round_ = r["rounds"][0]
    assert round_["ingest"]["paced"]["status"] and set(round_["ingest"]["paced"]["status"]) == {"200"}
    assert "MET" in proc.stdout
