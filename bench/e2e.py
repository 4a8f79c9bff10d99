"""The whole market as processes: leases opened, run, receipted and settled per second.

python -m bench.e2e [--leases 100] [--providers 2] [--labs 2]   -> bench/results/e2e.json

A devnet mining each transaction at once (and a block a second besides, so chain time moves when
nothing is sent), a relay with a matcher key, ``--providers`` provider agents with plenty of
GPUs and ``--labs`` lab clients (``gpumarket lab --exit-when-done``) sharing ``--leases`` jobs,
all separate processes on loopback (:class:`nodes.localnet.LocalMarket`), on a deployment whose
claim window (600 s) no slow round can outlast. Every job is a command (``/bin/echo`` of its own
name: a process per job on the provider, checked by the lab's rerun, so that the figure is the
market's cost per lease rather than a workload's) on a 1-GPU lease of ``LEASE_S`` seconds;
``--kind matmul`` runs one 8x8 Freivalds-checked product instead (a Python process with numpy
per job on each side: far more CPU per lease on this machine).
The clock starts when the labs start, all at once (bids signed and sent), and stops when the last
lab exits 0, which it does only once every one of its leases is closed on-chain and its refund
withdrawn; the ledger is then checked (every lease closed, every lease paid exactly its last
receipt's usage).

``leases_settled_per_s`` is leases over that wall time; ``seconds_for_<N>_leases`` the time
itself, for the N run (the goal is 1,000 leases in under 25 s: run ``--leases 1000`` to measure
it; the figure is never extrapolated). ``lease_seconds`` is the leases' own duration, a floor
under the wall time. The baseline in the same run, ``open_lease_tx_per_s``, is how fast this
devnet mines ``openLease`` transactions sent one after the other from one key (as the relay's
matcher sent them before it opened leases in batches of up to 100): the machine's speed that
day. ``relay_orders_per_s`` (and its ratio to in-process verification) is :mod:`bench.relay`'s
figure, measured in the same run.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.relay import Settings, measure
from bench.results_file import write
from market.chain.client import MarketClient
from market.chain.deploy import MarketParams
from market.chain.devnet import Devnet
from market.protocol import codec
from market.protocol.types import Lease, LeaseStatus, Receipt, Signed
from market.roles import Lab, Provider
from nodes.localnet import USD, LocalMarket, command_job, matmul_job

MODEL = "H100-80GB"
LEASE_S = 5
BASELINE_OPENS = 50
PARAMS = MarketParams(
    min_stake=100 * USD, unbonding_delay=60, claim_window=600, challenge_window=10
)


def _miner(dev: Devnet, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        dev.mine()


def _baseline(net: LocalMarket) -> float:
    """openLease transactions per second, sent one after the other (provider 5, lab 3)."""
    d = net.contracts.deployment
    p_acct, l_acct = net.provider_account(5), net.lab_account(2)
    for acct in (p_acct, l_acct):
        net.fund(acct)
    provider = Provider.connect(d, "0x" + p_acct.key.hex())
    lab = Lab.connect(d, "0x" + l_acct.key.hex())
    provider.register(stake=provider.client.min_stake(), endpoint="x")
    lab.fund(10**15)
    offer = provider.offer("B-80GB", gpus=10_000, memory_gib=80, price_per_gpu_second=1,
                           min_duration=1, max_duration=3600)  # fmt: skip
    bids = [lab.bid("B-80GB", gpus=1, max_price_per_gpu_second=1, duration=10, nonce=i)
            for i in range(BASELINE_OPENS)]  # fmt: skip
    t0 = time.perf_counter()
    for bid in bids:
        lab.open(offer, bid, 1, use_permit=False)
    return BASELINE_OPENS / (time.perf_counter() - t0)


def _job(kind: str, lab: int, j: int) -> str:
    if kind == "matmul":
        return matmul_job(MODEL, gpus=1, duration=LEASE_S, seed=1000 * lab + j, n=8, rounds=1)
    return command_job(MODEL, ["/bin/echo", f"lab{lab}-job{j}"], gpus=1, duration=LEASE_S)


def run(leases: int, providers: int, labs: int, kind: str) -> dict[str, float | int | str]:
    folder = Path(tempfile.mkdtemp(prefix="gpumarket-e2e-"))
    with Devnet.start(accounts=12) as dev:
        stop = threading.Event()
        miner = threading.Thread(target=_miner, args=(dev, stop), daemon=True)
        miner.start()
        net = LocalMarket(dev, folder, params=PARAMS, fund_usd=1_000_000)
        try:
            baseline = _baseline(net)
            relay = net.start_relay()
            for i in range(providers):
                net.start_provider(i, [relay.url], model=MODEL, gpus=leases, price=100 + i,
                                   agent="max_unpaid_periods = 5\n")  # fmt: skip
            per_lab = [leases // labs + (1 if i < leases % labs else 0) for i in range(labs)]
            for i in range(labs):
                net.fund(net.lab_account(i))
            jobs = [[_job(kind, i, j) for j in range(count)] for i, count in enumerate(per_lab)]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(labs) as pool:  # independent labs start together
                daemons = list(
                    pool.map(lambda i: net.start_lab(i, [relay.url], jobs[i]), range(labs))
                )
            codes = [d.wait(3600) for d in daemons]
            elapsed = time.perf_counter() - t0
            if any(codes):
                raise SystemExit(f"a lab failed: exit codes {codes}; logs in {folder}")
            closed = _check(net, leases)
        finally:
            stop.set()
            net.stop_all()
    return {
        "leases": leases,
        "providers": providers,
        "labs": labs,
        "job_kind": kind,
        "lease_seconds": LEASE_S,
        f"seconds_for_{leases}_leases": round(elapsed, 2),
        "leases_settled_per_s": round(closed / elapsed, 2),
        "open_lease_tx_per_s": round(baseline, 1),
    }


def _check(net: LocalMarket, leases: int) -> int:
    """Every lease of the run closed and paid exactly its last receipt's usage; how many."""
    reader = MarketClient.connect(net.contracts.deployment)
    checked = 0
    for path in sorted(net.folder.glob("provider*/state.sqlite")):
        with sqlite3.connect(path) as db:
            for (terms,) in db.execute("SELECT terms FROM leases"):
                lease = codec.decode_as(terms, Lease)
                row = db.execute(
                    "SELECT signed FROM receipts WHERE lease_id = ? ORDER BY seq DESC LIMIT 1",
                    (lease.id,),
                ).fetchone()
                usage = 0 if row is None else codec.decode_as(
                    row[0], Signed[Receipt]).message.gpu_seconds_cumulative  # fmt: skip
                state = reader.lease_state(lease.id)
                if state.status is not LeaseStatus.CLOSED:
                    raise SystemExit(f"lease 0x{lease.id.hex()} is {state.status.name}")
                if state.paid != lease.price_per_gpu_second * usage:
                    raise SystemExit(f"lease 0x{lease.id.hex()} paid {state.paid}, not its usage")
                checked += 1
    if checked != leases:
        raise SystemExit(f"{checked} leases settled, {leases} expected")
    return checked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e")
    parser.add_argument("--leases", type=int, default=100)
    parser.add_argument("--providers", type=int, default=2)
    parser.add_argument("--labs", type=int, default=2)
    parser.add_argument("--kind", choices=("command", "matmul"), default="command")
    args = parser.parse_args(argv)
    figures = run(args.leases, args.providers, args.labs, args.kind)
    relay = measure(Settings())  # bench.relay: verified orders accepted per second, loopback
    figures["relay_orders_per_s"] = relay["relay_orders_per_s"]
    figures["relay_vs_in_process_verify"] = relay["relay_vs_in_process_verify"]
    path = write("e2e", figures)
    for key, value in sorted(figures.items()):
        print(f"{key:28} {value}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
