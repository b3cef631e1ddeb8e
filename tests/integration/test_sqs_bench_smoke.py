"""`make bench-sqs` keeps working: a small run of benchmarks/sqs_bench.py against the session's
broker and ElasticMQ.

The figures of so small a run mean nothing; what is checked is that both drains run end to end
for each poller count, interleaved, that the script's own checks held (it exits non-zero when a
queue is not empty at the end or the raw topic lacks a record), and that the JSON has its keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kafka_helpers import REPO
from tests.sqs_helpers import ElasticMQ


@pytest.mark.broker
@pytest.mark.timeout(300)
def test_a_small_sqs_bench_run_writes_every_figure(bootstrap: str, elasticmq: ElasticMQ, tmp_path: Path) -> None:
    out = tmp_path / "sqs-bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sqs_bench.py"), "--bootstrap", bootstrap,
         "--endpoint", elasticmq.endpoint, "--messages", "200", "--rounds", "1", "--pollers", "1,2",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280,
        env={k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "AWS_"))},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["messages"] == 200
    assert sorted((d["mode"], d["pollers"]) for d in r["runs"]) == [
        ("baseline", 1), ("baseline", 2), ("kafka", 1), ("kafka", 2)]
    for pollers in ("1", "2"):
        row = r["summary"][pollers]
        for key in ("baseline_msgs_per_s", "kafka_msgs_per_s", "kafka_vs_baseline", "kafka_cpu_ms_per_1000"):
            assert isinstance(row[key], int | float) and row[key] > 0, (pollers, key, row[key])
    assert "baseline msgs/s" in proc.stdout and "kafka msgs/s" in proc.stdout
