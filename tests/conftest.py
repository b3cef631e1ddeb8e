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
from collections.abc import Iterator

import pytest

from tests.kafka_helpers import Broker, create_topics, run, unique
from tests.sqs_helpers import ElasticMQ


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield Broker(external, None)
        return
    try:
        server = Broker.start_in(tmp_path_factory.mktemp("kafka-local"))
    except RuntimeError as exc:
        pytest.exit(f"could not start the local Kafka broker:\n{exc}", returncode=3)
    try:
        yield server
    finally:
        server.remove()


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
