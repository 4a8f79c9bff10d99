"""A TCP proxy in front of anvil that a test can cut and restore: the RPC endpoint going away
(connections refused, open ones dropped) and coming back, as a real outage looks to a daemon."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlparse


class RpcProxy:
    def __init__(self, upstream_url: str) -> None:
        up = urlparse(upstream_url)
        self.upstream = (up.hostname or "127.0.0.1", up.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """From now on every connection is refused (reset at once) and open ones are dropped."""
        self._up.clear()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # a reset: what a daemon sees of an endpoint that went away
                continue
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self._up.is_set():  # cut while this one was connecting
                    client.close()
                    upstream.close()
                    continue
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._open -= {src, dst}
            src.close()
            dst.close()


@contextlib.contextmanager
def rpc_proxy(upstream_url: str) -> Iterator[RpcProxy]:
    proxy = RpcProxy(upstream_url)
    try:
        yield proxy
    finally:
        proxy.close()
