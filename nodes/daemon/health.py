"""What a daemon's ``/healthz`` says: 200 while its chain endpoint answers, 503 once it does not.

Every daemon acts on the chain (the relay admits orders against stakes and funds, the provider
meters and claims, the lab pays and settles), so a daemon whose RPC endpoint is down is alive but
not healthy, and a load balancer or a supervisor must be able to tell. Each daemon's chain round
marks :meth:`ChainHealth.reached` when it read the chain and :meth:`ChainHealth.unreachable`
when it ended on a chain error; :func:`health_response` answers ``200 ok`` or
``503 chain_unavailable <why> for <N> s``. The same state is the gauge ``gpumarket_chain_up``.
"""

from __future__ import annotations

import threading
import time

from aiohttp import web


class ChainHealth:
    """Whether the last chain round reached the chain (thread-safe: the rounds run in worker
    threads, ``/healthz`` on the event loop). Healthy until a round fails."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._reason = ""

    def reached(self) -> None:
        """A round read the chain."""
        with self._lock:
            self._down_since = None
            self._reason = ""

    def unreachable(self, reason: str) -> None:
        """A round ended on a chain error (``reason``: the error's text)."""
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
            self._reason = reason

    @property
    def up(self) -> bool:
        with self._lock:
            return self._down_since is None

    def describe(self) -> str | None:
        """None while up; else why and for how long."""
        with self._lock:
            if self._down_since is None:
                return None
            down_s = time.monotonic() - self._down_since
            return f"{self._reason} for {down_s:.0f} s"


def health_response(health: ChainHealth, detail: str = "") -> web.Response:
    """``200 ok [detail]`` while the chain is reached, else ``503 chain_unavailable <why>``."""
    why = health.describe()
    if why is None:
        return web.Response(text=f"ok{' ' + detail if detail else ''}\n", content_type="text/plain")
    return web.Response(status=503, text=f"chain_unavailable {why}\n", content_type="text/plain")


__all__ = ["ChainHealth", "health_response"]
