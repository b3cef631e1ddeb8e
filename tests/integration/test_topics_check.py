"""``canvas-bridge topics --check`` against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bridge.config import load_config
from bridge.topics import planned_topics
from tests.kafka_helpers import REPO, create_topics, run, unique, wait_until

pytestmark = pytest.mark.broker


def test_check_names_the_missing_topics_then_passes_once_they_exist(bootstrap: str) -> None:
    prefix = unique("chk") + "."
    env = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_RAW_TOPIC": prefix + "raw",
           "BRIDGE_TOPICS_PREFIX": prefix, "BRIDGE_TOPICS_CALIPER_PREFIX": prefix + "caliper.",
           "BRIDGE_TOPICS_DEAD_LETTER": prefix + "dlq"}
    names = [tp.name for tp in planned_topics(load_config(env=env))]
    present, absent = names[: len(names) // 2], names[len(names) // 2:]
    run(create_topics(bootstrap, present))

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bridge", "topics", "--check"], cwd=REPO, text=True,
                              capture_output=True, timeout=120, env={**os.environ, **env})

    def named_missing() -> list[str] | None:
        done = check()
        if done.returncode == 0:
            return []
        assert done.returncode == 1, done.stderr
        return sorted(done.stderr.rsplit(": ", 1)[1].strip().split(", "))

    # New topics reach the broker's metadata cache a moment after CreateTopics returns.
    wait_until(lambda: named_missing() == sorted(absent), 30, "--check to name exactly the absent topics")

    run(create_topics(bootstrap, absent))
    wait_until(lambda: named_missing() == [], 30, "--check to pass once every topic exists")
    done = check()
    assert done.returncode == 0 and f"all {len(names)} topics exist" in done.stderr, done.stderr
