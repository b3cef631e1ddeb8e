"""What every long-running command (``run``, ``ingest``, ``ingest-sqs``) does on SIGTERM and SIGINT.

The first signal starts a drain: the command stops taking new work and finishes what it holds,
within ``delivery.drain_timeout_s``. A second signal exits at once (130). A drain still running
one second after its deadline exits at once (3): the bound is a timer of the event loop, so it
fires whatever the tasks are doing, a shielded close included.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("bridge")

# Exit codes, the same for every command.
EXIT_OK = 0
EXIT_FATAL = 1
EXIT_DRAIN_TIMEOUT = 3
EXIT_FORCED = 130

#: How long past its deadline a drain may run before the process exits anyway.
HARD_BOUND_MARGIN_S = 1.0


class Drain:
    """The drain of one command: started by the first signal, bounded by ``timeout_s``."""

    def __init__(self, timeout_s: float, on_start: Callable[[], None], what: str = "draining") -> None:
        self.timeout_s = timeout_s
        self.deadline = math.inf  #: time.monotonic() by which the drain should be over
        self.requested = asyncio.Event()
        self._on_start = on_start
        self._what = what
        self._timer: asyncio.TimerHandle | None = None

    @property
    def started(self) -> bool:
        return self.requested.is_set()

    def expired(self) -> bool:
        return self.started and time.monotonic() > self.deadline

    def signal(self) -> None:
        """A signal: the first starts the drain, a second forces exit."""
        if self.started:
            log.warning("second signal: forcing exit")
            os._exit(EXIT_FORCED)
        log.info("signal received: %s (at most %.0fs); a second signal forces exit", self._what, self.timeout_s)
        self.deadline = time.monotonic() + self.timeout_s
        self._on_start()
        self.requested.set()
        self._timer = asyncio.get_running_loop().call_later(self.timeout_s + HARD_BOUND_MARGIN_S, self._overran)

    def _overran(self) -> None:
        log.error("shutdown did not finish within delivery.drain_timeout_s=%.0fs; exiting", self.timeout_s)
        logging.shutdown()
        os._exit(EXIT_DRAIN_TIMEOUT)

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT call ``signal`` while the block runs; the hard bound ends with it."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.signal)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if self._timer is not None:
                self._timer.cancel()
