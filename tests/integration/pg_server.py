"""A real PostgreSQL server for the tests, started and stopped by the harness.

    server = PgServer.start()          # initdb into a temp dir, postgres on a free loopback port
    with server.database() as url:     # a fresh database: postgresql://postgres@127.0.0.1:N/db_1
        ...
    server.stop()                      # SIGINT (fast shutdown) -> SIGTERM -> SIGKILL; none left

The fixtures ``postgres`` (one server per session and worker) and ``pg_url`` (a fresh database per
test, dropped after it) are imported by ``tests/integration/conftest.py``.

PostgreSQL refuses to run as root, and the tests run as root here and in CI: as root, ``initdb`` and
``postgres`` run as ``nobody`` (``subprocess``'s ``user``/``group``, no extra groups), in a temp
dir made theirs under /tmp (pytest's own temp dirs are root's, 0700). The binaries are Debian's
(``/usr/lib/postgresql/<version>/bin``, installed by ``make pytest``'s ``postgresql`` target), or
``$GPUMARKET_PG_BINDIR``, ``pg_config --bindir``, or ``initdb`` on the PATH. The server runs in its
own process group, so stopping it checks that no backend outlives it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

READY_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0
UNPRIVILEGED = "nobody"
SUPERUSER = "postgres"


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``postgres``; AssertionError with what to run if none."""
    candidates: list[Path] = []
    if os.environ.get("GPUMARKET_PG_BINDIR"):
        candidates.append(Path(os.environ["GPUMARKET_PG_BINDIR"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: -int(p.name))]
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
        candidates.append(Path(out.stdout.strip()))
    if shutil.which("initdb"):
        candidates.append(Path(str(shutil.which("initdb"))).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise AssertionError(
        "PostgreSQL's server binaries (initdb, postgres) are missing: run `make pytest` (it "
        "installs Debian's postgresql) or `apt-get install postgresql`, or set GPUMARKET_PG_BINDIR"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One ``postgres`` in a temp dir, owned by this process; :meth:`stop` removes both."""

    def __init__(self, bindir: Path, root: Path, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.bindir = bindir
        self.root = root
        self.port = port
        self.proc = proc
        self._names = itertools.count(1)
        self._env: dict[str, str] = {}
        self._run_as: dict[str, object] = {}

    @classmethod
    def start(cls) -> PgServer:
        bindir = find_bindir()
        root = Path(tempfile.mkdtemp(prefix="gpumarket-pg-"))
        run_as: dict[str, object] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            os.chown(root, user.pw_uid, user.pw_gid)
            run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(root)}
        data = root / "data"
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True, timeout=120, env=env, cwd=root, **run_as,
        )  # fmt: skip
        for _ in range(5):  # the port may be taken between finding it free and binding it
            port = _free_port()
            server = cls(bindir, root, port, _spawn(bindir, root, port, env, run_as))
            server._env, server._run_as = env, run_as
            if server._wait_ready():
                return server
            tail = server.log_tail()
            server.stop(remove=False)
        shutil.rmtree(root, ignore_errors=True)
        raise AssertionError(f"postgres did not start:\n{tail}")

    def restart(self) -> None:
        """Stop the server (fast shutdown) and start it again on the same port and data: what
        it committed survives, every session is cut."""
        self.stop(remove=False)
        self.proc = _spawn(self.bindir, self.root, self.port, self._env, self._run_as)
        if not self._wait_ready():
            raise AssertionError(f"postgres did not start again:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)  # polling the server's readiness, with a deadline
        return False

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "postgres.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def _admin(self, statement: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement.encode())

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh, empty database (its URL), dropped when the block ends."""
        name = f"db_{os.getpid()}_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name}")
        try:
            yield self.url(name)
        finally:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self, *, remove: bool = True) -> None:
        """Fast shutdown (SIGINT), then SIGTERM, then SIGKILL; then nothing of its process group
        may be left. Removes the temp dir unless ``remove`` is False."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_DEADLINE_S)
        self.proc.wait(STOP_DEADLINE_S)
        left = _group_members(self.proc.pid)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)
        assert not left, f"postgres processes outlived the server: {left}"


def _spawn(
    bindir: Path, root: Path, port: int, env: dict[str, str], run_as: dict[str, Any]
) -> subprocess.Popen[bytes]:
    log = (root / "postgres.log").open("ab")
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
         "-c", "fsync=off", "-c", "full_page_writes=off",
         "-c", "dynamic_shared_memory_type=mmap", "-c", "max_connections=60",
         "-c", "shared_buffers=16MB"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, process_group=0, **run_as,
    )  # fmt: skip
    log.close()
    return proc


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in the process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """One PostgreSQL server for the session (per xdist worker), stopped at its end."""
    server = PgServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: PgServer) -> Iterator[str]:
    """The URL of a fresh database on the session's server, dropped after the test."""
    with postgres.database() as url:
        yield url
