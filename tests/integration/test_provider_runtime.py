"""The job runtime with real subprocesses: completion, wall time, memory, pinning, escalation."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from nodes.errors import JobFailed, JobOutOfMemory, JobTimedOut
from nodes.provider import Job, JobSpec, run_job
from tests.waiting import pid_alive, wait_until

pytestmark = pytest.mark.integration

PY = sys.executable


def _spec(code: str, **kw: object) -> JobSpec:
    return JobSpec("job-1", (PY, "-c", code), **kw)  # type: ignore[arg-type]


def test_job_that_finishes_returns_its_captured_output(tmp_path: Path) -> None:
    code = "import sys; print('result 42'); print('progress', file=sys.stderr)"
    result = run_job(_spec(code), tmp_path)
    assert result.exit_code == 0
    assert result.stdout.read_text() == "result 42\n"
    assert result.stderr.read_text() == "progress\n"
    assert result.elapsed_s > 0


def test_job_sees_only_its_gpus_and_a_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUMARKET_SECRET", "do-not-leak")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    spec = _spec(code, devices=(2, 5), env={"JOB_SEED": "7"})
    env = json.loads(run_job(spec, tmp_path).stdout.read_text())
    assert env["CUDA_VISIBLE_DEVICES"] == "2,5"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["JOB_SEED"] == "7"
    assert env["HOME"] == str(tmp_path)
    assert "GPUMARKET_SECRET" not in env


def test_job_without_devices_sees_no_gpu(tmp_path: Path) -> None:
    code = "import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))"
    assert run_job(_spec(code), tmp_path).stdout.read_text() == "''\n"


def test_job_over_its_wall_time_is_killed_with_its_children(tmp_path: Path) -> None:
    # The job starts a grandchild, says where it is, then sleeps past its limit.
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    job = Job.start(_spec(code, wall_time_s=1.0), tmp_path, grace_s=5.0)
    wait_until(lambda: (tmp_path / "stdout").read_text().strip() != "", what="the grandchild")
    grandchild = int((tmp_path / "stdout").read_text())
    with pytest.raises(JobTimedOut) as info:
        job.wait()
    assert info.value.wall_time_s == 1.0
    assert job.proc.returncode == -signal.SIGTERM
    wait_until(lambda: not pid_alive(grandchild), what="the grandchild to be killed")
    assert 1.0 <= job.elapsed_s() < 30


def test_job_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    job = Job.start(_spec(code, wall_time_s=600), tmp_path, grace_s=0.5)
    wait_until(lambda: (tmp_path / "stdout").read_text() == "ready\n", what="the job to start")
    assert job.stop() == -signal.SIGKILL
    assert not pid_alive(job.pid)


def test_job_over_its_memory_limit_fails_as_out_of_memory(tmp_path: Path) -> None:
    limit = 512 * 2**20
    code = "x = bytearray(1024 * 2**20); print('allocated')"  # 1 GiB under a 512 MiB limit
    with pytest.raises(JobOutOfMemory) as info:
        run_job(_spec(code, memory_bytes=limit), tmp_path)
    assert info.value.memory_bytes == limit
    assert "MemoryError" in info.value.stderr_tail
    assert (tmp_path / "stdout").read_text() == ""


def test_job_within_its_memory_limit_runs(tmp_path: Path) -> None:
    code = "x = bytearray(64 * 2**20); print(len(x))"
    result = run_job(_spec(code, memory_bytes=1024 * 2**20), tmp_path)
    assert result.stdout.read_text() == f"{64 * 2**20}\n"


def test_job_that_exits_non_zero_fails_with_its_code_and_stderr(tmp_path: Path) -> None:
    code = "import sys; print('bad input', file=sys.stderr); sys.exit(3)"
    with pytest.raises(JobFailed) as info:
        run_job(_spec(code), tmp_path)
    assert info.value.exit_code == 3
    assert info.value.stderr_tail == "bad input\n"
    assert str(info.value) == "job job-1: exited with 3"


def test_poll_reports_a_running_job_then_its_end(tmp_path: Path) -> None:
    job = Job.start(_spec("import time; time.sleep(600)"), tmp_path)
    assert job.poll() is None
    assert job.stop() == -signal.SIGTERM
    assert job.poll() == -signal.SIGTERM
    with pytest.raises(JobFailed, match="killed by signal 15"):
        job.result()
