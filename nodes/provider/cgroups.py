"""Per-lease control groups: memory, process and CPU limits the kernel enforces on a whole job.

    host = CgroupHost.detect("agent-3f2a")        # None-free: controllers it can use, maybe none
    group = host.create("lease-1a2b", CgroupLimits(memory_bytes=8 * 2**30, max_processes=256,
                                                   cpu_cores=4.0))
    Popen(..., preexec_fn=group.join)             # the job starts inside the group
    group.kill(); group.remove()                  # every process in it, then the group

Both layouts are read: cgroup v1 (one hierarchy per controller under ``/sys/fs/cgroup/<ctrl>/``,
as on hybrid hosts) and v2 (one unified hierarchy at ``/sys/fs/cgroup``). Groups are made under
the agent's own cgroup, in a folder named for the agent (``gpumarket-<tag>``), so two agents on
one machine never sweep each other's groups; :meth:`CgroupHost.sweep` kills and removes what a
previous run of the same agent left, and the empty folders of agents that were killed. A
controller the host does not offer, or does not let this user write, is simply not enforced:
:attr:`CgroupHost.controllers` says what is, and the agent logs it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path("/sys/fs/cgroup")
CONTROLLERS: Final = ("memory", "pids", "cpu")
CPU_PERIOD_US: Final = 100_000
KILL_DEADLINE_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    memory_bytes: int | None = None
    max_processes: int | None = None
    cpu_cores: float | None = None


def limit_files(version: int, limits: CgroupLimits) -> dict[str, dict[str, str]]:
    """What to write where, by controller: ``{"memory": {"memory.max": "1024"}, ...}``."""
    out: dict[str, dict[str, str]] = {}
    if limits.memory_bytes is not None:
        mem = str(limits.memory_bytes)
        out["memory"] = (
            {"memory.max": mem, "memory.swap.max": "0"}
            if version == 2
            else {"memory.limit_in_bytes": mem, "memory.memsw.limit_in_bytes": mem}
        )
    if limits.max_processes is not None:
        out["pids"] = {"pids.max": str(limits.max_processes)}
    if limits.cpu_cores is not None:
        quota = max(1000, int(limits.cpu_cores * CPU_PERIOD_US))
        out["cpu"] = (
            {"cpu.max": f"{quota} {CPU_PERIOD_US}"}
            if version == 2
            else {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(quota)}
        )
    return out


def _own_path(controller: str, proc_cgroup: str) -> str:
    """This process's cgroup in ``controller``'s hierarchy (``""`` for v2's), from
    ``/proc/self/cgroup``; ``/`` when not listed."""
    for line in proc_cgroup.splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(",") or (controller == "" and names == ""):
            return path
    return "/"


def _write(path: Path, value: str) -> None:
    path.write_text(value, encoding="ascii")


@dataclass(frozen=True, slots=True)
class LeaseCgroup:
    """One job's group: a folder per controller (v1) or one folder (v2)."""

    name: str
    folders: tuple[Path, ...]
    version: int

    def join(self) -> None:  # pragma: no cover - runs in the child between fork and exec
        """Move the calling process into the group (``preexec_fn``: os calls only)."""
        pid = str(os.getpid()).encode()
        for folder in self.folders:
            fd = os.open(folder / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for folder in self.folders:
            with contextlib.suppress(FileNotFoundError):
                text = (folder / "cgroup.procs").read_text(encoding="ascii")
                found |= {int(p) for p in text.split()}
        return found

    def oom_kills(self) -> int:
        """Processes the kernel killed for this group's memory limit."""
        for folder in self.folders:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(FileNotFoundError):
                    for line in (folder / name).read_text(encoding="ascii").splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
        return 0

    def kill(self, deadline_s: float = KILL_DEADLINE_S) -> None:
        """SIGKILL every process in the group, again until none is left (a fork racing the
        kill is caught on the next pass) or the deadline passes."""
        end = time.monotonic() + deadline_s
        for folder in self.folders:
            with contextlib.suppress(FileNotFoundError):
                if (folder / "cgroup.kill").exists():
                    _write(folder / "cgroup.kill", "1")
        while (pids := self.pids()) and time.monotonic() < end:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)  # poll interval while the kernel tears them down

    def remove(self, deadline_s: float = KILL_DEADLINE_S) -> None:
        """Kill what is left, then remove the group's folders (retrying while the kernel still
        counts exiting processes)."""
        self.kill(deadline_s)
        end = time.monotonic() + deadline_s
        for folder in self.folders:
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() >= end:
                        raise
                    time.sleep(0.01)  # poll interval until the last process is reaped


@dataclass(frozen=True, slots=True)
class CgroupHost:
    """Where this agent may make groups: ``bases`` by controller, and the layout's version."""

    version: int
    bases: dict[str, Path]

    @property
    def controllers(self) -> tuple[str, ...]:
        return tuple(c for c in CONTROLLERS if c in self.bases)

    @classmethod
    def detect(cls, tag: str, root: Path = ROOT) -> CgroupHost:
        """The controllers this process can delegate, each with the agent's base folder made."""
        try:
            own = Path("/proc/self/cgroup").read_text(encoding="ascii")
        except OSError:
            return cls(0, {})
        name = f"gpumarket-{tag}"
        if (root / "cgroup.controllers").exists():  # v2 unified
            base = root / _own_path("", own).lstrip("/") / name
            try:
                base.mkdir(exist_ok=True)
                offered = (base.parent / "cgroup.controllers").read_text().split()
                wanted = [c for c in CONTROLLERS if c in offered]
                _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
            except OSError:
                return cls(2, {})
            enabled = (base / "cgroup.subtree_control").read_text().split()
            return cls(2, {c: base for c in CONTROLLERS if c in enabled})
        bases: dict[str, Path] = {}
        for controller in CONTROLLERS:
            hierarchy = root / controller
            if not (hierarchy / "cgroup.procs").exists():
                continue
            base = hierarchy / _own_path(controller, own).lstrip("/") / name
            try:
                base.mkdir(exist_ok=True)
            except OSError:
                continue
            bases[controller] = base
        return cls(1, bases)

    def create(self, name: str, limits: CgroupLimits) -> LeaseCgroup:
        """A new group ``name`` with ``limits`` (on the controllers this host has)."""
        files = limit_files(self.version, limits)
        folders: list[Path] = []
        for controller, base in self.bases.items():
            folder = base / name
            if folder not in folders:
                base.mkdir(exist_ok=True)  # another agent's sweep may have removed it empty
                folder.mkdir(exist_ok=True)
                folders.append(folder)
            for file, value in files.get(controller, {}).items():
                with contextlib.suppress(FileNotFoundError):  # memsw without swap accounting
                    _write(folder / file, value)
        return LeaseCgroup(name, tuple(folders), self.version)

    def sweep(self) -> list[str]:
        """Kill and remove the groups a previous run of this agent left; their names."""
        stale: dict[str, list[Path]] = {}
        for base in set(self.bases.values()):
            with contextlib.suppress(FileNotFoundError):
                for child in base.iterdir():
                    if child.is_dir():
                        stale.setdefault(child.name, []).append(child)
        for name, folders in stale.items():
            LeaseCgroup(name, tuple(folders), self.version).remove()
        for base in set(self.bases.values()):  # agents killed before they could release theirs
            for sibling in base.parent.glob("gpumarket-*"):
                if sibling != base:
                    with contextlib.suppress(OSError):  # not empty: an agent's, running
                        sibling.rmdir()
        return sorted(stale)

    def release(self) -> None:
        """Remove this agent's (empty) base folders, as it stops."""
        for base in set(self.bases.values()):
            with contextlib.suppress(OSError):
                base.rmdir()


__all__ = ["CgroupHost", "CgroupLimits", "LeaseCgroup", "limit_files"]
