"""bridge.lifecycle.Drain: the first signal starts the drain once, and its hard bound ends with the command."""

from __future__ import annotations

import asyncio
import os
import signal

from bridge.lifecycle import Drain


def test_the_first_signal_starts_the_drain_and_leaving_the_block_cancels_the_hard_bound() -> None:
    started: list[float] = []

    async def main() -> tuple[bool, bool, bool]:
        drain = Drain(0.05, lambda: started.append(drain.deadline))
        with drain.on_signals():
            assert not drain.started and not drain.expired()
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(drain.requested.wait(), 5)
            timer = drain._timer
            assert timer is not None and not timer.cancelled()
        # Past the deadline, but the command ended: its hard bound (os._exit(3)) must not fire.
        await asyncio.sleep(0.05 + 1.0 + 0.2)
        return drain.started, drain.expired(), timer.cancelled()

    assert asyncio.run(main()) == (True, True, True)
    assert len(started) == 1 and started[0] != float("inf")


def test_signals_are_given_back_after_the_block() -> None:
    async def main() -> None:
        with Drain(1.0, lambda: None).on_signals():
            pass
    previous = signal.getsignal(signal.SIGTERM)
    asyncio.run(main())
    assert signal.getsignal(signal.SIGTERM) == previous
