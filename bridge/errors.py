"""One classification of Kafka failures and one backoff, for every loop that talks to the broker.

Each failure is either *fatal* (retrying cannot help: the process exits non-zero with the
message) or *retriable* (the loop waits with ``Backoff`` and tries again). Everything else is a
bug and propagates.
"""

from __future__ import annotations

from aiokafka import errors as kerr

from bridge.config import Config


class Fatal(Exception):
    """Retrying cannot help (credentials, authorization, fencing policy, a topic that must exist):
    the process stops with this message and a non-zero exit."""


#: Failures after which retrying cannot help. (A fenced producer is not one of them: the
#: replica gives up the partition and rejoins; see bridge/transactions.py.)
#: ``Fatal`` itself is none of these, nor retriable: it passes through every retry loop.
FATAL: tuple[type[BaseException], ...] = (
    kerr.SaslAuthenticationFailed,
    kerr.AuthenticationFailedError,
    kerr.TransactionalIdAuthorizationFailed,
    kerr.TopicAuthorizationFailedError,
    kerr.GroupAuthorizationFailedError,
    kerr.ClusterAuthorizationFailedError,
    kerr.UnsupportedVersionError,
    kerr.InvalidTransactionTimeout,
)

#: Failures a later attempt may not meet (the broker restarting, a leader moving, a timeout).
RETRIABLE: tuple[type[BaseException], ...] = (kerr.KafkaError, TimeoutError, OSError)


def fatal(exc: BaseException, context: str = "") -> Fatal:
    """``exc`` (one of ``FATAL``) as the ``Fatal`` the service reports."""
    return Fatal(f"{context}{type(exc).__name__}: {exc}")


class Backoff:
    """Exponential backoff: the first wait is ``initial``, each next one doubles up to ``maximum``."""

    __slots__ = ("delay", "initial", "maximum")

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = initial

    @classmethod
    def of(cls, config: Config) -> Backoff:
        """``delivery.retry_backoff_initial_s`` doubling to ``delivery.retry_backoff_max_s``."""
        return cls(config.delivery.retry_backoff_initial_s, config.delivery.retry_backoff_max_s)

    def next(self) -> float:
        """The wait before the next attempt (the one after waits twice as long)."""
        delay = self.delay
        self.delay = min(delay * 2, self.maximum)
        return delay
