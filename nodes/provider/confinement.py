"""What the agent enforces on every job: decided once at start, applied to each lease's job.

    confinement = Confinement.prepare(config.jobs, tag="3f2a", log=log)  # probes the sandbox
    confinement.admit(name, spec)                     # JobRefused if the policy forbids it
    run = confinement.run_spec(name, argv, devices, network=spec.network)
    Job.start(run, folder)
    confinement.close()                               # as the agent stops

At start the agent probes bubblewrap by running ``true`` in a sandbox as jobs get it; a failed
probe is :class:`~nodes.errors.SandboxUnavailable` and the agent does not start, unless the
operator set ``[jobs] sandbox = "none"`` (then ``sandbox_disabled`` is logged at every start).
It compiles the seccomp filter when libseccomp is present, sweeps the cgroups a previous run
left, and logs one ``job_sandbox`` line saying what it can enforce on this host.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from nodes.errors import JobRefused
from nodes.jobs import JobSpec
from nodes.logs import EventLogger
from nodes.provider.cgroups import CgroupHost
from nodes.provider.config import JobLimits
from nodes.provider.runtime import JobSpec as RunSpec
from nodes.provider.sandbox import Sandbox, probe
from nodes.provider.seccomp import compile_filter, load_libseccomp


@dataclass(frozen=True, slots=True)
class Confinement:
    limits: JobLimits
    sandbox: Sandbox | None
    """None only when the config says ``sandbox = "none"``."""
    cgroups: CgroupHost

    @classmethod
    def prepare(cls, limits: JobLimits, *, tag: str, log: EventLogger) -> Confinement:
        """Probe and log what this host can enforce; raises SandboxUnavailable when bwrap is
        wanted and does not work."""
        sandbox = None
        seccomp = False
        if limits.sandbox == "none":
            log.warning("sandbox_disabled", reason='[jobs] sandbox = "none": jobs run unconfined')
        else:
            lib = load_libseccomp()
            program = None if lib is None else compile_filter(lib)
            seccomp = program is not None
            if not seccomp:
                log.warning("seccomp_unavailable", reason="libseccomp not found: no syscall filter")
            sandbox = Sandbox.for_this_interpreter(shutil.which("bwrap") or "bwrap", program)
            probe(sandbox)
        cgroups = CgroupHost.detect(tag)
        swept = cgroups.sweep()
        log.info(
            "job_sandbox",
            sandbox=limits.sandbox,
            seccomp=seccomp,
            network_allowed=limits.allow_network,
            cgroup_version=cgroups.version,
            controllers=",".join(cgroups.controllers) or "none",
            memory_bytes=limits.memory_bytes,
            max_processes=limits.max_processes,
            cpu_cores=limits.cpu_cores,
            disk_bytes=limits.disk_bytes,
            stale_groups_removed=len(swept),
        )
        return cls(limits, sandbox, cgroups)

    def admit(self, name: str, spec: JobSpec) -> None:
        """Refuse (JobRefused) a spec that asks for what the policy forbids."""
        if spec.network and not self.limits.allow_network:
            raise JobRefused(name, "network", True, False)

    def run_spec(
        self, name: str, argv: Sequence[str], devices: tuple[int, ...], *, network: bool
    ) -> RunSpec:
        """How the runtime starts job ``name``: the limits, the sandbox, the cgroups."""
        limits = self.limits
        return RunSpec(
            name, tuple(argv), devices=devices, wall_time_s=limits.wall_time_s,
            memory_bytes=limits.memory_bytes, sandbox=self.sandbox,
            network=network and limits.allow_network, disk_bytes=limits.disk_bytes,
            max_processes=limits.max_processes, cpu_cores=limits.cpu_cores,
            cgroups=self.cgroups,
        )  # fmt: skip

    def close(self) -> None:
        """Remove the agent's (empty) cgroup folders."""
        self.cgroups.release()


__all__ = ["Confinement"]
