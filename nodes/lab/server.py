"""The lab's HTTP endpoint: ``/metrics`` and ``/healthz``; any other request is refused with an
ErrorResponse frame a client decodes.

    server = LabServer(metrics)
    await server.start(host, port)        # accepting once this returns; server.port is bound
    await server.close()
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from nodes.daemon.health import health_response
from nodes.daemon.startup import Listener, listen
from nodes.lab.metrics import LabMetrics
from nodes.wire import CONTENT_TYPE, ErrorCode, ErrorResponse, encode


@web.middleware
async def _typed_refusals(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals (no route, wrong method) as ErrorResponse frames a client decodes."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        code = _HTTP_CODES.get(exc.status, ErrorCode.MALFORMED_FRAME)
        return web.Response(status=exc.status, body=encode(ErrorResponse(code, exc.reason)),
                            content_type=CONTENT_TYPE)  # fmt: skip


_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


class LabServer:
    """Serves the lab's metrics and health."""

    def __init__(self, metrics: LabMetrics) -> None:
        self.metrics = metrics
        self._listener: Listener | None = None

    @property
    def port(self) -> int:
        """The port bound (0 before :meth:`start`)."""
        return 0 if self._listener is None else self._listener.port

    def app(self) -> web.Application:
        """/metrics and /healthz; any other request refused with an ErrorResponse."""
        app = web.Application(middlewares=[self.metrics.timed_routes, _typed_refusals])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (0: a free port); returns once it accepts connections."""
        self._listener = await listen(self.app(), host, port)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain")

    async def _healthz(self, request: web.Request) -> web.Response:
        return health_response(self.metrics.chain)


__all__ = ["LabServer"]
