"""The job sandbox: the bubblewrap command line a leased job runs under, built by pure functions.

    sandbox = Sandbox.for_this_interpreter(bwrap="/usr/bin/bwrap", seccomp=program)
    argv = sandbox.argv(job_argv, folder=workdir, devices=(0, 1), network=False, seccomp_fd=fd)

What the job gets (``docs/decisions/0015-job-sandbox.md`` has the threat model):

* **Its own namespaces** (``--unshare-all``): mount, PID, IPC, UTS, cgroup, user and network; no
  further user namespaces (``--disable-userns``), uid and gid 1000, no capabilities, a new
  session (no terminal injection), killed with the agent (``--die-with-parent``).
* **A filesystem of read-only system parts**: ``/usr`` (and ``/bin``, ``/lib*`` as the host has
  them), a few files of ``/etc`` (the dynamic linker's cache, time zone, and name resolution only
  with network), the Python interpreter, its environment and the project's own packages (jobs run
  ``python -m nodes.jobs...``), a fresh ``/tmp`` (tmpfs), ``/proc`` of its own PID namespace and
  a minimal ``/dev``. Its folder is ``/job``, the only writable place; the root is remounted
  read-only. Nothing of the provider's (keystore, databases, config, other leases' folders, the
  agent's data directory) exists inside.
* **Only its GPUs**: ``/dev/nvidiaN`` for the leased NVML indices, and the shared control nodes
  (:func:`gpu_device_nodes`).
* **No network** unless the signed spec asks for it and the provider allows it (``--share-net``).
* **A seccomp deny list** (:mod:`nodes.provider.seccomp`) when libseccomp is present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from nodes.errors import SandboxUnavailable
from nodes.provider.seccomp import filter_fd

PROBE_TIMEOUT_S: Final = 30.0
JOB_DIR: Final = "/job"
SANDBOX_UID: Final = 1000
SYSTEM_DIRS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES: Final = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
    "/etc/alternatives",
)  # fmt: skip
NETWORK_ETC_FILES: Final = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates",
    "/etc/host.conf", "/etc/gai.conf",
)  # fmt: skip
GPU_SHARED_NODES: Final = (
    "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
)  # fmt: skip


def gpu_device_nodes(
    indices: Iterable[int], present: Callable[[str], bool] = os.path.exists
) -> tuple[str, ...]:
    """The device nodes a job leasing NVML ``indices`` gets: ``/dev/nvidiaN`` for each, then the
    shared control nodes, each only if the host has it (a declared inventory on a host without
    NVIDIA's driver, as on the devnet, has none). No index: no node at all."""
    chosen = sorted(set(indices))
    if not chosen:
        return ()
    if any(i < 0 for i in chosen):
        raise ValueError(f"GPU indices are non-negative, got {chosen}")
    own = tuple(f"/dev/nvidia{i}" for i in chosen)
    return tuple(n for n in (*own, *GPU_SHARED_NODES) if present(n))


def _system_binds(is_link: Callable[[str], bool], read_link: Callable[[str], str]) -> list[str]:
    args: list[str] = []
    for d in SYSTEM_DIRS:
        if is_link(d):
            args += ["--symlink", read_link(d), d]
        else:
            args += ["--ro-bind-try", d, d]
    return args


@dataclass(frozen=True, slots=True)
class Sandbox:
    """How jobs are confined on this host: the bwrap program, the read-only trees a job needs
    beyond the system (interpreter, environment, project packages) and the ``PYTHONPATH`` that
    finds the project's packages inside."""

    bwrap: str
    read_only: tuple[str, ...]
    python_path: str
    seccomp: bytes | None = field(default=None, repr=False)

    @classmethod
    def for_this_interpreter(cls, bwrap: str, seccomp: bytes | None = None) -> Sandbox:
        """The sandbox for jobs run by this agent's interpreter and project checkout."""
        source = Path(__file__).resolve().parents[2]  # the folder holding market/ and nodes/
        trees = [
            sys.prefix,
            sys.base_prefix,
            str(Path(sys.executable).resolve().parent.parent),
            str(source / "market"),
            str(source / "nodes"),
        ]
        outside_system = [t for t in dict.fromkeys(trees) if not t.startswith("/usr/")]
        return cls(bwrap, tuple(outside_system), str(source), seccomp)

    def argv(
        self,
        command: Sequence[str],
        *,
        folder: Path,
        devices: Sequence[int] = (),
        network: bool = False,
        seccomp_fd: int | None = None,
        present: Callable[[str], bool] = os.path.exists,
        is_link: Callable[[str], bool] = os.path.islink,
        read_link: Callable[[str], str] = os.readlink,
    ) -> list[str]:
        """The whole command line: bwrap's options, then ``--``, then ``command``."""
        args = [
            self.bwrap,
            "--unshare-all", "--unshare-user", "--disable-userns",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--cap-drop", "ALL", "--die-with-parent", "--new-session",
            "--hostname", "job",
        ]  # fmt: skip
        if network:
            args.append("--share-net")
        args += _system_binds(is_link, read_link)
        for path in (*ETC_FILES, *(NETWORK_ETC_FILES if network else ())):
            args += ["--ro-bind-try", path, path]
        for tree in self.read_only:
            args += ["--ro-bind", tree, tree]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for node in gpu_device_nodes(devices, present):
            args += ["--dev-bind", node, node]
        args += [
            "--bind",
            os.path.abspath(folder),
            JOB_DIR,
            "--chdir",
            JOB_DIR,
            "--remount-ro",
            "/",
        ]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        return [*args, "--", *command]

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """The job's environment inside: its folder as home, the fresh /tmp, the project's
        packages importable."""
        return env | {"HOME": JOB_DIR, "TMPDIR": "/tmp", "PYTHONPATH": self.python_path}


def setup_failed(exit_code: int, stderr: str) -> str | None:
    """bwrap's own complaint when it could not build the sandbox (it exits 1 and says
    ``bwrap: ...`` before the job runs), else None. A job could print the same to fool this,
    but only about itself: the answer decides the error type of its own failure."""
    first = stderr.lstrip().splitlines()[0] if stderr.strip() else ""
    return first if exit_code == 1 and first.startswith("bwrap: ") else None


def probe(sandbox: Sandbox) -> None:
    """Run ``true`` in a sandbox as jobs get it (the seccomp filter included); raises
    SandboxUnavailable saying why not."""
    if shutil.which(sandbox.bwrap) is None:
        raise SandboxUnavailable(f"{sandbox.bwrap} not found")
    fds = () if sandbox.seccomp is None else (filter_fd(sandbox.seccomp),)
    try:
        with tempfile.TemporaryDirectory(prefix="gpumarket-probe-") as folder:
            command = sandbox.argv(
                ["true"], folder=Path(folder), seccomp_fd=fds[0] if fds else None
            )
            done = subprocess.run(
                command, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False, pass_fds=fds
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"{sandbox.bwrap}: {exc}") from exc
    finally:
        for fd in fds:
            os.close(fd)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()[-500:]
        raise SandboxUnavailable(f"probe exited {done.returncode}: {said}")


__all__ = ["JOB_DIR", "Sandbox", "gpu_device_nodes", "probe", "setup_failed"]
