"""The one failure classification and the one backoff (bridge/errors.py)."""

from __future__ import annotations

from aiokafka import errors as kerr

from bridge.config import load_config
from bridge.errors import FATAL, RETRIABLE, Backoff, Fatal, fatal
from bridge.kafka import TlsRefused, TopicCreationError
from bridge.topicinfo import StartupError
from bridge.transactions import OpenFailed


def test_backoff_starts_at_the_setting_and_doubles_up_to_the_maximum() -> None:
    config = load_config(env={"BRIDGE_DELIVERY_RETRY_BACKOFF_INITIAL_S": "0.5",
                              "BRIDGE_DELIVERY_RETRY_BACKOFF_MAX_S": "3"})
    backoff = Backoff.of(config)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_every_stop_condition_is_one_fatal_type_that_no_retry_loop_catches() -> None:
    for cls in (TlsRefused, TopicCreationError, StartupError, OpenFailed):
        assert issubclass(cls, Fatal)
        assert not issubclass(cls, RETRIABLE), f"{cls.__name__} would be retried"


def test_kafka_errors_that_retrying_cannot_fix_are_fatal_the_rest_retriable() -> None:
    for exc in (kerr.SaslAuthenticationFailed(), kerr.TopicAuthorizationFailedError(),
                kerr.TransactionalIdAuthorizationFailed(), kerr.GroupAuthorizationFailedError()):
        assert isinstance(exc, FATAL)
        message = str(fatal(exc, "context: "))
        assert message.startswith(f"context: {type(exc).__name__}")
    for exc in (kerr.RequestTimedOutError(), kerr.NotLeaderForPartitionError(), kerr.KafkaConnectionError(),
                TimeoutError(), ConnectionResetError()):
        assert not isinstance(exc, FATAL) and isinstance(exc, RETRIABLE)
