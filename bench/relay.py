"""A real relay over loopback HTTP: verified orders accepted per second, end to end.

python -m bench.relay      -> bench/results/relay.json
python -m bench.relay --clients 1 --cross-every 0 --rounds 1
    --profile /tmp/relay.txt [--profile-gil]

An anvil devnet with the contracts deployed; 16 providers registered with 100 times the minimum
stake (leases opened during the run lock some) and 16 labs that approved the market; a relay
started as its own process by the CLI (``gpumarket relay``, default limits, a matcher key so
crossing orders become ``openLease``). Orders across 8 GPU models and the 32 signers are signed
before timing and encoded into SubmitOrders frames of
``--batch`` orders; ``--clients`` concurrent RelayClients POST them to ``/v1/orders``. Every order
goes through the relay's whole admission (signature, expiry, nonce floor, stake, duplicates, the
per-signer rate limit) and is written to SQLite (WAL, ``synchronous=FULL``) before it enters the
book; ``relay_orders_per_s`` counts orders answered ``accepted`` over the wall time of the run
(answers are decoded after timing and every order must be accepted). Offers are priced above bids,
so the book rests; one bid in ``--cross-every`` orders crosses and is matched, which the relay's
matcher sends to the chain as ``openLease`` during the run. Two warm-up batches (every provider's
stake read once) are not timed. ``relay_cpu_us_per_order`` and the ``*_cpu_cores`` figures are
CPU time (/proc) of the relay (with the worker processes under it), anvil and this process's
clients during the run.

Baselines in the same run: ``verify_orders_in_process_per_s`` is market.matching.verify_orders
over the same orders in this process (default threads), ``http_roundtrip_per_s`` is ``GET
/healthz`` on the same relay from the same number of clients. The timed orders go in ``--rounds``
rounds (default 4), each timing the in-process baseline over its share and then the relay over the
same share, so that both see the same load on a shared machine; ``relay_vs_in_process_verify`` is
the median of the rounds' ratios (``_min`` and ``_max`` beside it), the two ``_per_s`` figures are
over all rounds. After the run the relay is stopped
(SIGINT: it drains its fills) and its database is read to check every accepted order was kept,
or left the book filled by a lease.
``--profile`` samples the relay with py-spy during the run (collapsed stacks, one line per stack).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import random
import re
import selectors
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.results_file import write
from market.chain.client import MarketClient
from market.chain.deploy import Contracts, MarketParams, deploy
from market.chain.devnet import Devnet
from market.chain.tx import Transactor
from market.matching import Submission, verify_orders
from market.protocol.eip712 import Domain, order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import Bid, Offer, Signed
from market.roles import Lab, Provider
from nodes.wire import OrdersAccepted, OrderStatus, RelayClient, SubmitOrders, decode_as, encode

MODELS = ("H100-80GB", "H200-141GB", "A100-80GB", "A100-40GB", "L40S", "RTX4090", "MI300X", "B200")
PROVIDERS = 16
LABS = 16
USD = 10**6
MIN_STAKE = 100 * USD
PROVIDER_STAKE = 100 * MIN_STAKE
"""Far above the minimum: leases opened during the run lock stake, and no offer may be refused
provider_not_eligible for that (1,796 were with twice the minimum)."""
CROSS_EVERY = 400
"""One bid in this many orders is priced to cross the book (about 0.25% of orders match)."""
WARMUP_BATCHES = 2
ROUNDTRIPS = 3_000
ROUNDS = 4
"""The timed orders are split into this many rounds, each timing the in-process baseline over its
share and then the relay over the same share: on a shared machine the load changes within a run,
and the ratio of each round compares the two under the same load (the figure is their median)."""
MATCHER_KEY_ENV = "BENCH_RELAY_MATCHER_KEY"
REPO = Path(__file__).resolve().parents[1]
READY_DEADLINE_S = 60.0
STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class Market:
    devnet: Devnet
    contracts: Contracts
    domain: Domain
    providers: list[SigningKey]
    labs: list[SigningKey]
    chain_time: int


def open_market(dev: Devnet) -> Market:
    """Deploy, then register the providers and fund the labs (accounts 2.. of the devnet)."""
    w3 = dev.web3()
    contracts = deploy(
        w3, dev.accounts[0], rpc_url=dev.rpc_url, params=MarketParams(min_stake=MIN_STAKE)
    )
    minter = Transactor(w3, dev.accounts[0])
    people = dev.accounts[2 : 2 + PROVIDERS + LABS]
    for acct in people:
        data = contracts.token.encode_abi("mint", args=[acct.address, 10**6 * USD])
        minter.send(contracts.token.address, data, what="mint")
    providers = [SigningKey(bytes(a.key)) for a in people[:PROVIDERS]]
    labs = [SigningKey(bytes(a.key)) for a in people[PROVIDERS:]]
    for acct in people[:PROVIDERS]:
        provider = Provider(MarketClient(w3, contracts, acct), SigningKey(bytes(acct.key)))
        provider.register(stake=PROVIDER_STAKE, endpoint="http://bench")
    for acct in people[PROVIDERS:]:
        Lab(MarketClient(w3, contracts, acct), SigningKey(bytes(acct.key))).fund(2**200)
    reader = MarketClient(w3, contracts)
    return Market(dev, contracts, reader.domain, providers, labs, reader.chain_time())


def make_orders(
    market: Market, count: int, cross_every: int, seed: int = 11
) -> list[Signed[Offer] | Signed[Bid]]:
    """``count`` signed orders, offers and bids alternating, models and signers in turn. Offers ask
    1,001-2,000 per GPU-second and resting bids offer 1-1,000, so the book rests uncrossed; every
    ``cross_every``-th order (none for 0) is a bid at 2,500, which fills against the model's
    cheapest offers."""
    rng = random.Random(seed)
    expiry = market.chain_time + 86_400
    nonces: dict[str, int] = {}
    signed: list[Signed[Offer] | Signed[Bid]] = []
    for i in range(count):
        model = MODELS[(i // 2) % len(MODELS)]
        if i % 2 == 0:
            key = market.providers[(i // 2) % PROVIDERS]
            nonce = nonces[key.address] = nonces.get(key.address, 0) + 1
            offer = Offer(
                key.address, model, rng.randint(1, 8), 80, rng.randint(1_001, 2_000), 60,
                86_400, expiry, nonce,
            )  # fmt: skip
            signed.append(key.sign(market.domain, offer))
        else:
            key = market.labs[(i // 2) % LABS]
            nonce = nonces[key.address] = nonces.get(key.address, 0) + 1
            crossing = cross_every > 0 and i % cross_every == cross_every - 1
            price = 2_500 if crossing else rng.randint(1, 1_000)
            bid = Bid(key.address, model, rng.randint(1, 4), price, 3600, expiry, nonce)
            signed.append(key.sign(market.domain, bid))
    return signed


def frames(orders: list[Signed[Offer] | Signed[Bid]], batch: int) -> list[bytes]:
    return [
        encode(SubmitOrders(tuple(Submission(o) for o in orders[lo : lo + batch])))
        for lo in range(0, len(orders), batch)
    ]


# --- the relay as its own process ---------------------------------------------------------------


class RelayProcess:
    """``python -m nodes.cli relay`` on a free port, its log in ``workdir``; stopped in order.
    ``state``: the options naming its state (default ``--db workdir/relay.sqlite``; a cluster
    instance's ``--store``, ``--cluster``, ... for ``bench.relay_cluster``), ``name`` its log's."""

    def __init__(
        self, market: Market, workdir: Path, state: list[str] | None = None, name: str = "relay"
    ) -> None:
        deployment = workdir / "deployment.json"
        market.contracts.deployment.save(deployment)
        self.db = workdir / "relay.sqlite"
        self.log_path = workdir / f"{name}.log"
        env = dict(os.environ)
        env[MATCHER_KEY_ENV] = "0x" + bytes(market.devnet.accounts[1].key).hex()
        args = [sys.executable, "-m", "nodes.cli", "relay", "--deployment", str(deployment)]
        args += state if state is not None else ["--db", str(self.db)]
        args += ["--matcher-key-env", MATCHER_KEY_ENV]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # no relay outlives a benchmark that was killed
            )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + READY_DEADLINE_S
            while (left := deadline - time.monotonic()) > 0:
                if sel.select(left) and (line := self.proc.stdout.readline()):
                    if found := re.search(rb"relay ready url=(\S+)", line):
                        return found.group(1).decode()
                elif self.proc.poll() is not None:
                    break
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the relay did not become ready: {tail}")

    def cpu_s(self) -> float:
        """CPU seconds of the relay and every process under it (its signature-checking workers
        are children of a forkserver it started)."""
        return sum(_cpu_s(pid) for pid in _tree(self.proc.pid))

    def stop(self) -> int:
        """SIGINT (the relay drains its fills), then SIGTERM, then SIGKILL."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(signum)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.wait()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> list[int]:
    """``root`` and the processes descended from it (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def _metric(text: str, name: str) -> int:
    """A counter's value from Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[-1]))
    return 0


# --- the measurements ---------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    latencies: list[float]
    answers: list[bytes]


async def _send_all(url: str, bodies: list[bytes], clients: int) -> Run:
    """POST every frame, ``clients`` requests in flight at a time (one connection each)."""
    pending: Iterator[int] = iter(range(len(bodies)))
    answers: list[bytes] = [b""] * len(bodies)
    latencies: list[float] = []

    async def worker(client: RelayClient) -> None:
        for i in pending:
            t0 = time.perf_counter()
            status, data = await client.raw("POST", "/v1/orders", bodies[i])
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"batch {i}: HTTP {status}")
            answers[i] = data

    relays = [RelayClient(url, timeout_s=60.0) for _ in range(clients)]
    try:
        for c in relays:  # open each client's connection before timing
            await c.raw("GET", "/healthz")
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in relays))
        seconds = time.perf_counter() - t0
    finally:
        for c in relays:
            await c.close()
    return Run(seconds, latencies, answers)


async def _roundtrips(url: str, count: int, clients: int) -> float:
    """``GET /healthz`` ``count`` times from ``clients`` clients; seconds taken."""
    relays = [RelayClient(url) for _ in range(clients)]
    share = count // clients

    async def worker(client: RelayClient) -> None:
        for _ in range(share):
            status, _ = await client.raw("GET", "/healthz")
            assert status == 200

    try:
        for c in relays:
            await c.raw("GET", "/healthz")
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in relays))
        return time.perf_counter() - t0
    finally:
        for c in relays:
            await c.close()


async def _metrics(url: str) -> str:
    async with RelayClient(url) as client:
        return await client.text("/metrics")


def _accepted(answers: list[bytes]) -> tuple[int, dict[str, int]]:
    refused: dict[str, int] = {}
    accepted = 0
    for data in answers:
        for result in decode_as(data, OrdersAccepted).results:
            if result.status is OrderStatus.ACCEPTED:
                accepted += 1
            else:
                refused[result.status.value] = refused.get(result.status.value, 0) + 1
    return accepted, refused


def _percentile_ms(sorted_s: list[float], q: float) -> float:
    index = min(len(sorted_s) - 1, max(0, round(q * len(sorted_s)) - 1))
    return round(sorted_s[index] * 1e3, 2)


def _profile(pid: int, seconds: float, out: Path, *, gil: bool) -> subprocess.Popen[bytes]:
    """py-spy sampling the relay's busy threads (``gil``: only the one holding the GIL) for
    ``seconds``; collapsed stacks, each headed by its thread, to ``out``."""
    spy = Path(sys.executable).with_name("py-spy")
    args = [str(spy), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    args += ["--rate", "250", "--format", "raw", "--threads", "--output", str(out)]
    args += ["--gil"] if gil else []
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass(frozen=True)
class Settings:
    orders: int = 40_000
    batch: int = 500
    clients: int = 4
    cross_every: int = CROSS_EVERY
    rounds: int = ROUNDS
    profile: Path | None = None
    profile_gil: bool = False


@dataclass
class Round:
    """One round: the in-process baseline over the round's orders, then the relay over them."""

    verify_s: float
    run: Run

    @property
    def ratio(self) -> float:
        return (len(self.run.answers) / self.run.seconds) / (len(self.run.answers) / self.verify_s)


@dataclass
class Observed:
    rounds: list[Round]
    roundtrip_s: float
    cpu_s: tuple[float, float, float]
    """CPU seconds during the relay's rounds: the relay, anvil, this process (the clients)."""
    leases_during_run: int

    @property
    def answers(self) -> list[bytes]:
        return [a for r in self.rounds for a in r.run.answers]

    @property
    def seconds(self) -> float:
        return sum(r.run.seconds for r in self.rounds)

    @property
    def latencies(self) -> list[float]:
        return sorted(t for r in self.rounds for t in r.run.latencies)


def _verify_s(market: Market, orders: list[Signed[Offer] | Signed[Bid]]) -> float:
    t0 = time.perf_counter()
    valid, rejected = verify_orders(market.domain, orders)
    seconds = time.perf_counter() - t0
    assert len(valid) == len(orders)
    assert not rejected
    return seconds


def _observe(
    s: Settings, market: Market, relay: RelayProcess, signed: list[Signed[Offer] | Signed[Bid]]
) -> Observed:
    """Warm up, measure the HTTP baseline, then the rounds: each times in-process verification of
    its share of the orders, then the relay accepting the same share, so both see the same load."""
    bodies = frames(signed, s.batch)
    warm = asyncio.run(_send_all(relay.url, bodies[:WARMUP_BATCHES], 1))
    assert _accepted(warm.answers)[0] == WARMUP_BATCHES * s.batch
    roundtrip_s = asyncio.run(_roundtrips(relay.url, ROUNDTRIPS, s.clients))

    opened = 'gpumarket_relay_fills_total{status="opened"}'
    before = _metric(asyncio.run(_metrics(relay.url)), opened)
    spy = None
    if s.profile is not None:
        spy = _profile(relay.proc.pid, s.orders / 5_000, s.profile, gil=s.profile_gil)
        time.sleep(1.0)  # py-spy attaches
    timed = bodies[WARMUP_BATCHES:]
    per_round = -(-len(timed) // s.rounds)
    rounds: list[Round] = []
    used = [0.0, 0.0, 0.0]
    for lo in range(0, len(timed), per_round):
        first = (WARMUP_BATCHES + lo) * s.batch
        share = signed[first : first + per_round * s.batch]
        verify_s = _verify_s(market, share)
        cpu = (relay.cpu_s(), _cpu_s(market.devnet.pid), time.process_time())
        run = asyncio.run(_send_all(relay.url, timed[lo : lo + per_round], s.clients))
        used[0] += relay.cpu_s() - cpu[0]
        used[1] += _cpu_s(market.devnet.pid) - cpu[1]
        used[2] += time.process_time() - cpu[2]
        rounds.append(Round(verify_s * len(run.answers) * s.batch / len(share), run))
    after = _metric(asyncio.run(_metrics(relay.url)), opened)
    if spy is not None:
        spy.wait(60)
    return Observed(rounds, roundtrip_s, (used[0], used[1], used[2]), after - before)


def measure(s: Settings) -> dict[str, float | int]:
    with Devnet.start(accounts=2 + PROVIDERS + LABS) as dev, tempfile.TemporaryDirectory() as tmp:
        market = open_market(dev)
        total = s.orders + WARMUP_BATCHES * s.batch
        t0 = time.perf_counter()
        signed = make_orders(market, total, s.cross_every)
        sign_s = time.perf_counter() - t0
        relay = RelayProcess(market, Path(tmp))
        try:
            seen = _observe(s, market, relay, signed)
        finally:
            code = relay.stop()
        assert code == 0, f"the relay exited with {code}: {relay.log_path.read_text()[-2000:]}"
        accepted, refused = _accepted(seen.answers)
        assert accepted == s.orders, f"refused: {refused}"
        with sqlite3.connect(relay.db) as db:
            kept = {h for (h,) in db.execute("SELECT hash FROM orders")}
            leased = {
                h
                for table in ("leases", "fills")
                for pair in db.execute(f"SELECT offer_hash, bid_hash FROM {table}")
                for h in pair
            }
            fills = dict(db.execute("SELECT state, COUNT(*) FROM fills GROUP BY state").fetchall())
        stored = len(kept)
        # An order leaves the store only when it leaves the book: here, filled (a fill the matcher
        # took, or a lease the chain reported).
        lost = {order_hash(market.domain, o.message) for o in signed} - kept - leased
        assert not lost, f"{len(lost)} accepted orders neither stored nor leased"

    latencies = seen.latencies
    relay_per_s = accepted / seen.seconds
    verify_per_s = s.orders / sum(r.verify_s for r in seen.rounds)
    ratios = [round(r.ratio, 3) for r in seen.rounds]
    return {
        "orders": s.orders,
        "batch_size": s.batch,
        "clients": s.clients,
        "signers": PROVIDERS + LABS,
        "gpu_models": len(MODELS),
        "rounds": len(seen.rounds),
        "relay_orders_per_s": round(relay_per_s, 1),
        "relay_seconds": round(seen.seconds, 3),
        "verify_orders_in_process_per_s": round(verify_per_s, 1),
        "relay_vs_in_process_verify": round(statistics.median(ratios), 3),
        "relay_vs_in_process_verify_min": min(ratios),
        "relay_vs_in_process_verify_max": max(ratios),
        "http_roundtrip_per_s": round(ROUNDTRIPS // s.clients * s.clients / seen.roundtrip_s, 1),
        "batch_latency_p50_ms": _percentile_ms(latencies, 0.50),
        "batch_latency_p99_ms": _percentile_ms(latencies, 0.99),
        "batches": len(latencies),
        "relay_cpu_us_per_order": round(seen.cpu_s[0] / accepted * 1e6, 1),
        "relay_cpu_cores": round(seen.cpu_s[0] / seen.seconds, 3),
        "anvil_cpu_cores": round(seen.cpu_s[1] / seen.seconds, 3),
        "client_cpu_cores": round(seen.cpu_s[2] / seen.seconds, 3),
        "leases_opened_during_run": seen.leases_during_run,
        "fills_matched": sum(fills.values()),
        "leases_opened": fills.get("opened", 0),
        "fills_not_opened": sum(n for state, n in fills.items() if state != "opened"),
        "orders_stored": stored,
        "sign_per_s": round(total / sign_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=Settings.orders, help="timed orders")
    parser.add_argument("--batch", type=int, default=Settings.batch, help="orders per request")
    parser.add_argument("--clients", type=int, default=Settings.clients, help="concurrent clients")
    parser.add_argument(
        "--cross-every",
        type=int,
        default=CROSS_EVERY,
        help="one crossing bid per N orders (0: none)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="baseline-then-relay rounds the orders are split into",
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw stacks of the relay")
    parser.add_argument("--profile-gil", action="store_true", help="sample only the GIL holder")
    args = parser.parse_args()
    settings = Settings(
        args.orders,
        args.batch,
        args.clients,
        args.cross_every,
        args.rounds,
        args.profile,
        args.profile_gil,
    )
    figures: dict[str, float | int | str] = dict(measure(settings))
    path = write("relay", figures)
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
