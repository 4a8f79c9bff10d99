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
  ``grace_s``; :meth:`Job.wait` raises :class:`~nodes.errors.JobTimedOut`.
* **Output**: stdout and stderr go to files in the job's folder; the environment is minimal
  (``PATH``, ``LANG``, ``HOME`` and ``TMPDIR`` in the folder) plus what the spec adds.
* **Sandbox** (``sandbox=``, :mod:`nodes.provider.sandbox`): the job runs under bubblewrap in its
  own namespaces, seeing only its folder (as ``/job``), read-only system parts and its GPUs'
  device nodes; its network only when ``network``. Stopping it kills bwrap, whose PID namespace
  takes every process the job made with it (double forks and ``setsid`` included). A sandbox
  that cannot be built raises :class:`~nodes.errors.SandboxUnavailable`, never runs unconfined.
* **Cgroup limits** (``cgroups=``, :mod:`nodes.provider.cgroups`): memory, processes and CPU for
  the whole job, in a group created for it and removed after; a memory kill is JobOutOfMemory.
* **Disk**: ``disk_bytes`` caps the folder: ``RLIMIT_FSIZE`` for any one file, and a watchdog
  that measures the folder every :data:`DISK_POLL_S` and kills the job past the cap
  (:class:`~nodes.errors.JobDiskExceeded`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nodes.daemon.guard import die_with_parent
from nodes.errors import JobDiskExceeded, JobFailed, JobOutOfMemory, JobTimedOut, SandboxUnavailable
from nodes.provider.cgroups import CgroupHost, CgroupLimits, LeaseCgroup
from nodes.provider.sandbox import Sandbox, setup_failed
from nodes.provider.seccomp import filter_fd

STOP_GRACE_S = 5.0
DISK_POLL_S = 0.1
_PR_SET_NO_NEW_PRIVS = 38
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
    sandbox: Sandbox | None = None
    """Run it confined (None: a plain subprocess, ``[jobs] sandbox = "none"``)."""
    network: bool = False
    """Keep the host's network inside the sandbox."""
    disk_bytes: int | None = None
    max_processes: int | None = None
    cpu_cores: float | None = None
    cgroups: CgroupHost | None = None
    """Where to make the job's cgroup (None, or no controllers: rlimits only)."""


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


def _limits(spec: JobSpec, group: LeaseCgroup | None) -> Callable[[], None]:
    memory, disk, procs = spec.memory_bytes, spec.disk_bytes, spec.max_processes

    def apply() -> None:  # pragma: no cover - in the child between fork and exec: os calls only
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if disk is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (disk, disk))
        if procs is not None and group is None:
            resource.setrlimit(resource.RLIMIT_NPROC, (procs, procs))
        if group is not None:
            group.join()
        if spec.sandbox is not None:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        die_with_parent()

    return apply


def folder_bytes(folder: Path) -> int:
    """Bytes ``folder`` holds on disk (allocated blocks, so sparse files count as written)."""
    total = 0
    stack = [folder]
    while stack:
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError, PermissionError),
            os.scandir(stack.pop()) as entries,
        ):
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat(follow_symlinks=False)
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
    return total


class Job:
    """One running (or finished) job. Create with :meth:`start`."""

    def __init__(
        self,
        spec: JobSpec,
        proc: subprocess.Popen[bytes],
        workdir: Path,
        grace_s: float,
        group: LeaseCgroup | None = None,
    ) -> None:
        self.spec = spec
        self.proc = proc
        self.workdir = workdir
        self.grace_s = grace_s
        self.group = group
        self.started = time.monotonic()
        self.deadline = self.started + spec.wall_time_s
        self._ended: float | None = None
        self._timed_out = False
        self._disk_used: int | None = None  # set by the watchdog when it killed the job
        self._oom_kills = 0  # the cgroup's, read before it is removed
        self._done = threading.Event()
        if spec.disk_bytes is not None:
            threading.Thread(target=self._watch_disk, name=f"{spec.name}-disk", daemon=True).start()

    @classmethod
    def start(cls, spec: JobSpec, workdir: Path, *, grace_s: float = STOP_GRACE_S) -> Job:
        """Start ``spec`` in ``workdir``; raises OSError if the program cannot start. A sandbox
        that bwrap cannot build ends the job at once, before its program runs, and
        :meth:`result` raises SandboxUnavailable for it."""
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        argv: list[str] = list(spec.argv)
        env = job_environment(spec, workdir)
        fds: tuple[int, ...] = ()
        if spec.sandbox is not None:
            # As Popen would: a program that is not there fails to start (OSError), not as a
            # job that ran and exited.
            if shutil.which(spec.argv[0], path=env["PATH"]) is None:
                raise FileNotFoundError(errno.ENOENT, "no such program", spec.argv[0])
            if spec.sandbox.seccomp is not None:
                fds = (filter_fd(spec.sandbox.seccomp),)
            argv = spec.sandbox.argv(
                spec.argv, folder=workdir, devices=spec.devices, network=spec.network,
                seccomp_fd=fds[0] if fds else None,
            )  # fmt: skip
            env = spec.sandbox.environment(env)
        group = None
        if spec.cgroups is not None and spec.cgroups.bases:
            limits = CgroupLimits(spec.memory_bytes, spec.max_processes, spec.cpu_cores)
            group = spec.cgroups.create(spec.name, limits)
        try:
            with (workdir / "stdout").open("wb") as out, (workdir / "stderr").open("wb") as err:
                proc = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,  # its own process group: stop() reaches its children
                    preexec_fn=_limits(spec, group),
                    pass_fds=fds,
                )
        except BaseException:
            if group is not None:
                group.remove()
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return cls(spec, proc, workdir, grace_s, group)

    def _watch_disk(self) -> None:
        """Kill the job once its folder holds more than ``disk_bytes`` (polled)."""
        cap = self.spec.disk_bytes
        assert cap is not None
        while not self._done.wait(DISK_POLL_S):
            used = folder_bytes(self.workdir)
            if used > cap:
                self._disk_used = used
                self._kill_now()
                return

    def _kill_now(self) -> None:
        """SIGKILL the job's process group (bwrap: and with it the sandbox's PID namespace) and
        whatever its cgroup still holds."""
        with contextlib.suppress(ProcessLookupError):
            if self.proc.returncode is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.group is not None:
            self.group.kill()

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
        if code is not None and not self._done.is_set():
            self._finish()
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
        self._finish()
        return code

    def _finish(self) -> None:
        """Once it exited: the end time, the watchdog stopped, the cgroup emptied and gone."""
        if self._ended is None:
            self._ended = time.monotonic()
        self._done.set()
        if self.group is not None:
            self._oom_kills = self.group.oom_kills()
            self.group.remove()

    def result(self) -> JobResult:
        """What a finished job did; raises JobTimedOut, JobDiskExceeded, SandboxUnavailable,
        JobOutOfMemory or JobFailed."""
        code = self.proc.returncode
        if code is None:
            raise RuntimeError(f"job {self.spec.name} is still running")
        tail = self.stderr_tail()
        name = self.spec.name
        if self._timed_out:
            raise JobTimedOut(name, self.spec.wall_time_s, tail)
        if self._disk_used is not None and self.spec.disk_bytes is not None:
            raise JobDiskExceeded(name, self.spec.disk_bytes, self._disk_used, tail)
        if code != 0:
            if self.spec.sandbox is not None and (said := setup_failed(code, tail)) is not None:
                raise SandboxUnavailable(f"job {name}: {said}")
            memory = self.spec.memory_bytes
            oom = self._oom_kills > 0
            if memory is not None and (oom or any(m in tail for m in _OOM_MARKERS)):
                raise JobOutOfMemory(name, memory, tail)
            cap = self.spec.disk_bytes
            if cap is not None:
                # RLIMIT_FSIZE: SIGXFSZ, or EFBIG where the program ignores the signal (Python);
                # or the folder full at the end, the watchdog not having looked yet.
                used = folder_bytes(self.workdir)
                if used >= cap or code == -signal.SIGXFSZ or "File too large" in tail:
                    raise JobDiskExceeded(name, cap, used, tail)
            raise JobFailed(name, code, tail)
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


__all__ = [
    "Job", "JobResult", "JobSpec", "folder_bytes", "job_environment", "run_job",
]  # fmt: skip
