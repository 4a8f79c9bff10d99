"""Hostile jobs in the real sandbox: each tries one attack, writes what it saw into its own
folder, and the test checks both that the attack failed and that the host is unharmed.

Jobs start as the agent starts them: :class:`nodes.provider.runtime.Job` with the agent's
sandbox (:mod:`nodes.provider.confinement` builds the same), seccomp filter and cgroups.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from nodes.errors import JobDiskExceeded, JobOutOfMemory, JobTimedOut, SandboxUnavailable
from nodes.jobs import TrainParams
from nodes.logs import get_logger
from nodes.provider.cgroups import CgroupHost
from nodes.provider.config import JobLimits
from nodes.provider.confinement import Confinement
from nodes.provider.runtime import Job, JobResult, JobSpec, folder_bytes, run_job
from nodes.provider.sandbox import Sandbox, probe
from nodes.provider.seccomp import compile_filter, load_libseccomp
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SECRET = "hunter2-provider-secret"
_LOG = get_logger("gpumarket.provider.test")
PRELUDE = textwrap.dedent(
    """\
    import json, os, sys
    seen = {}
    def observe(key, value):
        seen[key] = value
        with open("/job/observed.json", "w") as f:
            json.dump(seen, f)
    def attempt(key, action):
        try:
            observe(key, {"ok": True, "value": action()})
        except Exception as exc:
            observe(key, {"ok": False, "error": type(exc).__name__})
    """
)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    lib = load_libseccomp()
    built = Sandbox.for_this_interpreter("bwrap", None if lib is None else compile_filter(lib))
    probe(built)  # SandboxUnavailable here: run `make setup` (it installs bubblewrap)
    return built


@pytest.fixture(scope="module")
def cgroups() -> Iterator[CgroupHost]:
    host = CgroupHost.detect(f"test-{uuid.uuid4().hex[:8]}")
    host.sweep()
    yield host
    host.sweep()
    host.release()


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A provider's data folder as the agent keeps it: keystore, database, config, leases."""
    monkeypatch.setenv("GPUMARKET_KEY_PASSWORD", SECRET)
    data = tmp_path / "provider"
    (data / "leases").mkdir(parents=True)
    (data / "provider-key.json").write_text(json.dumps({"crypto": SECRET}))
    (data / "state.sqlite").write_text(SECRET)
    (data / "provider.toml").write_text(f'password = "{SECRET}"\n')
    return data


def _lease(provider: Path, name: str) -> Path:
    folder = provider / "leases" / name
    folder.mkdir()
    return folder


def _job(sandbox: Sandbox, cgroups: CgroupHost, code: str, *args: str, **kw: object) -> JobSpec:
    marker = kw.pop("marker", "none")
    name = str(kw.pop("name", f"hostile-{uuid.uuid4().hex[:8]}"))  # names its cgroup
    defaults: dict[str, object] = {
        "sandbox": sandbox, "cgroups": cgroups, "wall_time_s": 20.0, "memory_bytes": 2**30,
        "max_processes": 64, "cpu_cores": 1.0, "disk_bytes": 64 * 2**20,
        "env": {"HOSTILE_MARKER": str(marker)},
    }  # fmt: skip
    return JobSpec(
        name, (sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args),
        **(defaults | kw),  # type: ignore[arg-type]
    )  # fmt: skip


def _observed(folder: Path) -> dict[str, dict[str, object]]:
    seen: dict[str, dict[str, object]] = json.loads((folder / "observed.json").read_text())
    return seen


def _failed(seen: dict[str, object]) -> bool:
    return seen["ok"] is False


def _marked(marker: str) -> list[int]:
    """Host processes carrying ``marker`` in their environment (the job's, by construction)."""
    found = []
    needle = f"HOSTILE_MARKER={marker}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_job_cannot_read_the_keystore_database_or_config(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    folder = _lease(provider, "a")
    code = """
        for i, path in enumerate(sys.argv[1:]):
            attempt(f"read{i}", lambda: open(path).read())
        attempt("listing", lambda: os.listdir(os.path.dirname(sys.argv[1])))
    """
    paths = [str(provider / n) for n in ("provider-key.json", "state.sqlite", "provider.toml")]
    run_job(_job(sandbox, cgroups, code, *paths), folder)
    seen = _observed(folder)
    assert [seen[f"read{i}"]["error"] for i in range(3)] == ["FileNotFoundError"] * 3
    assert _failed(seen["listing"])
    assert (provider / "provider-key.json").read_text() == json.dumps({"crypto": SECRET})


def test_job_cannot_read_the_agents_environment_or_memory(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    folder = _lease(provider, "a")
    code = """
        pid = sys.argv[1]
        attempt("environ", lambda: open(f"/proc/{pid}/environ", "rb").read().decode())
        attempt("mem", lambda: open(f"/proc/{pid}/mem", "rb").read(1))
        attempt("pids", lambda: sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
        leaked = []
        for p in os.listdir("/proc"):
            try:
                leaked.append(open(f"/proc/{p}/environ", "rb").read().decode())
            except OSError:
                pass
        observe("all_environs", {"ok": True, "value": leaked})
    """
    run_job(_job(sandbox, cgroups, code, str(os.getpid())), folder)
    seen = _observed(folder)
    assert seen["environ"]["error"] == "FileNotFoundError"
    assert seen["mem"]["error"] == "FileNotFoundError"
    pids = seen["pids"]["value"]
    assert isinstance(pids, list)
    assert len(pids) <= 3  # bwrap's init, the job, and nothing of the host's
    assert os.getpid() not in pids or os.getpid() <= 3
    assert SECRET not in json.dumps(seen)


def test_job_cannot_list_or_read_another_running_leases_folder(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    other = _lease(provider, "other")
    neighbour = Job.start(
        _job(sandbox, cgroups, "open('/job/weights', 'w').write(sys.argv[1])\n"
             "import time\nwhile True: time.sleep(1)\n", SECRET, name="neighbour"),
        other,
    )  # fmt: skip
    try:
        wait_until(lambda: (other / "weights").exists(), what="the neighbour's output")
        folder = _lease(provider, "a")
        code = """
            attempt("list", lambda: os.listdir(sys.argv[1]))
            attempt("read", lambda: open(sys.argv[1] + "/weights").read())
            attempt("parent", lambda: os.listdir("/job/.."))
        """
        run_job(_job(sandbox, cgroups, code, str(other)), folder)
    finally:
        neighbour.stop()
    seen = _observed(folder)
    assert seen["list"]["error"] == "FileNotFoundError"
    assert seen["read"]["error"] == "FileNotFoundError"
    assert "other" not in json.dumps(seen["parent"])
    assert (other / "weights").read_text() == SECRET


def test_job_cannot_connect_to_local_ports_unless_its_network_is_allowed(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    code = """
        import socket
        attempt("connect", lambda: socket.create_connection(("127.0.0.1", int(sys.argv[1])),
                                                             timeout=2).close())
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = str(listener.getsockname()[1])
        offline = _lease(provider, "offline")
        run_job(_job(sandbox, cgroups, code, port), offline)
        assert _failed(_observed(offline)["connect"])
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host's socket
        online = _lease(provider, "online")  # the control: the same job, network allowed
        run_job(_job(sandbox, cgroups, code, port, network=True), online)
        assert _observed(online)["connect"]["ok"] is True
        listener.accept()[0].close()


def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing_behind(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    if "pids" not in cgroups.controllers:
        pytest.skip("this host offers no pids cgroup to this user: the limit is not enforced")
    folder = _lease(provider, "a")
    marker = uuid.uuid4().hex
    code = """
        forks = 0
        for _ in range(1000):  # bounded, should the limit fail
            try:
                if os.fork() == 0:
                    os.pause()
                forks += 1
            except OSError as exc:
                observe("stopped", {"ok": False, "error": exc.strerror, "forks": forks})
                break
        else:
            observe("stopped", {"ok": True, "forks": forks})
    """
    run_job(_job(sandbox, cgroups, code, max_processes=32, marker=marker), folder)
    seen = _observed(folder)["stopped"]
    assert seen["ok"] is False
    assert isinstance(seen["forks"], int)
    assert seen["forks"] < 32
    assert _marked(marker) == []  # its children died with it
    assert subprocess.run(["true"], check=False).returncode == 0  # the host still forks


def test_filling_the_disk_past_the_cap_kills_the_job(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    folder = _lease(provider, "a")
    code = """
        chunk = b"x" * 2**18
        for i in range(4000):  # 1 GiB at most, should the watchdog fail
            with open(f"/job/fill{i}", "wb") as f:
                f.write(chunk)
        observe("finished", {"ok": True})
    """
    cap = 4 * 2**20
    with pytest.raises(JobDiskExceeded) as info:
        run_job(_job(sandbox, cgroups, code, disk_bytes=cap, wall_time_s=30.0), folder)
    assert info.value.limit_bytes == cap
    assert info.value.used_bytes > cap
    assert not (folder / "observed.json").exists()  # it never finished
    assert folder_bytes(folder) < 1024 * 2**20


def test_one_file_past_the_cap_is_refused_by_the_file_size_limit(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    folder = _lease(provider, "a")
    code = """
        attempt("big", lambda: open("/job/big", "wb").write(b"x" * 2**23))
        sys.exit(3)
    """
    with pytest.raises(JobDiskExceeded):
        run_job(_job(sandbox, cgroups, code, disk_bytes=2**22), folder)
    # The file never grew past the cap: the write of 8 MiB was cut by the file size limit.
    assert (folder / "big").stat().st_size <= 2**22
    # With the file at the cap, the folder (its directories count) is over it, so the watchdog
    # may kill the job before it records the refusal; when it recorded it, it was an OSError.
    if (folder / "observed.json").exists():
        assert _observed(folder)["big"]["error"] == "OSError"


def test_allocating_past_the_memory_limit_is_out_of_memory(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    folder = _lease(provider, "a")
    code = """
        blocks = []
        for _ in range(64):
            blocks.append(bytearray(2**24))  # touched: zero-filled pages
        observe("allocated", {"ok": True, "bytes": 64 * 2**24})
    """
    with pytest.raises(JobOutOfMemory) as info:
        run_job(_job(sandbox, cgroups, code, memory_bytes=256 * 2**20), folder)
    assert info.value.memory_bytes == 256 * 2**20
    assert not (folder / "observed.json").exists()


def test_a_double_forked_setsid_daemon_dies_at_the_wall_time(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    folder = _lease(provider, "a")
    marker = uuid.uuid4().hex
    code = """
        import time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                import signal
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                while True:
                    with open("/job/heartbeat", "w") as f:
                        f.write(str(time.monotonic()))
                    time.sleep(0.02)
            os._exit(0)
        while True:
            time.sleep(1)
    """
    job = Job.start(_job(sandbox, cgroups, code, marker=marker, wall_time_s=1.5), folder)
    wait_until(lambda: (folder / "heartbeat").exists(), what="the daemon's heartbeat")
    assert len(_marked(marker)) >= 3  # bwrap, its init, the job, the daemon
    with pytest.raises(JobTimedOut):
        job.wait()
    wait_until(lambda: _marked(marker) == [], what="every process of the job to be gone")


def test_job_cannot_signal_the_agent(sandbox: Sandbox, cgroups: CgroupHost, provider: Path) -> None:
    received: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGUSR1, record)
    try:
        folder = _lease(provider, "a")
        code = """
            import signal
            attempt("kill", lambda: os.kill(int(sys.argv[1]), signal.SIGUSR1))
            attempt("killpg", lambda: os.killpg(int(sys.argv[1]), signal.SIGUSR1))
        """
        run_job(_job(sandbox, cgroups, code, str(os.getpid())), folder)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    seen = _observed(folder)
    assert seen["kill"]["error"] == "ProcessLookupError"
    assert seen["killpg"]["error"] == "ProcessLookupError"
    assert received == []


def test_job_cannot_write_outside_its_folder(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    folder = _lease(provider, "a")
    name = f"escape-{uuid.uuid4().hex}"
    targets = ["/", "/usr", "/etc", str(provider), str(provider / "leases"), sys.prefix]
    code = """
        name = sys.argv[1]
        for i, d in enumerate(sys.argv[2:]):
            attempt(f"w{i}", lambda: open(f"{d}/{name}", "w").write("x"))
        attempt("tmp", lambda: open(f"/tmp/{name}", "w").write("x"))
        attempt("own", lambda: open(f"/job/{name}", "w").write("x"))
    """
    run_job(_job(sandbox, cgroups, code, name, *targets), folder)
    seen = _observed(folder)
    assert all(_failed(seen[f"w{i}"]) for i in range(len(targets)))
    assert seen["tmp"]["ok"] is True  # its private /tmp
    assert seen["own"]["ok"] is True
    assert [t for t in [*targets, "/tmp"] if Path(t, name).exists()] == []
    assert (folder / name).read_text() == "x"


def test_job_sees_no_device_it_was_not_given(
    sandbox: Sandbox, cgroups: CgroupHost, provider: Path
) -> None:
    folder = _lease(provider, "a")
    host_devices = [
        d for d in ("/dev/mem", "/dev/kmsg", "/dev/vda", "/dev/sda") if Path(d).exists()
    ]
    code = """
        observe("dev", {"ok": True, "value": sorted(os.listdir("/dev"))})
        for i, path in enumerate(sys.argv[1:]):
            attempt(f"r{i}", lambda: open(path, "rb").read(1))
        attempt("nvidia", lambda: open("/dev/nvidia0", "rb").read(1))
        attempt("sys", lambda: os.listdir("/sys"))
    """
    run_job(_job(sandbox, cgroups, code, *host_devices), folder)
    seen = _observed(folder)
    dev = seen["dev"]["value"]
    assert isinstance(dev, list)
    assert not [d for d in dev if d.startswith(("nvidia", "sd", "vd", "nvme", "mem", "kmsg"))]
    assert all(_failed(seen[f"r{i}"]) for i in range(len(host_devices)))
    assert seen["nvidia"]["error"] == "FileNotFoundError"
    assert _failed(seen["sys"]) or seen["sys"]["value"] == []


@pytest.mark.parametrize(
    ("module", "args", "size"),
    [
        ("nodes.jobs.matmul", ("8", "1", "2"), 2 * 8 * 8 * 8),
        ("nodes.jobs.train", ("7", "2", "3", "4"), 2 * TrainParams(7, 2, 3, 4).record_bytes),
    ],
)
def test_the_workloads_run_in_the_sandbox(
    sandbox: Sandbox,
    cgroups: CgroupHost,
    provider: Path,
    module: str,
    args: tuple[str, ...],
    size: int,
) -> None:
    folder = _lease(provider, "a")
    argv = (sys.executable, "-m", module, *args)
    result: JobResult = run_job(
        JobSpec("workload", argv, sandbox=sandbox, cgroups=cgroups, memory_bytes=2**30), folder
    )
    assert result.exit_code == 0
    assert len(result.stdout.read_bytes()) == size


def _events(caplog: pytest.LogCaptureFixture) -> dict[str, dict[str, object]]:
    return {r.event: r.fields for r in caplog.records if hasattr(r, "event")}  # type: ignore[attr-defined]


def test_the_agent_logs_what_it_enforces_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    limits = JobLimits(60, 2**30, max_processes=64, cpu_cores=2.0, disk_bytes=2**30)
    confinement = Confinement.prepare(limits, tag=f"test-{uuid.uuid4().hex[:8]}", log=_LOG)
    try:
        assert confinement.sandbox is not None
        line = _events(caplog)["job_sandbox"]
        assert line["sandbox"] == "bwrap"
        assert line["seccomp"] is (load_libseccomp() is not None)
        assert line["network_allowed"] is False
        assert line["controllers"] == (",".join(confinement.cgroups.controllers) or "none")
        assert (line["max_processes"], line["cpu_cores"]) == (64, 2.0)
        assert "sandbox_disabled" not in _events(caplog)
    finally:
        confinement.close()


def test_sandbox_none_runs_unconfined_with_a_warning_at_every_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    confinement = Confinement.prepare(
        JobLimits(60, None, sandbox="none"), tag=f"test-{uuid.uuid4().hex[:8]}", log=_LOG
    )
    try:
        assert confinement.sandbox is None
        assert "sandbox_disabled" in _events(caplog)
        assert confinement.run_spec("j", ("true",), (), network=False).sandbox is None
    finally:
        confinement.close()


def test_a_sandbox_that_does_not_work_is_an_error_never_a_fallback(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailable, match="not found"):
        probe(Sandbox("/nonexistent/bwrap", (), str(tmp_path)))
    broken = Sandbox("bwrap", ("/nonexistent/venv",), str(tmp_path))  # a tree bwrap cannot bind
    with pytest.raises(SandboxUnavailable, match="Can't find source path"):
        probe(broken)
    job = Job.start(JobSpec("broken", ("true",), sandbox=broken), tmp_path)
    with pytest.raises(SandboxUnavailable, match="Can't find source path"):
        job.wait()
