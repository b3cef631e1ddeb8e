"""SIGKILL and SIGSTOP ``ingest-sqs`` while it drains a queue: nothing is lost, the queue ends empty.

10,000 catalog events wait on a queue with a short visibility timeout (5 s). Two ingest-sqs
processes drain it while the real bridge consumes the raw topic:

- ``a`` is SIGKILLed 3 times, each time once it has deleted some messages, and restarted: what
  it held (received, maybe written, not deleted) comes back after the visibility timeout;
- ``b`` is frozen (SIGSTOP) for longer than the visibility timeout while the last ``a`` drains,
  then thawed: ``a`` receives again what ``b`` held, and ``b`` finishes its old writes and deletes
  with stale receipt handles.

At the end: every body is on canvas.raw (0 lost), the queue is empty, and every event is on its
typed topic exactly once; the records written twice are counted, and the bridge's suppressions.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos._util import Topics, all_committed, check, make_workload, poll_metric, read_outputs
from tests.kafka_helpers import BridgeProcess, read_all, run, wait_until
from tests.sqs_helpers import ElasticMQ, IngestSqsProcess

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

MESSAGES = 10_000
KILLS = 3
VISIBILITY_S = 5


IN_FLIGHT = "canvas_bridge_sqs_messages_in_flight"


def _deleted(proc: IngestSqsProcess) -> float:
    return poll_metric(proc, "canvas_bridge_sqs_messages_deleted_total") or 0.0


@pytest.mark.timeout(420)
def test_sigkill_and_sigstop_while_draining_lose_nothing(bootstrap: str, elasticmq: ElasticMQ, tmp_path: Path,
                                                         spawn: Callable[..., BridgeProcess]) -> None:
    started = time.monotonic()
    sqs = elasticmq.client()
    topics = Topics.create(bootstrap, "sqs-kill", partitions=3)
    workload = make_workload(MESSAGES, garbage_every=0)
    queue = sqs.create_queue(visibility_timeout_s=VISIBILITY_S)
    assert sqs.send(queue, [v.decode() for v in workload.values], threads=8) == MESSAGES

    def ingest(name: str, pollers: int = 2) -> IngestSqsProcess:
        return IngestSqsProcess(bootstrap, topics.raw, [queue], tmp_path / f"{name}.log",
                                BRIDGE_SQS_VISIBILITY_TIMEOUT_S=str(VISIBILITY_S), BRIDGE_SQS_POLLERS=str(pollers))

    processes: list[IngestSqsProcess] = []
    bridge = spawn(topics, "bridge")
    left_at_kills: list[int] = []
    try:
        b = ingest("b", pollers=1).start()  # the slower one: the queue lasts through the kills
        processes.append(b)
        name = "a-0"
        a = ingest(name).start()
        processes.append(a)
        for n in range(KILLS):
            # Killed mid-drain: after this incarnation deleted a few hundred messages (a random moment
            # of its receive -> write -> delete loop), with most of the queue still to go.
            wait_until(lambda a=a: _deleted(a) >= 300 or a.proc.poll() is not None, 90,  # type: ignore[union-attr]
                       f"{name} to delete 300 messages", interval=0.05)
            a.signal(signal.SIGKILL)
            assert a.proc is not None and a.proc.wait(10) == -signal.SIGKILL
            left_at_kills.append(sqs.total(queue))
            name = f"a-{n + 1}" if n + 1 < KILLS else "a-final"
            a = ingest(name).start()
            processes.append(a)
        # Freeze b beyond the visibility timeout while a-final drains: what b holds becomes visible
        # again, a-final receives and writes it (it polls until the queue is empty, and the queue
        # holds b's messages until b deletes them); b, thawed, writes or deletes it too. (b is
        # frozen once it holds messages: between two batches, or with nobody else receiving,
        # a freeze would hit nothing.)
        wait_until(lambda: _deleted(b) >= 50 and (poll_metric(b, IN_FLIGHT) or 0) > 0, 90,
                   "b to drain and hold messages", interval=0.01)
        b.signal(signal.SIGSTOP)
        time.sleep(VISIBILITY_S + 5)  # the length of the freeze (not a synchronization)
        b.signal(signal.SIGCONT)
        wait_until(lambda: sqs.total(queue) == 0, 180, "the queue to be empty", interval=0.5)
        for p in (a, b):
            assert p.terminate(40) == 0, p.log_tail()
        wait_until(lambda: all_committed(bootstrap, topics.group, topics.raw), 240,
                   "the bridge to commit the whole raw topic", interval=0.5)
        suppressed = bridge.metric("canvas_bridge_duplicates_suppressed_total")
        assert bridge.terminate(40) == 0, bridge.log_tail()
    finally:
        for p in processes:
            if p.proc is not None and p.proc.poll() is None:
                p.signal(signal.SIGCONT)
                p.kill()

    raw = run(read_all(bootstrap, topics.raw, min_count=MESSAGES))
    copies = Counter(r.value for r in raw)
    lost = [v for v in workload.values if v not in copies]
    written_twice = sum(n - 1 for n in copies.values())
    report = check(workload, run(read_outputs(bootstrap, topics)), topics)
    print()
    print(report.line("sqs_sigkill", time.monotonic() - started, kills=KILLS, sigstops=1,
                      raw_records=len(raw), lost_on_raw=len(lost), written_twice=written_twice,
                      suppressed_by_bridge=int(suppressed), left_in_queue_at_kills="/".join(map(str, left_at_kills))))
    assert not lost, f"{len(lost)} messages never reached canvas.raw"
    assert sqs.total(queue) == 0
    assert all(left > 0 for left in left_at_kills), f"a kill came after the queue was drained: {left_at_kills}"
    assert written_twice > 0, "no message was written twice: the kills and the freeze hit nothing held"
    report.assert_exactly_once()
    assert suppressed >= written_twice, (suppressed, written_twice)
