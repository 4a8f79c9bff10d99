"""Running a relay in the foreground until SIGTERM or SIGINT: ``gpumarket relay``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from market.chain.deploy import Deployment
from nodes.daemon.startup import stop_signals, tune_gc
from nodes.relay.config import RelayConfig
from nodes.relay.relay import Relay


async def serve(
    config: RelayConfig, deployment: Deployment, *, on_ready: Callable[[Relay], None]
) -> None:
    """Start a relay, call ``on_ready`` once it accepts connections, and stop it gracefully on
    SIGTERM or SIGINT."""
    stop = asyncio.Event()
    with stop_signals(stop.set):
        relay = Relay(config, deployment)
        await relay.start()
        tune_gc()  # after the book is loaded: its orders are frozen out of the collections
        try:
            on_ready(relay)
            await stop.wait()
        finally:
            await relay.stop()


def run(config: RelayConfig, deployment: Deployment, *, on_ready: Callable[[Relay], None]) -> None:
    asyncio.run(serve(config, deployment, on_ready=on_ready))


__all__ = ["run", "serve"]
