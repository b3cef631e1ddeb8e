"""Fixtures of the chaos suite: every bridge process a scenario starts is gone when it ends."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos._util import Topics
from tests.kafka_helpers import BridgeProcess


@pytest.fixture
def spawn(bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    """``spawn(topics, name, **settings)``: start a bridge process (log in tmp_path/<name>.log).

    At teardown, any process still running is stopped (SIGTERM, then SIGKILL): no process is left
    behind, whatever the outcome of the test.
    """
    started: list[BridgeProcess] = []

    def start(topics: Topics, name: str, **settings: str) -> BridgeProcess:
        bridge = topics.bridge(bootstrap, tmp_path / f"{name}.log", **settings)
        started.append(bridge)
        return bridge.start()

    yield start
    for bridge in started:
        if bridge.proc is not None and bridge.proc.poll() is None:
            try:
                bridge.terminate(10)
            except subprocess.TimeoutExpired:
                bridge.kill()
