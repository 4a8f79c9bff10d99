"""The sandbox's pure parts: bwrap's command line, GPU device nodes, cgroup limit files, the
seccomp program, and how a failed sandbox is told from a failed job."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.errors import JobRefused
from nodes.jobs import CommandParams, JobSpec
from nodes.provider.cgroups import CgroupHost, CgroupLimits, limit_files
from nodes.provider.config import JobLimits
from nodes.provider.confinement import Confinement
from nodes.provider.sandbox import Sandbox, gpu_device_nodes, setup_failed
from nodes.provider.seccomp import DENIED, compile_filter, load_libseccomp

pytestmark = pytest.mark.unit

SANDBOX = Sandbox("/usr/bin/bwrap", ("/opt/venv", "/src/market", "/src/nodes"), "/src")
LINKS = {"/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "usr/lib64"}


def _argv(**kw: object) -> list[str]:
    return SANDBOX.argv(
        ["python", "-m", "nodes.jobs.matmul"],
        folder=Path("/var/provider/jobs/ab12"),
        present=lambda p: p in ("/dev/nvidia2", "/dev/nvidiactl", "/dev/nvidia-uvm"),
        is_link=lambda p: p in LINKS,
        read_link=lambda p: LINKS[p],
        **kw,  # type: ignore[arg-type]
    )


def _pairs(argv: list[str], option: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == option]


def test_gpu_nodes_are_the_leased_ones_then_the_shared_nodes_the_host_has() -> None:
    host = {"/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia2", "/dev/nvidia3", "/dev/nvidiactl",
            "/dev/nvidia-uvm", "/dev/nvidia-modeset"}  # fmt: skip
    assert gpu_device_nodes([3, 1], host.__contains__) == (
        "/dev/nvidia1", "/dev/nvidia3", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-modeset",
    )  # fmt: skip
    assert gpu_device_nodes([0, 0], {"/dev/nvidia0"}.__contains__) == ("/dev/nvidia0",)
    assert gpu_device_nodes([], lambda p: True) == ()  # no GPU leased: no node, not even ctl
    assert gpu_device_nodes([5], lambda p: False) == ()  # declared, but no driver on this host


def test_a_negative_gpu_index_is_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        gpu_device_nodes([-1])


def test_argv_confines_the_job_and_ends_with_its_command() -> None:
    argv = _argv()
    assert argv[0] == "/usr/bin/bwrap"
    options = argv[: argv.index("--")]
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop",
                 "--die-with-parent", "--new-session"):  # fmt: skip
        assert flag in options
    assert "--share-net" not in options
    assert options[options.index("--uid") + 1] == options[options.index("--gid") + 1] == "1000"
    assert argv[argv.index("--") + 1 :] == ["python", "-m", "nodes.jobs.matmul"]
    assert _pairs(argv, "--bind") == [("/var/provider/jobs/ab12", "/job")]  # the one writable
    assert ("/opt/venv", "/opt/venv") in _pairs(argv, "--ro-bind")
    assert ("/src/nodes", "/src/nodes") in _pairs(argv, "--ro-bind")
    assert ("/usr", "/usr") in _pairs(argv, "--ro-bind-try")
    assert ("usr/bin", "/bin") in _pairs(argv, "--symlink")
    assert options[-2:] == ["--remount-ro", "/"]  # after every mount: the root read-only
    assert "/etc/resolv.conf" not in argv  # no network, no name resolution
    assert _pairs(argv, "--dev-bind") == []
    assert "--seccomp" not in argv


def test_argv_shares_the_network_and_binds_gpus_and_the_filter_when_asked() -> None:
    argv = _argv(devices=(2,), network=True, seccomp_fd=7)
    assert "--share-net" in argv
    assert ("/etc/resolv.conf", "/etc/resolv.conf") in _pairs(argv, "--ro-bind-try")
    assert _pairs(argv, "--dev-bind") == [
        ("/dev/nvidia2", "/dev/nvidia2"), ("/dev/nvidiactl", "/dev/nvidiactl"),
        ("/dev/nvidia-uvm", "/dev/nvidia-uvm"),
    ]  # fmt: skip
    assert argv[argv.index("--seccomp") + 1] == "7"
    assert argv.index("--seccomp") < argv.index("--")


def test_the_job_sees_its_folder_as_home_and_the_project_on_its_path() -> None:
    env = SANDBOX.environment({"PATH": "/usr/bin", "HOME": "/var/provider/jobs/ab12"})
    assert env == {"PATH": "/usr/bin", "HOME": "/job", "TMPDIR": "/tmp", "PYTHONPATH": "/src"}


def test_sandbox_for_this_interpreter_binds_no_provider_data() -> None:
    sandbox = Sandbox.for_this_interpreter("bwrap")
    assert all(not t.endswith((".sqlite", ".json", ".toml")) for t in sandbox.read_only)
    assert sandbox.read_only[-2:] == (
        f"{sandbox.python_path}/market",
        f"{sandbox.python_path}/nodes",
    )


def test_bwraps_own_complaint_is_told_from_a_job_that_failed() -> None:
    said = "bwrap: Can't find source path /dev/nvidia0: No such file or directory\n"
    assert setup_failed(1, said) == said.strip()
    assert setup_failed(2, said) is None  # bwrap fails with 1 only
    assert setup_failed(1, "Traceback (most recent call last):\n") is None
    assert setup_failed(1, "") is None


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (1, {"memory": {"memory.limit_in_bytes": "1024", "memory.memsw.limit_in_bytes": "1024"},
             "pids": {"pids.max": "64"},
             "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "250000"}}),
        (2, {"memory": {"memory.max": "1024", "memory.swap.max": "0"},
             "pids": {"pids.max": "64"}, "cpu": {"cpu.max": "250000 100000"}}),
    ],
)  # fmt: skip
def test_cgroup_limits_are_written_as_each_layout_spells_them(
    version: int, expected: dict[str, dict[str, str]]
) -> None:
    assert limit_files(version, CgroupLimits(1024, 64, 2.5)) == expected
    assert limit_files(version, CgroupLimits()) == {}


def test_the_seccomp_program_denies_the_listed_calls() -> None:
    lib = load_libseccomp()
    if lib is None:
        pytest.skip("libseccomp is not installed on this host")
    program = compile_filter(lib)
    assert len(program) % 8 == 0  # whole struct sock_filter instructions
    assert len(program) // 8 > len(DENIED) // 2  # about one jump per denied call
    assert compile_filter(lib, ()) != program


def test_a_spec_asking_for_the_network_is_refused_unless_the_config_allows_it() -> None:
    spec = JobSpec(bytes(32), CommandParams(("true",)), network=True)
    closed = Confinement(JobLimits(60, None), None, _no_cgroups())
    with pytest.raises(JobRefused) as info:
        closed.admit("lease-1", spec)
    assert (info.value.what, info.value.asked, info.value.allowed) == ("network", True, False)
    closed.admit("lease-1", JobSpec(bytes(32), CommandParams(("true",))))  # offline: welcome
    opened = Confinement(JobLimits(60, None, allow_network=True), None, _no_cgroups())
    opened.admit("lease-1", spec)
    assert opened.run_spec("lease-1", ("true",), (), network=True).network
    assert not closed.run_spec("lease-1", ("true",), (), network=True).network


def test_the_run_spec_carries_every_limit_of_the_config() -> None:
    limits = JobLimits(60, 2**30, max_processes=32, cpu_cores=1.5, disk_bytes=2**20)
    run = Confinement(limits, SANDBOX, _no_cgroups()).run_spec("lease-1", ("true",), (0, 1),
                                                                network=False)  # fmt: skip
    assert (run.name, run.argv, run.devices, run.wall_time_s) == ("lease-1", ("true",), (0, 1), 60)
    assert (run.memory_bytes, run.max_processes, run.cpu_cores, run.disk_bytes) == (
        2**30, 32, 1.5, 2**20,
    )  # fmt: skip
    assert run.sandbox is SANDBOX


def _no_cgroups() -> CgroupHost:
    return CgroupHost(0, {})
