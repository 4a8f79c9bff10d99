"""Startup and readiness, the same for every daemon: listen, say so, stop on a signal.

    listener = await listen(app, host, port)      # accepting once this returns
    print(ready_line("relay", url=listener.url))  # "relay ready url=http://127.0.0.1:7000"
    with stop_signals(stop.set):                  # SIGTERM or SIGINT: a graceful stop
        await stop.wait()
    await listener.close()

A daemon is ready when it accepts connections (:func:`listen` returns only then); its ready line,
one ``<daemon> ready k=v ...`` line on stdout, is what scripts and tests wait for instead of a
sleep. :func:`tune_gc` sets the cyclic collector for a long-running daemon's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from aiohttp import web

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that stop a daemon gracefully (drain, then cancel)."""
DEFAULT_SHUTDOWN_S = 60.0
"""How long closing a listener waits for requests in flight (aiohttp's default)."""


@dataclass(slots=True)
class Listener:
    """An HTTP app served on ``host:port`` (``port`` the one bound, when 0 was asked)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting, finish the requests in flight (up to the shutdown timeout)."""
        await self.runner.cleanup()


async def listen(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = DEFAULT_SHUTDOWN_S
) -> Listener:
    """Serve ``app`` on ``host:port`` (0: a free port); returns once it accepts connections."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return Listener(runner, host, int(runner.addresses[0][1]))


@contextlib.contextmanager
def stop_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on SIGTERM or SIGINT while inside (on the running event loop's thread)."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop)
    try:
        yield
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


GC_THRESHOLDS: Final = (50_000, 20, 100)
"""The cyclic collector's thresholds in a daemon (CPython's default is (700, 10, 10))."""


def tune_gc() -> None:
    """Collect cycles less often in a daemon's own process (not in a library user's): a daemon
    holds many long-lived objects (a relay's book: several per resting order), and the default
    thresholds make the collector walk them over and over while requests allocate; a benchmark
    of the relay spent 0.6 to 0.75 s of its run there, about 10% of its main thread. Almost all
    garbage is freed by reference counting as it goes; cycles are still collected, in larger
    batches. What the daemon built while starting is frozen out of the collections."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def ready_line(daemon: str, **fields: object) -> str:
    """The line a daemon prints once it is ready: ``lab ready address=0x.. metrics=http://..``."""
    return " ".join([f"{daemon} ready", *(f"{k}={v}" for k, v in fields.items())])


__all__ = [
    "DEFAULT_SHUTDOWN_S",
    "GC_THRESHOLDS",
    "Listener",
    "STOP_SIGNALS",
    "listen",
    "ready_line",
    "stop_signals",
    "tune_gc",
]
