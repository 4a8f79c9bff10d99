"""Running a relay in the foreground until SIGTERM or SIGINT: ``gpumarket relay``."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from market.chain.deploy import Deployment
from nodes.relay.config import RelayConfig
from nodes.relay.relay import Relay


async def serve(
    config: RelayConfig, deployment: Deployment, *, on_ready: Callable[[Relay], None]
) -> None:
    """Start a relay, call ``on_ready`` once it accepts connections, and stop it gracefully on
    SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    relay = Relay(config, deployment)
    await relay.start()
    try:
        on_ready(relay)
        await stop.wait()
    finally:
        await relay.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run(config: RelayConfig, deployment: Deployment, *, on_ready: Callable[[Relay], None]) -> None:
    asyncio.run(serve(config, deployment, on_ready=on_ready))


__all__ = ["run", "serve"]
