"""Lean JSON-RPC requests for the hot chain calls: a keep-alive HTTP transport, web3's checks.

A call through ``w3.eth`` walks web3's method table, middleware and result formatters, then
``requests`` and urllib3: 1.2-2.2 ms of CPU on a 2-core machine, five times the request itself.
The relay's matcher makes several per transaction (estimate, fees, send, receipt polls) in the
process that admits orders, so :class:`JsonRpc` sends them over pooled ``http.client``
connections (one per concurrent caller, kept alive) with msgspec's JSON, and checks each answer
with web3's own validation and error formatters, so errors are web3's as before: ``Web3RPCError``
for a node's error, ``ContractLogicError`` for a revert of a call or an estimate.

A transport failure (refused, reset, timed out, a short answer) raises
:class:`~market.errors.RpcConnectionError`, a ``ConnectionError``, which ``market.chain.retry``
retries until its deadline; a kept-alive connection the node had closed is replaced at once
(every request sent this way is idempotent: reads, estimates, and signed bytes that are one
transaction however often sent).
A provider that is not plain HTTP (or needs ``requests`` options such as proxies or auth) is
spoken to through its own ``make_request``, with the same checks.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import ssl
import threading
import urllib.request
import weakref
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import msgspec
from requests.exceptions import HTTPError
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from web3 import HTTPProvider, Web3
from web3._utils.method_formatters import ERROR_FORMATTERS
from web3._utils.validation import validate_rpc_response_and_raise_if_error
from web3.types import RPCEndpoint, RPCResponse

from market.errors import RpcConnectionError

DEFAULT_TIMEOUT_S = 30.0  # web3's HTTPProvider default when no timeout is given
_LEAN_KWARGS = frozenset({"timeout", "headers"})
"""``request_kwargs`` the lean transport honours; any other sends through ``requests``."""


class _HttpTransport:
    """POSTs JSON-RPC bodies over kept-alive connections, one per concurrent caller."""

    def __init__(self, url: str, timeout_s: float, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json", **headers}
        self._tls: ssl.SSLContext | None = None
        if self._https:  # the CA bundle requests verifies against (certifi's, or the env's)
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            self._tls = ssl.create_default_context(cafile=bundle or DEFAULT_CA_BUNDLE_PATH)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        # Dropped with its last user: its connections closed then, not left to the collector.
        weakref.finalize(self, _close_all, self._idle)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        if self._tls is not None:
            tls = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout_s, context=self._tls
            )
            return tls, False
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s), False

    def post(self, body: bytes) -> bytes:
        conn, reused = self._connection()
        try:
            status, data, keep = self._exchange(conn, body)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if not reused or isinstance(exc, TimeoutError):  # a slow node: not waited for twice
                raise RpcConnectionError(self.url, f"{type(exc).__name__}: {exc}") from exc
            # The node closed this idle connection: send again on a fresh one.
            return self.post(body)
        if keep:
            with self._lock:
                self._idle.append(conn)
        else:
            conn.close()
        if not 200 <= status < 300:  # as requests' raise_for_status (redirects: not followed)
            raise HTTPError(f"{status} answer from {self.url}: {data[:200]!r}")
        return data

    def _exchange(self, conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes, bool]:
        if conn.sock is None:
            conn.connect()
            # As urllib3 does: a small request is not held back waiting for an ACK.
            cast(socket.socket, conn.sock).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.request("POST", self._path, body, self._headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, data, not response.will_close

    def close(self) -> None:
        with self._lock:
            _close_all(self._idle)


def _close_all(connections: list[http.client.HTTPConnection]) -> None:
    while connections:
        connections.pop().close()


_shared: weakref.WeakKeyDictionary[Any, JsonRpc] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


class JsonRpc:
    """Requests to ``w3``'s node that skip web3's method stack; results as the node's JSON.

    :meth:`of` gives the one instance of a provider, so a transactor and the client around it
    share their connections.
    """

    @classmethod
    def of(cls, w3: Web3) -> JsonRpc:
        """The instance for ``w3``'s provider (made on first use, dropped with the provider)."""
        with _shared_lock:
            rpc = _shared.get(w3.provider)
            if rpc is None:
                rpc = _shared[w3.provider] = cls(w3)
            return rpc

    def __init__(self, w3: Web3) -> None:
        provider = w3.provider
        # Weakly: :meth:`of` keys its instances by the provider, which must be free to go.
        self._provider = weakref.ref(provider)
        self._ids = itertools.count(1)
        self._http = _lean_transport(provider)

    @property
    def lean(self) -> bool:
        """Whether requests go over the kept-alive transport (else the provider's own)."""
        return self._http is not None

    def response(self, method: str, params: list[Any]) -> RPCResponse:
        """The node's whole answer to one request (``result`` or ``error``), unchecked."""
        if self._http is None:
            provider = self._provider()
            if provider is None:
                raise RpcConnectionError("?", f"the provider of this JsonRpc is gone ({method})")
            return provider.make_request(RPCEndpoint(method), params)
        body = msgspec.json.encode(
            {"jsonrpc": "2.0", "method": method, "params": params, "id": next(self._ids)}
        )
        answer: RPCResponse = _decoded(self._http.post(body))
        return answer

    def batch(self, requests: Sequence[tuple[str, list[Any]]]) -> list[RPCResponse] | RPCResponse:
        """The node's answers to ``requests`` in one JSON-RPC batch, in their order (a node may
        answer a batch in any order), unchecked; the node's one error answer when it refuses the
        whole batch. A provider without batches (not HTTP) answers each request in turn."""
        provider = self._provider()
        if self._http is None:
            if provider is None:
                raise RpcConnectionError("?", "the provider of this JsonRpc is gone (a batch)")
            if isinstance(provider, HTTPProvider):
                calls = [(RPCEndpoint(method), params) for method, params in requests]
                return provider.make_batch_request(calls)
            return [provider.make_request(RPCEndpoint(m), p) for m, p in requests]
        # Ids need only be unique within the batch: its answers are matched to them.
        bodies = [
            {"jsonrpc": "2.0", "method": method, "params": params, "id": n}
            for n, (method, params) in enumerate(requests)
        ]
        answers: Any = _decoded(self._http.post(msgspec.json.encode(bodies)))
        if not isinstance(answers, list):
            return cast(RPCResponse, answers)
        return sorted(answers, key=lambda a: a.get("id") if isinstance(a.get("id"), int) else 0)

    def request(self, method: str, params: list[Any]) -> Any:
        """The ``result`` of one request, checked as web3 checks it, with web3's error formatters
        for ``method``: raises ``Web3RPCError`` (or its subclass ``MethodUnavailable``...) for a
        node's error, ``ContractLogicError`` for a reverted ``eth_call`` or ``eth_estimateGas``."""
        response = self.response(method, params)
        if "error" in response or "result" not in response or response.get("jsonrpc") != "2.0":
            formatters = ERROR_FORMATTERS.get(RPCEndpoint(method))
            validate_rpc_response_and_raise_if_error(response, formatters, params=params)
        return response["result"]

    def close(self) -> None:
        """Close the kept-alive connections (the next request opens a new one)."""
        if self._http is not None:
            self._http.close()


def _lean_transport(provider: Any) -> _HttpTransport | None:
    """The kept-alive transport to an HTTP provider's node, or None where the provider must send
    itself: not web3's own HTTP provider (a subclass may do more in ``make_request``), credentials
    in the URL, a timeout pair, ``requests`` options, or a proxy from the environment (which
    ``requests`` would go through)."""
    if type(provider) is not HTTPProvider or provider.endpoint_uri is None:
        return None
    kwargs: dict[str, Any] = dict(provider._request_kwargs or {})
    url = str(provider.endpoint_uri)
    parts = urlsplit(url)
    timeout = kwargs.get("timeout", DEFAULT_TIMEOUT_S)
    if (
        not set(kwargs) <= _LEAN_KWARGS
        or parts.scheme not in ("http", "https")
        or parts.username is not None
        or not isinstance(timeout, int | float)
        or _proxied(parts.scheme, parts.hostname or "")
    ):
        return None
    return _HttpTransport(url, float(timeout), dict(kwargs.get("headers", {})))


def _proxied(scheme: str, host: str) -> bool:
    """Whether ``requests`` would send to ``host`` through a proxy named in the environment."""
    return scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)


def _decoded(data: bytes) -> Any:
    """An answer's JSON; not JSON raises what web3 raises for it, ``json.JSONDecodeError``."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        text = data.decode("utf-8", "replace")
        message = f"Could not decode {text[:200]!r} because of {exc}."
        raise json.JSONDecodeError(message, text, 0) from exc


def quantity(value: str | int) -> int:
    """A JSON-RPC quantity (``"0x1a"``) as an int."""
    return int(value, 16) if isinstance(value, str) else int(value)


__all__ = ["JsonRpc", "quantity"]
