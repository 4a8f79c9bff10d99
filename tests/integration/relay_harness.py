"""Relays in-process for tests: an event loop in a background thread runs relays and clients;
tests call into it and wait on its results with deadlines."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import selectors
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from msgspec.structs import replace

from market.chain.deploy import Deployment
from market.chain.tx import Transactor
from market.matching import Submission
from market.protocol.types import Bid, Offer, Signed
from nodes.relay import Limits, Relay, RelayConfig
from nodes.wire import BookSnapshot, Message, OrderResult, OrderStatus, RelayClient
from tests.integration.conftest import MIN_STAKE, MarketEnv
from tests.waiting import wait_until

T = TypeVar("T")
MODEL = "H100-80GB"
CALL_TIMEOUT_S = 30.0
PROVIDER, UNREGISTERED, UNDERSTAKED = 1, 2, 3
LAB, OTHER_LAB = 4, 5
OUTSIDER = 8
"""A matcher the relay knows nothing about (the relays' own matcher key is account 7)."""


def fund_market(env: MarketEnv) -> MarketEnv:
    """Provider 1 registered and staked, provider 3 registered below the minimum, labs 4 and 5
    funded; provider 2 stays unregistered."""
    env.provider(PROVIDER).register(stake=MIN_STAKE * 2, endpoint="http://p1")
    env.provider(UNDERSTAKED).register(stake=MIN_STAKE * 2, endpoint="http://p3")
    env.provider(UNDERSTAKED).client.request_unstake(MIN_STAKE + 1)
    for lab in (LAB, OTHER_LAB):
        env.lab(lab).fund(2**200)
    return env


def reorg(market: MarketEnv, depth: int) -> int:
    """Replace the last ``depth`` blocks with empty ones; returns the first block whose hash
    changed (an empty block mined again in the same second may come back the same block)."""
    reader = market.client()
    head = reader.head().number
    before = reader.block_hashes(range(head - depth + 1, head + 1))
    market.devnet.rpc("anvil_reorg", [depth, []])
    after = reader.block_hashes(list(before))
    return min(n for n in before if after[n] != before[n])


def admit_then_revoke(
    relay: RelayHandle, env: MarketEnv, lab: int, *bids: Signed[Bid], allowance: int = 0
) -> tuple[OrderResult, ...]:
    """Submit ``bids`` of lab ``lab`` approving the market enough to be admitted, then cut its
    allowance to ``allowance``: a lab that lost its approval after admission, which only the
    matcher's revert paths can find. Submit the offers they cross afterwards."""
    env.lab(lab).fund(2**200)
    results = relay.submit(*bids)
    token, market = env.contracts.token, env.contracts.market.address
    data = token.encode_abi("approve", args=[market, allowance])  # Lab.fund only ever raises it
    Transactor(env.devnet.web3(), env.devnet.accounts[lab]).send(token.address, data, what="cut")
    assert env.client().allowance(env.lab(lab).address) == allowance
    return results


def offer(env: MarketEnv, provider: int = PROVIDER, **kw: Any) -> Signed[Offer]:
    args: dict[str, Any] = {"gpus": 8, "memory_gib": 80, "price_per_gpu_second": 3}
    args |= {"min_duration": 60, "max_duration": 86_400} | kw
    return env.provider(provider).offer(MODEL, **args)


def bid(env: MarketEnv, lab: int = LAB, **kw: Any) -> Signed[Bid]:
    args: dict[str, Any] = {"gpus": 4, "max_price_per_gpu_second": 5, "duration": 3600} | kw
    return env.lab(lab).bid(MODEL, **args)


def ready_line(proc: subprocess.Popen[str], deadline_s: float) -> str:
    """A ``gpumarket relay`` process's readiness line, read with a deadline (never a sleep)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + deadline_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"relay exited with {proc.wait()} before it was ready")
            if line.startswith("relay ready "):
                return line.strip()
    raise AssertionError(f"no readiness line within {deadline_s}s")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="relay-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread (to read a relay's state without racing it)."""

        async def inside() -> T:
            return fn()

        return self.run(inside())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class RelayHandle:
    relay: Relay
    lt: LoopThread
    client: RelayClient
    running: bool = True
    recorders: list[Recorder] = field(default_factory=list)

    def do(self, fn: Callable[[RelayClient], Awaitable[T]]) -> T:
        async def call() -> T:
            return await fn(self.client)

        return self.lt.run(call())

    def submit(self, *orders: Submission | Signed[Offer] | Signed[Bid]) -> tuple[OrderResult, ...]:
        subs = [o if isinstance(o, Submission) else Submission(o) for o in orders]
        return self.do(lambda c: c.submit(subs))

    def book(self, model: str = MODEL) -> BookSnapshot:
        return self.do(lambda c: c.book(model))

    def raw(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        return self.do(lambda c: c.raw(method, path, body))

    def state(self, fn: Callable[[Relay], T]) -> T:
        return self.lt.call(lambda: fn(self.relay))

    def record(self) -> Recorder:
        """Start following this relay's event stream."""
        recorder = Recorder(self)
        self.recorders.append(recorder)
        return recorder.start()

    def stop(self) -> None:
        for recorder in self.recorders:
            recorder.stop()
        if self.running:
            self.running = False
            self.lt.run(self.relay.stop())
            self.lt.run(self.client.close())


class Recorder:
    """Every event a relay streams, collected on the loop from the moment :meth:`start` returns."""

    def __init__(self, handle: RelayHandle) -> None:
        self.handle = handle
        self.events: list[Message] = []
        self._connected = asyncio.Event()
        self._future: concurrent.futures.Future[None] | None = None

    async def _follow(self) -> None:
        async with self.handle.client.stream() as stream:
            self._connected.set()
            while True:
                self.events.append(await stream.receive(timeout_s=3600))

    def start(self) -> Recorder:
        lt = self.handle.lt
        self._future = asyncio.run_coroutine_threadsafe(self._follow(), lt.loop)
        lt.run(asyncio.wait_for(self._connected.wait(), CALL_TIMEOUT_S))
        return self

    def seen(self) -> list[Message]:
        return self.handle.lt.call(lambda: list(self.events))

    def wait_for(self, predicate: Callable[[list[Message]], bool], what: str) -> list[Message]:
        wait_until(lambda: predicate(self.seen()), 20, what)
        return self.seen()

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()


class Relays:
    """Starts relays against a test's market; stops every one at the end."""

    def __init__(self, env: MarketEnv, tmp_path: Path, lt: LoopThread) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.lt = lt
        self.started: list[RelayHandle] = []

    def config(self, name: str = "relay", **changes: Any) -> RelayConfig:
        base = RelayConfig(db_path=self.tmp_path / f"{name}.sqlite", chain_poll_s=0.02)
        return replace(base, **changes)

    def start(
        self,
        config: RelayConfig | None = None,
        *,
        deployment: Deployment | None = None,
        **changes: Any,
    ) -> RelayHandle:
        """A relay on this test's market (``deployment``: reached another way, e.g. a proxy)."""
        cfg = config or self.config(**changes)
        relay = Relay(cfg, deployment or self.env.contracts.deployment)
        self.lt.run(relay.start())
        handle = RelayHandle(relay, self.lt, RelayClient(relay.url))
        self.started.append(handle)
        return handle

    def matcher_key(self, index: int = 7) -> str:
        return "0x" + bytes(self.env.devnet.accounts[index].key).hex()

    def stop_all(self) -> None:
        for handle in self.started:
            handle.stop()


@contextlib.contextmanager
def open_relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    """Each test file's ``relays`` fixture: ``with open_relays(env, tmp_path) as r: yield r``."""
    lt = LoopThread()
    started = Relays(env, tmp_path, lt)
    try:
        yield started
    finally:
        try:
            started.stop_all()
        finally:
            lt.close()


def statuses(results: Sequence[OrderResult]) -> list[OrderStatus]:
    return [r.status for r in results]


def small_limits(**changes: Any) -> Limits:
    return replace(Limits(), **changes)


__all__ = [
    "LAB",
    "MODEL",
    "OTHER_LAB",
    "OUTSIDER",
    "PROVIDER",
    "UNDERSTAKED",
    "UNREGISTERED",
    "admit_then_revoke",
    "LoopThread",
    "Recorder",
    "RelayHandle",
    "Relays",
    "bid",
    "fund_market",
    "offer",
    "open_relays",
    "ready_line",
    "small_limits",
    "statuses",
]
