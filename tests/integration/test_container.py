"""The image, built and run as a user runs it: podman, the test broker over the host network.

The image is built once per session from the Dockerfile (``scripts/build-image``, on a base
image made from Debian's packages; no registry is reachable here). Each container runs with a
read-only root filesystem, /tmp as a tmpfs, all capabilities dropped and the image's shells
masked, as in the Kubernetes manifests (tests/container_helpers.py).

Select these tests with ``-m container``. ``benchmarks/container.py`` measures the image's
size, its build times and the drain time under load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos._util import (
    BackgroundProducer,
    Topics,
    check,
    committed_total,
    group_offsets,
    make_workload,
    read_outputs,
    wait_progress,
)
from tests.conftest import require_tool
from tests.container_helpers import (
    IMAGE_UID,
    SHELLS,
    BridgeContainer,
    build_image,
    hardened_flags,
    image_inspect,
    podman,
)
from tests.kafka_helpers import CATALOG, REPO, produce, run, wait_until

pytestmark = [pytest.mark.container]

DRAIN_TIMEOUT_S = 20
INPUTS = 20_000  # a backlog the container is still draining when it is stopped
RATE = 2_000.0


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    """The Dockerfile built with podman, under a tag of this session (removed at the end)."""
    require_tool("podman")
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("building the base image needs root (debootstrap); see scripts/base-image")
    tag = f"localhost/canvas-bridge-test:{uuid.uuid4().hex[:10]}"
    build_image(tag)
    try:
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)


def test_image_runs_canvas_bridge_as_non_root_with_an_exec_form_healthcheck(image: str) -> None:
    inspected = image_inspect(image)
    config = inspected["Config"]
    assert config["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert config["Entrypoint"] == ["canvas-bridge"]
    assert config["Cmd"] == ["run"]
    assert config["WorkingDir"] == "/tmp"
    assert "BRIDGE_HTTP_HOST=0.0.0.0" in config["Env"]
    # Exec form ("CMD"), not "CMD-SHELL": the health check needs no shell.
    # (podman keeps it beside Config; it is kept at all only in the docker format: --format docker.)
    healthcheck = inspected["Healthcheck"]
    assert healthcheck["Test"][0] == "CMD", healthcheck
    assert "/healthz" in healthcheck["Test"][-1]


def test_transform_in_the_container_reads_stdin_like_the_host_command(image: str) -> None:
    events = (CATALOG / "canvas-examples.jsonl").read_bytes() + (CATALOG / "caliper-examples.jsonl").read_bytes()
    inside = podman("run", "--rm", "-i", "--network", "none", *hardened_flags(), image, "transform",
                    input=events, check=False)
    assert inside.returncode == 0, inside.stderr.decode(errors="replace")
    host = subprocess.run([sys.executable, "-m", "bridge", "transform"], input=events, capture_output=True,
                          cwd=REPO, timeout=120, check=True)
    out = inside.stdout.splitlines()
    assert len(out) > 100 and all(json.loads(line)["topic"].startswith("canvas.") for line in out)
    assert inside.stdout == host.stdout, "the image's transform differs from the source tree's"


def test_run_in_the_container_publishes_is_healthy_and_drains_on_podman_stop(
        image: str, bootstrap: str, tmp_path: Path) -> None:
    workload = make_workload(INPUTS)
    topics = Topics.create(bootstrap, "container", partitions=4)
    settings = topics.settings(BRIDGE_DELIVERY_BATCH_MAX_RECORDS="500",
                               BRIDGE_DELIVERY_DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S))
    with BridgeContainer(image, bootstrap, topics.raw, topics.group, tmp_path / "container.log",
                         **settings) as bridge:
        bridge.wait_ready(120)
        assert bridge.get("/healthz")[0] == 200

        # The image's own HEALTHCHECK command, run by podman inside the container.
        health = podman("healthcheck", "run", bridge.name, check=False)
        assert health.returncode == 0, health.stdout + health.stderr

        # Non-root and read-only, seen from outside: the process's uid on the host, the flag.
        state = bridge.inspect()
        assert state["HostConfig"]["ReadonlyRootfs"] is True
        status = Path(f"/proc/{state['State']['Pid']}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert uids == [str(IMAGE_UID)] * 4, status

        # ... and from inside: the root filesystem refuses writes, /tmp takes them, no shell runs.
        probe = bridge.exec("python", "-c", (
            "import errno, os, subprocess\n"
            "print(os.getuid(), os.getgid())\n"
            "for path in ('/opt/venv/probe', '/probe', '/etc/probe'):\n"
            "    try:\n"
            "        open(path, 'w')\n"
            "    except OSError as exc:\n"
            "        assert exc.errno in (errno.EROFS, errno.EACCES), exc\n"
            "        print('refused', path, errno.errorcode[exc.errno])\n"
            "    else:\n"
            "        raise SystemExit('wrote ' + path)\n"
            "open('/tmp/probe', 'w').write('ok')\n"
            f"for shell in {SHELLS!r} + ('/bin/sh',):\n"
            "    try:\n"
            "        subprocess.run([shell, '-c', 'true'], check=True)\n"
            "    except (PermissionError, subprocess.CalledProcessError) as exc:\n"
            "        print('no shell', shell, type(exc).__name__)\n"
            "    else:\n"
            "        raise SystemExit('a shell ran: ' + shell)\n"
        ))
        out = probe.stdout.decode()
        assert probe.returncode == 0, out + probe.stderr.decode()
        assert out.splitlines()[0] == f"{IMAGE_UID} {IMAGE_UID}"
        assert out.count("refused /opt/venv/probe EROFS") == 1, out
        assert out.count("no shell") == 3, out

        # Load: a stream into the raw topic; stop the container while it is consuming.
        producer = BackgroundProducer(bootstrap, topics.raw, workload.values, RATE).start()
        try:
            wait_progress(bridge, 60)
            wait_until(lambda: committed_total(bootstrap, topics.group, topics.raw) >= 2000, 90,
                       "the first 2000 inputs committed")
            assert not producer.done, "the stream ended before podman stop: raise INPUTS or lower RATE"
            code, drain_s = bridge.stop(DRAIN_TIMEOUT_S + 10)
            assert code == 0, f"exit {code} after podman stop:\n{bridge.log_tail()}"
            assert drain_s <= DRAIN_TIMEOUT_S, f"podman stop took {drain_s:.1f}s (drain timeout {DRAIN_TIMEOUT_S}s)"
            placed = producer.join(120)
        finally:
            producer.stop()
        assert "stopped (exit 0)" in bridge.log_tail(5)
        assert bridge.inspect()["State"]["ExitCode"] == 0

    # Committed offsets, read by an independent client (an admin client of the test): every input
    # below them was published (typed records or dead letters), and the container committed something.
    committed = run(group_offsets(bootstrap, topics.group, topics.raw))
    assert sum(committed.values()) >= 2000, committed
    assert sum(committed.values()) < len(placed), "the container drained the whole stream: no load at stop"
    report = check(workload, run(read_outputs(bootstrap, topics)), topics)
    seen = report.by_marker.keys() | report.dlq_by_marker.keys()
    committed_inputs = [i for i, (p, off) in enumerate(placed) if off < committed.get(p, 0)]
    missing = [i for i in committed_inputs if not all(m in seen for m in workload.inputs[i].markers)]
    assert not missing, f"{len(missing)} committed inputs have no output, e.g. {missing[:5]}"
    # ... and the drain committed all it had published: nothing in flight was left uncommitted.
    marker_input = workload.marker_of_input()
    published = {marker_input[m] for m in seen if m in marker_input}
    beyond = sorted(published - set(committed_inputs))
    assert not beyond, f"{len(beyond)} inputs published but not committed at the stop, e.g. {beyond[:5]}"
    print(f"\nCONTAINER drain: podman stop -> exit 0 in {drain_s:.2f}s; committed {len(committed_inputs)} of "
          f"{len(placed)} inputs; outputs {report.outputs}")


def test_replay_in_the_container_reads_a_dead_letter_topic(image: str, bootstrap: str) -> None:
    """The same image serves ``replay``: a dry run over a dead-letter topic, from the container."""
    topics = Topics.create(bootstrap, "container-replay", partitions=1)
    events = (CATALOG / "canvas-examples.jsonl").read_bytes().splitlines()[:3]
    garbage = [b"{not json " + str(n).encode() for n in range(5)]
    run(produce(bootstrap, topics.dlq, events + garbage))
    result = podman("run", "--rm", "--network", "host", *hardened_flags(),
                    f"--env=BRIDGE_KAFKA_BOOTSTRAP_SERVERS={bootstrap}", image,
                    "replay", "--dry-run", "--from-topic", topics.dlq, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    summary = json.loads(result.stdout)
    assert summary["read"] == 8, summary
    assert summary["recovered"] == 3, summary
    assert summary["still_dead"] == {"invalid_json": 5}, summary
    assert summary["records_published"] == 0
