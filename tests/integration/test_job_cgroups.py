"""Per-lease cgroups on this host's real hierarchy: limits written, a process moved in, stale
groups of a previous run killed and removed at start, another agent's left alone."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from nodes.provider.cgroups import CgroupHost, CgroupLimits
from tests.waiting import pid_alive, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def host() -> Iterator[CgroupHost]:
    detected = CgroupHost.detect(f"test-{uuid.uuid4().hex[:8]}")
    if not detected.controllers:
        pytest.skip("this host lets this user write no cgroup controller")
    yield detected
    detected.sweep()
    detected.release()


def _sleeper(group_join: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600"], preexec_fn=group_join)  # type: ignore[arg-type]


def test_a_group_holds_its_limits_and_its_process(host: CgroupHost) -> None:
    group = host.create("lease-a", CgroupLimits(64 * 2**20, 16, 0.5))
    proc = _sleeper(group.join)
    try:
        assert group.pids() == {proc.pid}
        if "pids" in host.controllers:
            assert (host.bases["pids"] / "lease-a" / "pids.max").read_text().strip() == "16"
        if "memory" in host.controllers:
            name = "memory.max" if host.version == 2 else "memory.limit_in_bytes"
            limit = (host.bases["memory"] / "lease-a" / name).read_text().strip()
            assert limit == str(64 * 2**20)
    finally:
        group.remove()
    assert proc.wait(5) == -9  # removing the group killed what it held
    assert all(not (base / "lease-a").exists() for base in host.bases.values())


def test_sweep_kills_and_removes_what_a_previous_run_left(host: CgroupHost) -> None:
    stale = host.create("lease-stale", CgroupLimits(max_processes=8))
    proc = _sleeper(stale.join)
    tag = next(iter(host.bases.values())).name.removeprefix("gpumarket-")
    other = CgroupHost.detect(f"other-{uuid.uuid4().hex[:8]}")
    neighbour = other.create("lease-b", CgroupLimits())
    theirs = _sleeper(neighbour.join)
    try:
        restarted = CgroupHost.detect(tag)  # the same agent, started again
        assert restarted.sweep() == ["lease-stale"]
        wait_until(lambda: not pid_alive(proc.pid), what="the stale job to be killed")
        assert proc.wait(5) == -9
        assert all(not (base / "lease-stale").exists() for base in host.bases.values())
        assert pid_alive(theirs.pid)  # another agent's job is not this agent's to sweep
    finally:
        neighbour.remove()
        other.release()
    assert theirs.wait(5) == -9
