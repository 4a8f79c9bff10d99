"""The lab's audit of training jobs measured end to end, through the daemons.

python -m bench.audit_e2e [--cheated 100] [--honest 20] [--skip 0.1] [--samples 44]
    -> bench/results/audit_e2e.json (audit_e2e_samples<s>.json at another --samples)

A devnet, a relay, two provider agents and three lab clients, all processes on loopback
(:class:`nodes.localnet.LocalMarket`). Every job is the same training run shape
(:mod:`nodes.jobs.train`, ``SEGMENTS`` segments, a seed of its own) on a 1-GPU lease. One
provider is honest; the other is ``bench.cheating_provider``, the agent with its training jobs
faking ``--skip`` of their segments (10 of 100 by default) while signing receipts over that
output as an honest agent would. Labs 0 and 1 lease only from the cheater (``--cheated`` jobs
between them), lab 2 only from the honest provider (``--honest`` jobs); each lab re-executes
``--samples`` segments per receipt period (``audit_samples``, the lab's default 44), drawn from
a seed fixed by the signed receipt, and stops paying, terminates and disputes on a mismatch.

* ``detection_rate``: cheated leases the lab refused for a re-executed segment that did not
  match, over cheated leases (goal >= 0.99 at the default rate); ``missed`` the cheated leases
  whose job the lab verified and paid in full. A run in which any job did not finish within its
  lease (``LEASE_S``; the lab ends a lease as soon as its job is verified or refused) is an
  error, not a figure; ``expected_detection`` is the
  hypergeometric bound for one period holding the whole job (the job is fast, so its output
  usually arrives in one period): ``1 - C(S - F, s) / C(S, s)`` for ``S`` segments, ``F`` faked
  and ``s`` samples.
* ``false_alarms``: honest leases the lab failed for any reason (goal 0).
* ``cheated_paid``: tokens the cheater was paid by the time the labs exit (the labs dispute its
  optimistic claims; with no arbiter named in the bids a dispute is decided at its ruling
  deadline, past the end of this run).
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.cheating_provider import MODULE, SKIP_ENV
from bench.results_file import write
from market.chain.client import MarketClient
from market.chain.devnet import Devnet
from market.protocol.types import Lease
from nodes.jobs.spec import TrainParams
from nodes.jobs.train import fake_segments
from nodes.lab.config import DEFAULT_SAMPLES
from nodes.localnet import LocalMarket, train_job

ROOT = Path(__file__).resolve().parents[1]
HONEST, CHEATER = "T0-80GB", "T1-80GB"
LEASE_S = 60
SEGMENTS, STEPS, WIDTH = 100, 5, 8
PRICE = 100


def _miner(dev: Devnet, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        dev.mine()


def expected_detection(segments: int, faked: int, samples: int) -> float:
    """The chance that ``samples`` distinct segments of ``segments`` include one of ``faked``."""
    s = min(samples, segments)
    return 1 - math.comb(segments - faked, s) / math.comb(segments, s)


def _outcomes(folder: Path, lab: str) -> list[tuple[str, str]]:
    """Each lease's job state and failure (empty when none), as the lab recorded them."""
    with sqlite3.connect(folder / lab / "state.sqlite") as db:
        rows = db.execute("SELECT job_state, failure FROM lab_leases").fetchall()
    return [(str(state), str(failure)) for state, failure in rows]


def run(cheated: int, honest: int, skip: float, samples: int) -> dict[str, float | int | str]:
    folder = Path(tempfile.mkdtemp(prefix="gpumarket-audit-"))
    with Devnet.start(accounts=12) as dev:
        stop = threading.Event()
        threading.Thread(target=_miner, args=(dev, stop), daemon=True).start()
        net = LocalMarket(dev, folder, fund_usd=1_000_000)
        try:
            relay = net.start_relay()
            net.start_provider(0, [relay.url], model=HONEST, gpus=honest, price=PRICE)
            path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
            cheater = net.start_provider(
                1, [relay.url], model=CHEATER, gpus=cheated, price=PRICE, module=MODULE,
                env={SKIP_ENV: str(skip), "PYTHONPATH": path},
            )  # fmt: skip
            config = f"audit_samples = {samples}\n"

            def jobs(model: str, first: int, count: int) -> list[str]:
                return [
                    train_job(
                        model,
                        gpus=1,
                        duration=LEASE_S,
                        seed=first + j,
                        segments=SEGMENTS,
                        steps=STEPS,
                        width=WIDTH,
                        max_price=PRICE,
                    )
                    for j in range(count)
                ]

            half = cheated // 2
            plans = [
                (0, jobs(CHEATER, 0, half)),
                (1, jobs(CHEATER, half, cheated - half)),
                (2, jobs(HONEST, cheated, honest)),
            ]
            for i, _ in plans:  # one faucet key: fund before the labs start together
                net.fund(net.lab_account(i))
            t0 = time.perf_counter()
            with ThreadPoolExecutor(len(plans)) as pool:
                labs = list(
                    pool.map(
                        lambda p: net.start_lab(p[0], [relay.url], p[1], lab_config=config),
                        plans,
                    )
                )
            codes = [d.wait(3600) for d in labs]
            elapsed = time.perf_counter() - t0
            if any(codes):
                raise SystemExit(f"a lab failed: exit codes {codes}; logs in {folder}")
            reader = MarketClient.connect(net.contracts.deployment)
            leases: list[Lease] = [
                e.args["lease"] for e in reader.events() if e.name == "LeaseOpened"
            ]
            cheated_leases = [lease for lease in leases if lease.provider == cheater.address]
            states = reader.lease_states([lease.id for lease in cheated_leases])
            cheated_paid = sum(state.paid for state in states.values())
        finally:
            stop.set()
            net.stop_all()
    outcomes = _outcomes(folder, "lab0") + _outcomes(folder, "lab1")
    caught = sum("(re-executed)" in failure for _, failure in outcomes)
    other = sum(bool(failure) and "(re-executed)" not in failure for _, failure in outcomes)
    missed = sum(state == "finished" and not failure for state, failure in outcomes)
    unfinished = len(outcomes) - caught - other - missed
    honest_outcomes = _outcomes(folder, "lab2")
    false_alarms = sum(bool(failure) for _, failure in honest_outcomes)
    faked = len(fake_segments(TrainParams(0, SEGMENTS, STEPS, WIDTH), skip))
    if len(cheated_leases) != cheated or len(outcomes) != cheated:
        raise SystemExit(f"{len(cheated_leases)} cheated leases opened, {cheated} expected")
    if unfinished or sum(state == "finished" for state, _ in honest_outcomes) != honest:
        raise SystemExit(f"jobs did not finish within their leases; logs in {folder}")
    return {
        "cheated_leases": cheated,
        "honest_leases": honest,
        "segments": SEGMENTS,
        "faked_segments": faked,
        "audit_samples": samples,
        "caught": caught,
        "missed": missed,
        "other_failures": other,
        "detection_rate": round(caught / cheated, 4),
        "expected_detection": round(expected_detection(SEGMENTS, faked, samples), 4),
        "false_alarms": false_alarms,
        "cheated_paid": cheated_paid,
        "seconds": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_e2e")
    parser.add_argument("--cheated", type=int, default=100)
    parser.add_argument("--honest", type=int, default=20)
    parser.add_argument("--skip", type=float, default=0.1)
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    args = parser.parse_args(argv)
    figures = run(args.cheated, args.honest, args.skip, args.samples)
    name = "audit_e2e" if args.samples == DEFAULT_SAMPLES else f"audit_e2e_samples{args.samples}"
    path = write(name, figures)
    for key, value in sorted(figures.items()):
        print(f"{key:22} {value}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
