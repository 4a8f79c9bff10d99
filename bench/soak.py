"""Soak: a long market round through random crashes and RPC outages, every lease audited.

python -m bench.soak [--kills 50] [--outages 5] [--seed 1] [--labs 2] [--jobs 3]
    -> bench/results/soak.json

A devnet (a block a second), a relay and ``PROVIDERS`` provider agents, each with 2 GPUs, and
lab clients in waves: ``--labs`` slots, each running one lab (``gpumarket lab
--exit-when-done``, a fresh account and state) with ``--jobs`` 1-GPU command jobs on
``LEASE_S``-second leases; when a lab's round ends (exit 0) the next wave's lab takes its slot.
Every daemon reaches the chain through one TCP proxy (:mod:`bench.rpc_proxy`), the relay
included. Meanwhile a seeded schedule of ``--kills`` SIGKILLs and ``--outages`` RPC outages runs
one event after another, a random pause between them: a kill picks a kind (relay, provider,
lab) and a running daemon of it at random, SIGKILLs it and restarts it (same config and state)
after a random down time; an outage cuts the proxy for a random length (``OUTAGE_S``), and
sometimes kills a daemon while the chain is away, restarting it once the chain is back. No lab
is started during an outage.

Then the end: no new wave, everything running, the labs' rounds end, every lease is closed
on-chain and the providers have withdrawn; every daemon is stopped with SIGTERM and the ledger
audited (:mod:`bench.soak_audit`, where ``lost_pay`` and ``double_claims`` are defined). A lab
exiting non-zero or a daemon that does not come back is counted (``lab_failures``,
``restart_failures``) and its log tail printed.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.results_file import write
from bench.rpc_proxy import RpcProxy, rpc_proxy
from bench.soak_audit import Audit, audit
from market.chain.client import MarketClient
from market.chain.devnet import Devnet
from market.protocol.types import LeaseStatus
from nodes.errors import DaemonDidNotStart
from nodes.localnet import MAX_PROVIDERS, Daemon, LocalMarket, command_job

MODEL = "H100-80GB"
PROVIDERS = 3
LEASE_S = 8
MAX_LAB_ACCOUNTS = 40
OUTAGE_S = (2.0, 12.0)
DOWN_S = (0.0, 2.0)
PAUSE_S = (0.5, 3.0)
SETTLE_S = 600.0


def _job(lab: int, j: int) -> str:
    code = f"import time; time.sleep(1); print('lab{lab} job{j}')"
    return command_job(MODEL, ["python", "-c", code], gpus=1, duration=LEASE_S)


@dataclass
class Soak:
    net: LocalMarket
    proxy: RpcProxy
    rng: random.Random
    jobs: int
    relay: Daemon
    providers: list[Daemon]
    slots: list[Daemon | None]
    max_labs: int = MAX_LAB_ACCOUNTS
    """Labs over the whole run (each a fresh account): no wave past it."""
    next_lab: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    kills_in_outage: int = 0
    outages: list[float] = field(default_factory=list)
    waves: int = 0
    lab_failures: int = 0
    restart_failures: int = 0
    down: set[str] = field(default_factory=set)
    """The daemons killed on purpose and not yet restarted."""
    log: Callable[[str], None] = print

    def start_lab(self, slot: int) -> None:
        if self.next_lab >= self.max_labs:
            self.slots[slot] = None
            return
        i, self.next_lab = self.next_lab, self.next_lab + 1
        jobs = [_job(i, j) for j in range(self.jobs)]
        self.slots[slot] = self.net.start_lab(i, [self.relay.url], jobs, rpc_url=self.proxy.url)
        self.waves += 1

    def tend(self, *, new_waves: bool) -> None:
        """Replace each lab whose round ended by the next wave's; restart one that failed."""
        for slot, lab in enumerate(self.slots):
            if lab is None or lab.proc is None or lab.proc.poll() is None or lab.name in self.down:
                continue
            if lab.proc.returncode == 0:
                if new_waves:
                    self.start_lab(slot)
                continue
            self.lab_failures += 1
            tail = lab.log.read_text(encoding="utf-8")[-1500:]
            self.log(f"{lab.name} exited {lab.proc.returncode}; its log ends:\n{tail}")
            self.restart(lab)

    def wait(self, seconds: float, *, new_waves: bool) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.tend(new_waves=new_waves)
            time.sleep(min(0.2, left))  # a chaos pause, not a wait for state

    def restart(self, daemon: Daemon) -> None:
        self.down.discard(daemon.name)
        try:
            self.net.restart(daemon)
        except DaemonDidNotStart as exc:
            self.restart_failures += 1
            self.log(f"restart failed, trying again: {exc}")
            self.net.restart(daemon)

    def victim(self) -> tuple[str, Daemon] | None:
        kinds = {
            "relay": [self.relay],
            "provider": self.providers,
            "lab": [d for d in self.slots if d is not None],
        }
        running = {k: [d for d in ds if d.running] for k, ds in kinds.items()}
        choices = [k for k, ds in running.items() if ds]
        if not choices:
            return None
        if untried := [k for k in choices if not self.kills[k]]:
            choices = untried  # every kind is killed early, however short the run
        kind = self.rng.choice(choices)
        return kind, self.rng.choice(running[kind])

    def kill(self) -> Daemon | None:
        """SIGKILL a random running daemon; the daemon, or None when none was running."""
        picked = self.victim()
        if picked is None:
            return None
        kind, daemon = picked
        daemon.kill()
        assert daemon.proc is not None
        if daemon.proc.returncode == 0:  # a lab whose round had just ended: not a kill
            return None
        self.kills[kind] += 1
        self.down.add(daemon.name)
        self.log(f"kill {daemon.name} ({sum(self.kills.values())})")
        return daemon

    def kill_event(self) -> None:
        daemon = self.kill()
        if daemon is not None:
            self.wait(self.rng.uniform(*DOWN_S), new_waves=True)
            self.restart(daemon)

    def outage_event(self) -> None:
        length = self.rng.uniform(*OUTAGE_S)
        self.proxy.cut()
        self.log(f"outage {len(self.outages) + 1}: {length:.1f} s")
        t0 = time.monotonic()
        victim = None
        if self.rng.random() < 0.5:
            self.wait(self.rng.uniform(0, length / 2), new_waves=False)
            victim = self.kill()
            self.kills_in_outage += victim is not None
        self.wait(length - (time.monotonic() - t0), new_waves=False)
        self.proxy.restore()
        self.outages.append(time.monotonic() - t0)
        if victim is not None:
            self.restart(victim)

    def settle(self, deadline_s: float) -> None:
        """Everything back, the last waves' rounds ended, every lease closed and paid out."""
        deadline = time.monotonic() + deadline_s
        for d in (self.relay, *self.providers):
            if not d.running:
                self.restart(d)

        def left() -> float:
            if (t := deadline - time.monotonic()) <= 0:
                raise SystemExit(f"the market did not settle; logs in {self.net.folder}")
            return t

        while any(d is not None and d.running for d in self.slots):
            self.wait(min(1.0, left()), new_waves=False)
        self.tend(new_waves=False)
        reader = MarketClient.connect(self.net.contracts.deployment)
        while True:
            opened = [e.args["lease"] for e in reader.events() if e.name == "LeaseOpened"]
            states = reader.lease_states([lease.id for lease in opened])
            if all(s.status is LeaseStatus.CLOSED for s in states.values()):
                break
            time.sleep(min(1.0, left()))  # polling the chain with a deadline
        while any(reader.withdrawable(d.address) for d in self.providers):
            time.sleep(min(1.0, left()))


def run(
    kills: int,
    outages: int,
    seed: int,
    labs: int = 2,
    jobs: int = 3,
    *,
    waves: int = MAX_LAB_ACCOUNTS,
    quiet: bool = False,
) -> tuple[dict[str, float | int | str], Audit]:
    """The campaign; its figures and the audit (``audit.findings`` explain any failed check).
    ``waves`` caps the labs started over the run (``labs`` of them start at once)."""
    if not labs <= waves <= MAX_LAB_ACCOUNTS:
        raise ValueError(f"waves must be from labs ({labs}) to {MAX_LAB_ACCOUNTS}")
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="gpumarket-soak-"))
    accounts = 2 + MAX_PROVIDERS + MAX_LAB_ACCOUNTS
    log: Callable[[str], None] = (lambda _: None) if quiet else print
    t0 = time.monotonic()
    with Devnet.start(accounts=accounts, block_time=1) as dev, rpc_proxy(dev.rpc_url) as proxy:
        net = LocalMarket(dev, folder, fund_usd=100_000)
        try:
            relay = net.start_relay(rpc_url=proxy.url)
            providers = [
                net.start_provider(i, [relay.url], model=MODEL, gpus=2, rpc_url=proxy.url)
                for i in range(PROVIDERS)
            ]
            soak = Soak(net, proxy, rng, jobs, relay, providers, [None] * labs, waves, log=log)
            for slot in range(labs):
                soak.start_lab(slot)
            events = ["kill"] * kills + ["outage"] * outages
            rng.shuffle(events)
            t_chaos = time.monotonic()
            for event in events:
                soak.wait(rng.uniform(*PAUSE_S), new_waves=True)
                if event == "kill":
                    soak.kill_event()
                else:
                    soak.outage_event()
            chaos_s = time.monotonic() - t_chaos
            soak.settle(SETTLE_S)
        finally:
            codes = {d.name: d.terminate() for d in net.daemons if d.running}
        result = audit(net)
    unclean = sorted(name for name, code in codes.items() if code != 0)
    figures: dict[str, float | int | str] = {
        "seed": seed,
        "providers": PROVIDERS,
        "lab_slots": labs,
        "jobs_per_lab": jobs,
        "lease_seconds": LEASE_S,
        "lab_waves": soak.waves,
        "kills": sum(soak.kills.values()),
        "kills_relay": soak.kills["relay"],
        "kills_provider": soak.kills["provider"],
        "kills_lab": soak.kills["lab"],
        "kills_during_outage": soak.kills_in_outage,
        "outages": len(soak.outages),
        "outage_seconds_total": round(sum(soak.outages), 1),
        "outage_seconds_max": round(max(soak.outages, default=0.0), 1),
        "outage_lengths_s": " ".join(f"{s:.1f}" for s in soak.outages),
        "lab_failures": soak.lab_failures,
        "restart_failures": soak.restart_failures,
        "unclean_stops": len(unclean),
        "chaos_seconds": round(chaos_s, 1),
        "wall_seconds": round(time.monotonic() - t0, 1),
        **result.figures(),
    }
    for line in result.findings:
        log(line)
    if unclean:
        log(f"not stopped by SIGTERM with exit 0: {unclean}; logs in {folder}")
    return figures, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--outages", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--labs", type=int, default=2, help="lab slots (labs at once)")
    parser.add_argument("--jobs", type=int, default=3, help="1-GPU jobs per lab")
    args = parser.parse_args(argv)
    figures, result = run(args.kills, args.outages, args.seed, args.labs, args.jobs)
    path = write("soak", figures)
    for key, value in sorted(figures.items()):
        print(f"{key:24} {value}")
    print(f"-> {path}")
    if not result.clean:
        raise SystemExit("the audit failed: see the findings above")


if __name__ == "__main__":
    main()
