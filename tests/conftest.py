"""Session fixtures: the real Apache Kafka broker the integration tests talk to, and the real
SQS-compatible server (ElasticMQ) the SQS ingest tests talk to.

The broker is started once per session with scripts/kafka-local, in a private state folder,
and stopped at the end; or, when KAFKA_BOOTSTRAP_SERVERS is set, that broker is used as is
(then the tests that stop and start the broker are skipped). ElasticMQ likewise, with
scripts/sqs-local (or SQS_ENDPOINT_URL), started only when a test asks for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kafka_helpers import REPO, create_topics, run, unique
from tests.sqs_helpers import ElasticMQ

KAFKA_LOCAL = REPO / "scripts" / "kafka-local"


@dataclass
class Broker:
    bootstrap: str
    state_dir: Path | None  # None: an external broker we must not stop

    @property
    def controllable(self) -> bool:
        return self.state_dir is not None

    def _env(self) -> dict[str, str]:
        assert self.state_dir is not None
        return {**os.environ, "KAFKA_LOCAL_DIR": str(self.state_dir)}

    def stop(self) -> None:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=self._env(), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        out = subprocess.run([str(KAFKA_LOCAL), "start"], env=self._env(), check=True, capture_output=True,
                             text=True, timeout=180)
        assert out.stdout.strip().splitlines()[-1] == self.bootstrap, "broker came back on another address"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield Broker(external, None)
        return
    state = tmp_path_factory.mktemp("kafka-local")
    env = {**os.environ, "KAFKA_LOCAL_DIR": str(state)}
    out = subprocess.run([str(KAFKA_LOCAL), "start"], env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.exit(f"could not start the local Kafka broker:\n{out.stderr}", returncode=3)
    bootstrap = out.stdout.strip().splitlines()[-1]
    try:
        yield Broker(bootstrap, state)
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def bootstrap(broker: Broker) -> str:
    return broker.bootstrap


@pytest.fixture
def raw_topic(bootstrap: str) -> str:
    """A fresh raw topic (3 partitions) per test."""
    name = unique("raw")
    run(create_topics(bootstrap, [name], partitions=3))
    return name


@pytest.fixture(scope="session")
def elasticmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ElasticMQ]:
    """ElasticMQ for the session (scripts/sqs-local), stopped at the end: no process left behind."""
    external = os.environ.get("SQS_ENDPOINT_URL")
    if external:
        yield ElasticMQ(external, None)
        return
    server = ElasticMQ.start_in(tmp_path_factory.mktemp("sqs-local"))
    try:
        yield server
    finally:
        server.stop()
        assert server.state_dir is not None
        shutil.rmtree(server.state_dir, ignore_errors=True)


def require_tool(name: str) -> str:
    """A command-line tool the test needs: skipped locally when missing, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run installs it (scripts/install-test-tools)")
        pytest.skip(f"{name} is not installed (scripts/install-test-tools installs it)")
    return path
