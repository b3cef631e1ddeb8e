"""Two replicas meet a new event type at once (topics.create = true): one creates its typed topic,
the other finds it missing a moment before it shows. That record must wait, not be dead-lettered as
``missing_topic`` (seen in the frozen-replica chaos test: 9-21 Caliper records per run, 1 run in 3).

The race is made deterministic: the bridge's view of the topic is read while it is missing, then
"another replica" creates it, then the bridge sends a record for it.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from bridge.config import load_config
from bridge.core import Publish
from bridge.delivery.batch import Batch
from bridge.delivery.publisher import Publisher, TopicNotVisible
from bridge.kafka import TopicCreator, make_producer
from bridge.refusals import R_MISSING_TOPIC
from bridge.topicinfo import TopicInfo
from tests.kafka_helpers import create_topics, read_all, run, unique

pytestmark = pytest.mark.broker


def _publish(topic: str, key: str) -> Publish:
    return Publish(topic, key.encode(), b'{"marker": "%s"}' % key.encode(), [("dedupe_key", key.encode())],
                   0, "a", key)


async def _scenario(bootstrap: str, *, refused: bool) -> tuple[list[str], list[str]]:
    """Returns (what each attempt did, the values read back from the typed topic)."""
    topic = unique("race.typed")
    config = load_config(env={"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_TOPICS_CREATE": "true",
                              "BRIDGE_TOPICS_DEAD_LETTER": unique("race.dlq")})
    creator = TopicCreator(config)
    info = TopicInfo(config, creator.admin)
    publisher = Publisher(config, creator, info)
    producer: AIOKafkaProducer = make_producer(config)
    await producer.start()
    steps: list[str] = []
    try:
        await info.learn([topic])  # this replica looks: missing
        assert not info.limits[topic].exists
        if refused:  # the broker refused to create it (as for a create-topic policy)
            creator.refused.add(topic)
        await create_topics(bootstrap, [topic])  # another replica creates it
        out = _publish(topic, unique("k"))
        for _ in range(3):
            sends: list = [out]
            try:
                futures, groups = await publisher.attempt(Batch(), sends, producer)
            except TopicNotVisible:
                steps.append("waited")
                continue
            await publisher.acknowledged(futures, groups)
            steps.append(sends[0].topic if isinstance(sends[0], Publish) else f"dead letter ({sends[0].reason})")
            break
    finally:
        await producer.stop()
        await creator.close()
    if refused:
        return steps, []
    records = await read_all(bootstrap, topic, min_count=1, timeout=30)
    return steps, [(r.value or b"").decode() for r in records]


def test_a_topic_another_replica_just_created_is_waited_for_not_dead_lettered(bootstrap: str) -> None:
    steps, values = run(_scenario(bootstrap, refused=False))
    assert steps[0] == "waited", steps
    assert steps[-1].startswith("race.typed"), f"the record was not written to its typed topic: {steps}"
    assert len(values) == 1 and "marker" in values[0]


def test_a_topic_whose_creation_was_refused_is_dead_lettered_at_once(bootstrap: str) -> None:
    steps, _ = run(_scenario(bootstrap, refused=True))
    assert steps == [f"dead letter ({R_MISSING_TOPIC})"], steps
