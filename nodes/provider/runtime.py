"""Running a leased job: a subprocess with a wall-time limit, a memory limit and its own GPUs.

    job = Job.start(JobSpec("lease-1a2b", ("python", "train.py"), devices=(2, 3),
                            wall_time_s=3600, memory_bytes=64 * 2**30), workdir)
    job.elapsed_s()        # while it runs: what metering bills
    result = job.wait()    # JobResult, or JobTimedOut / JobOutOfMemory / JobFailed

* **GPU pinning**: ``CUDA_VISIBLE_DEVICES`` lists the job's device indices and
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes CUDA number devices as NVML does; a job with no devices
  sees no GPU.
* **Memory**: ``RLIMIT_AS`` (address space) is set in the child before exec. CUDA reserves far
  more address space than it uses, so GPU jobs need a generous limit or none (``None``).
* **Time**: past ``wall_time_s`` the job's whole process group gets SIGTERM, then SIGKILL after
  ``grace_s``; :meth:`Job.wait` raises :class:`~market.errors.JobTimedOut`.
* **Output**: stdout and stderr go to files in the job's folder; the environment is minimal
  (``PATH``, ``LANG``, ``HOME`` and ``TMPDIR`` in the folder) plus what the spec adds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from market.errors import JobFailed, JobOutOfMemory, JobTimedOut

STOP_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1
STDERR_TAIL = 2000
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# What a process says when an allocation fails under RLIMIT_AS (Python, glibc, C++, CUDA).
_OOM_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    argv: tuple[str, ...]
    devices: tuple[int, ...] = ()
    wall_time_s: float = 3600.0
    memory_bytes: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobResult:
    name: str
    exit_code: int
    elapsed_s: float
    stdout: Path
    stderr: Path


def job_environment(spec: JobSpec, workdir: Path) -> dict[str, str]:
    """The child's whole environment: minimal, then the spec's, then the GPU pinning."""
    env = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "LANG": "C.UTF-8",
        "HOME": str(workdir),
        "TMPDIR": str(workdir / "tmp"),
    }
    env.update(spec.env)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in spec.devices)
    return env


def die_with_parent() -> None:  # pragma: no cover - runs in a child between fork and exec
    """SIGKILL this child when the thread that started it dies (``PR_SET_PDEATHSIG``): a job,
    or a lab's rerun of one, never outlives a killed daemon that could not account for it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _limits(memory_bytes: int | None) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec: setrlimit and prctl only
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        die_with_parent()

    return apply


class Job:
    """One running (or finished) job. Create with :meth:`start`."""

    def __init__(
        self, spec: JobSpec, proc: subprocess.Popen[bytes], workdir: Path, grace_s: float
    ) -> None:
        self.spec = spec
        self.proc = proc
        self.workdir = workdir
        self.grace_s = grace_s
        self.started = time.monotonic()
        self.deadline = self.started + spec.wall_time_s
        self._ended: float | None = None
        self._timed_out = False

    @classmethod
    def start(cls, spec: JobSpec, workdir: Path, *, grace_s: float = STOP_GRACE_S) -> Job:
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        with (workdir / "stdout").open("wb") as out, (workdir / "stderr").open("wb") as err:
            proc = subprocess.Popen(
                spec.argv,
                cwd=workdir,
                env=job_environment(spec, workdir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: stop() reaches its children
                preexec_fn=_limits(spec.memory_bytes),
            )
        return cls(spec, proc, workdir, grace_s)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def elapsed_s(self) -> float:
        """Seconds it has run: so far while running, in total once finished."""
        return (self._ended or time.monotonic()) - self.started

    def poll(self) -> int | None:
        """Its exit code once finished, else None; stops it when past the wall-time limit."""
        code = self.proc.poll()
        if code is None and time.monotonic() >= self.deadline:
            self._timed_out = True
            code = self.stop()
        if code is not None and self._ended is None:
            self._ended = time.monotonic()
        return code

    def wait(self) -> JobResult:
        """Block until it ends (at most its wall time, then the stop); raises a JobError unless
        it exited 0."""
        while self.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        return self.result()

    def stop(self) -> int:
        """End it: SIGTERM to its process group, then SIGKILL after the grace period."""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=self.grace_s)
        code = self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # children it left behind
        if self._ended is None:
            self._ended = time.monotonic()
        return code

    def result(self) -> JobResult:
        """What a finished job did; raises JobTimedOut, JobOutOfMemory or JobFailed."""
        code = self.proc.returncode
        if code is None:
            raise RuntimeError(f"job {self.spec.name} is still running")
        tail = self.stderr_tail()
        if self._timed_out:
            raise JobTimedOut(self.spec.name, self.spec.wall_time_s, tail)
        if code != 0:
            if self.spec.memory_bytes is not None and any(m in tail for m in _OOM_MARKERS):
                raise JobOutOfMemory(self.spec.name, self.spec.memory_bytes, tail)
            raise JobFailed(self.spec.name, code, tail)
        return JobResult(
            self.spec.name, code, self.elapsed_s(), self.workdir / "stdout", self.workdir / "stderr"
        )

    def stderr_tail(self) -> str:
        with (self.workdir / "stderr").open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - STDERR_TAIL))
            return f.read().decode(errors="replace")


def run_job(spec: JobSpec, workdir: Path, *, grace_s: float = STOP_GRACE_S) -> JobResult:
    """Start a job and wait for it; raises a JobError unless it exited 0 in time."""
    return Job.start(spec, workdir, grace_s=grace_s).wait()


__all__ = ["Job", "JobResult", "JobSpec", "die_with_parent", "job_environment", "run_job"]
