"""The main job: a full market round of separate processes on an embedded devnet.

    gpumarket demo [--providers 3] [--labs 2] [--jobs 2] [--keep]

It starts anvil (one block a second), deploys the contracts, funds each account from the TestUSD
faucet, writes each daemon an encrypted keystore and a TOML config in a fresh folder, and starts,
as processes talking over loopback sockets: a relay (order book and matcher), the provider
agents (``gpumarket provider``) and the labs (``gpumarket lab --exit-when-done``). Providers
register with stake and offer their GPUs; labs bid, each bid committing to its job; the relay's
matcher opens the leases on-chain with the labs' escrow; labs send their sealed jobs (integer
matrix products, checked by Freivalds, and a command job, checked by running it again);
providers run them, sign a receipt each metering period and deliver the sealed outputs; labs
verify every receipt and output and pay by signed vouchers; providers claim in batches and close
each lease when its work is paid, which credits the unused escrow back to the lab; everyone
withdraws. Progress is printed as it happens; the round ends with a ledger (balances before and
after, leases, receipts, vouchers, gas) and fails unless every token is accounted for and every
lease closed. The round's folder (configs, keystores, the daemons' logs) is removed at the end,
unless ``--keep`` or the round failed (its logs say why). Ctrl-C (or SIGTERM) stops the daemons
and the devnet and exits 130, with no traceback.

Everything the ledger shows comes from the chain (balances, the market's events, the gas of the
round's transactions: ``market.chain``) or from the daemons' own API (receipts signed and vouchers
received: each provider's ``/metrics``, read before it stops), never from a daemon's files.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families

from market.chain.devnet import Devnet
from market.chain.gas import gas_by_function
from nodes.localnet import MODELS, Daemon, LocalMarket, command_job, matmul_job

LEASE_S = 16
ROUND_TIMEOUT_S = 300.0
METRICS_TIMEOUT_S = 10.0
RECEIPTS_METRIC = "gpumarket_provider_receipts_total"
VOUCHERS_METRIC = "gpumarket_provider_vouchers_total"
# The command job: a deterministic hash chain; the lab runs it again to check it.
HASH_CHAIN = (
    "import hashlib,sys\n"
    "h=hashlib.sha256(sys.argv[1].encode()).digest()\n"
    "for i in range(40):\n"
    "    for _ in range(50000): h=hashlib.sha256(h).digest()\n"
    "    print(i, h.hex(), flush=True)\n"
)
# What the round prints of the daemons' logs (warnings and errors always).
SHOWN = {
    "registered", "offered", "lease_opened", "job_received", "job_started", "job_exited",
    "receipt", "claimed", "lease_closed_by_provider", "withdrawn", "claim_finalized",
    "receipt_posted", "payment_stopped", "lab_ready", "bid_posted", "job_sent",
    "receipt_verified", "voucher_sent", "lease_closed", "refund_withdrawn", "fraud_proven",
    "lease_terminated", "lab_done",
}  # fmt: skip


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, name: str, text: str) -> None:
        with self.lock:
            print(f"{name:10}{text}", file=self.out, flush=True)

    def log_line(self, name: str, line: str) -> None:
        """A daemon's log line ``<time> <level> <logger> <event> k=v ...``, if worth showing."""
        parts = line.split(" ", 4)
        if len(parts) >= 4 and (parts[3] in SHOWN or parts[1] in ("warning", "error")):
            self(name, " ".join(parts[3:]))


INTERRUPTED = 130
"""The exit status of a round stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)."""


class _Interrupted(Exception):
    """Raised from the SIGINT/SIGTERM handler: unwinds the round through its ``finally``s."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    for s in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup short
        signal.signal(s, signal.SIG_IGN)
    raise _Interrupted(signum)


def run(
    out: TextIO, *, providers: int = 3, labs: int = 2, jobs: int = 2, keep: bool = False
) -> int:
    """Play a round; the exit status (0: every token accounted for). Ctrl-C or SIGTERM stops
    it cleanly (:data:`INTERRUPTED`); its folder is removed unless ``keep``."""
    if not 1 <= providers <= 6 or not 1 <= labs <= 3 or jobs < 1:
        print("error: 1-6 providers, 1-3 labs and at least one job per lab", file=out)
        return 2
    show = _Printer(out)
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    folder = Path(tempfile.mkdtemp(prefix="gpumarket-round-"))
    code = 1  # an error raised out of the round keeps its folder, as a failed round does
    try:
        with Devnet.start(accounts=12, block_time=1) as dev:
            net = LocalMarket(dev, folder, on_log=show.log_line)
            where = f"in {folder} (removed after a round that succeeds, unless --keep)"
            show("devnet", f"anvil on {dev.rpc_url} (chain id {dev.chain_id}); logs {where}")
            try:
                code = _play(net, show, providers, labs, jobs)
            finally:
                net.stop_all()
    except _Interrupted:
        code = INTERRUPTED
        show("stopped", "interrupted: daemons and devnet stopped")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if keep or code not in (0, INTERRUPTED):
            show("logs", f"kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return code


def _play(net: LocalMarket, show: _Printer, providers: int, labs: int, jobs: int) -> int:
    relay = net.start_relay()
    show("relay", f"serving at {relay.url}")
    provider_daemons = [net.start_provider(i, [relay.url]) for i in range(providers)]
    for p in provider_daemons:
        show(p.name, f"serving at {p.url}")
    watch: list[str] = [net.provider_account(i).address for i in range(providers)]
    watch += [net.lab_account(i).address for i in range(labs)]
    watch += [net.contracts.market.address]
    for i in range(labs):
        net.fund(net.lab_account(i))
    before: dict[str, int] = {a: net.balance(a) for a in watch}
    lab_daemons: list[Daemon] = []
    for i in range(labs):
        specs = []
        for j in range(jobs):
            model = MODELS[j % min(2, providers)]  # a model some provider offers
            if j % 2 == 0:
                specs.append(matmul_job(model, duration=LEASE_S, seed=100 * i + j, n=192,
                                        rounds=16))  # fmt: skip
            else:
                argv = ["python", "-c", HASH_CHAIN, f"lab{i}-job{j}"]
                specs.append(command_job(model, argv, duration=LEASE_S))
        lab_daemons.append(net.start_lab(i, [relay.url], specs))
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    failed = []
    for d in lab_daemons:
        try:
            code = d.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = -1
        if code != 0:
            failed.append(f"{d.name} (exit {code}; see {d.log})")
    signed = Counter[str]()
    if not failed:
        for p in provider_daemons:
            signed.update(_provider_counts(p.url))
    net.stop_all()
    if failed:
        show("error", ", ".join(failed))
        return 1
    return _ledger(net, show, watch, before, providers, signed)


def _provider_counts(url: str) -> Counter[str]:
    """Receipts a provider signed and new vouchers it received, from its ``/metrics``."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=METRICS_TIMEOUT_S) as answer:
        text = answer.read().decode()
    counts = Counter[str]()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == RECEIPTS_METRIC:
                counts["receipts"] += int(sample.value)
            elif sample.name == VOUCHERS_METRIC and sample.labels.get("result") == "new":
                counts["vouchers"] += int(sample.value)
    return counts


def _ledger(
    net: LocalMarket,
    show: _Printer,
    watch: list[str],
    before: dict[str, int],
    providers: int,
    signed: Counter[str],
) -> int:
    out = show.out
    first = net.contracts.deployment.deploy_block
    calls = gas_by_function(net.faucet, first + 1)  # the round's transactions, not the deployment
    gas = sum(use.gas for use in calls.values())
    events = Counter(e.name for e in net.faucet.events(first))
    opened, closed = events["LeaseOpened"], events["LeaseClosed"]
    receipts, vouchers = signed["receipts"], signed["vouchers"]
    after = {a: net.balance(a) for a in watch}
    names: dict[str, str] = {
        net.provider_account(i).address: f"provider {i}" for i in range(providers)
    }
    names |= {a: f"lab {i}" for i, a in enumerate(watch[providers:-1])}
    names[net.contracts.market.address] = "market"
    token = net.faucet.token_metadata()
    print(f"\nledger ({token.symbol})", file=out)
    for a in watch:
        change = after[a] - before[a]
        sign = "-" if change < 0 else "+"
        print(f"  {names[a]:11} {token.format(before[a]):>22} -> {token.format(after[a]):>22}"
              f"  ({sign}{token.format(abs(change))})", file=out)  # fmt: skip
    print(f"  {opened} leases opened, {closed} closed; {receipts} receipts signed, delivered "
          f"and verified; {vouchers} vouchers; {gas:,} gas used:", file=out)  # fmt: skip
    for name, use in sorted(calls.items(), key=lambda kv: -kv[1].gas):
        print(f"    {name:18} {use.calls:4} x {use.per_call:9,} = {use.gas:11,}", file=out)
    if sum(after.values()) != sum(before.values()):
        print("error: tokens were created or lost", file=out)
        return 1
    if opened == 0 or closed != opened:
        print(f"error: {opened - closed} of {opened} leases are still open", file=out)
        return 1
    print("done      every token accounted for, every lease closed", file=out)
    return 0


__all__ = ["run"]
