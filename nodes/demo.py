"""The main job: a full market round on an embedded devnet, in one process.

    gpumarket demo [--providers 3] [--labs 2] [--jobs 2]

It starts anvil, deploys, funds providers and labs from the TestUSD faucet, registers the
providers with stake, and then runs the market: providers sign offers, labs sign bids, the
matcher (``market.matching``) verifies them in bulk and fills them, a third party opens the leases
on-chain, each provider runs its jobs for real (integer matrix products and a command job in a
subprocess), commits their outputs in Merkle roots and signs hash-chained receipts each metering
period; each lab verifies every receipt and output (signatures, chain, usage bounds, Merkle
proofs, Freivalds for products, re-execution for the command) and pays by signed cumulative
vouchers; providers claim in batches, one lab terminates a lease early, leases close, refunds go
back, and everyone withdraws. It ends with a ledger and checks that no token was created or lost.

Chain time moves by ``increase_time`` between metering periods, so an hour of leases takes
seconds. The daemons of issue 6 (relay, provider agent, lab client as processes) replace the
in-process calls; the money path and the checks are the same.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np
import numpy.typing as npt

from market.chain.deploy import Contracts, deploy
from market.chain.devnet import Devnet
from market.chain.tx import Transactor
from market.matching import OrderBook, explain, verify_orders
from market.protocol.eip712 import order_hash, receipt_hash
from market.protocol.types import Bid, Lease, Offer, Signed, Voucher
from market.receipts import ReceiptChain, ReceiptVerifier, freivalds_exact, output_root
from market.receipts.merkle import chunk
from market.roles import Lab, Provider

USD = 10**6
PERIOD_S = 600
PERIODS = 3
DURATION_S = PERIOD_S * PERIODS
MODELS = ("H100-80GB", "A100-80GB")
COMMAND = [sys.executable, "-c", "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()"
           ").hexdigest() * 64)"]  # fmt: skip


@dataclass
class Job:
    """One lease's work: what the lab asked and how the provider answers it."""

    lease: Lease
    kind: str  # "matmul" | "command"
    seed: int
    chain: ReceiptChain
    verifier: ReceiptVerifier
    vouchers: list[Signed[Voucher]] = field(default_factory=list)
    receipts: int = 0


def _matrices(seed: int, n: int = 96) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    return rng.integers(-50, 50, (n, n)), rng.integers(-50, 50, (n, n))


def _run_job(kind: str, seed: int, period: int) -> bytes:
    """The provider's work for one period; returns its output bytes."""
    if kind == "matmul":
        a, b = _matrices(seed + period)
        return (a @ b).astype("<i8").tobytes()
    proc = subprocess.run(
        [*COMMAND, f"{seed}:{period}"], capture_output=True, timeout=30, check=True
    )
    return proc.stdout


def _check_output(kind: str, seed: int, period: int, output: bytes) -> bool:
    """The lab's check of one period's output: Freivalds for a product, re-execution else."""
    if kind == "matmul":
        a, b = _matrices(seed + period)
        c = np.frombuffer(output, dtype="<i8").reshape(a.shape[0], b.shape[1])
        return freivalds_exact(a, b, c)
    return hashlib.sha256(_run_job(kind, seed, period)).digest() == hashlib.sha256(output).digest()


def run(out: TextIO, *, providers: int = 3, labs: int = 2, jobs: int = 2) -> int:
    if not 1 <= providers <= 6 or not 1 <= labs <= 3 or jobs < 1:
        print("error: 1-6 providers, 1-3 labs and at least one job per lab", file=out)
        return 2
    with Devnet.start(accounts=max(10, providers + labs + 2)) as dev:
        return _Round(dev, out, providers, labs, jobs).play()


class _Round:
    def __init__(self, dev: Devnet, out: TextIO, providers: int, labs: int, jobs: int) -> None:
        self.dev, self.out, self.jobs_per_lab = dev, out, jobs
        w3 = dev.web3()
        self.contracts: Contracts = deploy(w3, dev.accounts[0], rpc_url=dev.rpc_url)
        self.log("devnet", f"anvil on {dev.rpc_url} (chain id {dev.chain_id}, pid {dev.pid})")
        for name, address in sorted(self.contracts.deployment.contracts.items()):
            if name != "Token":  # the settlement token; here it is TestUSD
                self.log("deployed", f"{name:16} {address}")
        faucet = Transactor(w3, dev.accounts[0])
        token = self.contracts.token
        accts = dev.accounts[1 : 1 + providers + labs]
        for acct in accts:
            faucet.send(token.address, token.encode_abi("mint", [acct.address, 10_000 * USD]))
        d = self.contracts.deployment
        self.providers = [Provider.connect(d, "0x" + a.key.hex()) for a in accts[:providers]]
        self.labs = [Lab.connect(d, "0x" + a.key.hex()) for a in accts[providers:]]
        self.matcher = Lab.connect(d, "0x" + dev.accounts[1 + providers + labs].key.hex())
        self.watch = [p.address for p in self.providers] + [lab.address for lab in self.labs]
        self.watch += [self.contracts.market.address, self.contracts.registry.address]
        self.before = {a: self.balance(a) for a in self.watch}

    def log(self, event: str, text: str) -> None:
        print(f"{event:10}{text}", file=self.out, flush=True)

    def balance(self, address: str) -> int:
        return self.matcher.client.balance_of(address)

    def play(self) -> int:
        jobs = self.open_leases()
        early = jobs[-1] if len(jobs) > 1 else None  # its lab stops it after two periods
        for period in range(PERIODS):
            self.dev.increase_time(PERIOD_S)
            self.dev.mine()
            self.meter([j for j in jobs if not (j is early and period >= 2)], period)
            if period == 1 and early is not None:
                lab = next(lab for lab in self.labs if lab.address == early.lease.lab)
                lab.terminate(early.lease, early.vouchers[-1].message.cumulative_amount)
                self.log("terminate", f"lab ended 0x{early.lease.id.hex()[:12]} after 2 periods,"
                         " paying for them")  # fmt: skip
        self.settle([j for j in jobs if j is not early], jobs)
        return self.ledger(jobs)

    def open_leases(self) -> list[Job]:
        min_stake = self.matcher.client.min_stake()
        for i, p in enumerate(self.providers):
            p.register(stake=2 * min_stake, endpoint=f"http://127.0.0.1:{7100 + i}")
            self.log("register", f"provider {p.address} staked {2 * min_stake / USD:.2f} tUSD")
        orders: list[Signed[Offer] | Signed[Bid]] = []
        for i, p in enumerate(self.providers):
            # 500-700 units per GPU-second: 1.80-2.52 tUSD per GPU-hour
            orders.append(p.offer(MODELS[i % 2], gpus=8, memory_gib=80,
                                  price_per_gpu_second=500 + 100 * i, min_duration=60,
                                  max_duration=86_400))  # fmt: skip
        for lab in self.labs:
            lab.fund(10**12)
            for j in range(self.jobs_per_lab):
                orders.append(lab.bid(MODELS[j % 2], gpus=2, max_price_per_gpu_second=800,
                                      duration=DURATION_S))  # fmt: skip
        # A bid that cannot match, to show why and what would fix it.
        lowball = self.labs[0].bid(MODELS[0], gpus=4, max_price_per_gpu_second=300,
                                   duration=DURATION_S)  # fmt: skip
        orders.append(lowball)
        reader = self.matcher.client
        domain = reader.domain

        def stake_of(address: str) -> int | None:
            info = reader.provider_info(address)
            return info.free_stake if info.registered else None

        book = OrderBook(min_stake=min_stake, stake_of=stake_of)
        valid, rejected = verify_orders(domain, orders)
        now = reader.chain_time()
        fills = [f for order in valid for f in book.submit(order, now)]
        self.log("matched", f"{len(valid)} orders verified, {len(rejected)} refused, "
                 f"{len(fills)} fills")  # fmt: skip
        why = explain(book, lowball.message, now, order_hash=order_hash(domain, lowball.message))
        for reason in why.reasons:
            self.log("no match", f"lab 0's lowball bid: {reason}")
        for change in why.changes:
            self.log("would fix", str(change))
        jobs: list[Job] = []
        for n, fill in enumerate(fills):
            lease = reader.open_lease(fill.offer, fill.bid, fill.gpus)
            book.settle(fill)
            provider = next(p for p in self.providers if p.address == lease.provider)
            kind = "matmul" if n % 2 == 0 else "command"
            chain = ReceiptChain(provider.key, domain, lease)
            jobs.append(Job(lease, kind, seed=n, chain=chain,
                            verifier=ReceiptVerifier(domain, lease)))  # fmt: skip
            self.log("lease", f"0x{lease.id.hex()[:12]} {fill.gpus} GPUs of "
                     f"{fill.offer.message.gpu_model} at {lease.price_per_gpu_second}/GPU-s, "
                     f"escrow {lease.escrow / USD:.2f} tUSD, {kind} job")  # fmt: skip
        return jobs

    def meter(self, jobs: list[Job], period: int) -> None:
        domain = self.matcher.client.domain
        for job in jobs:
            output = _run_job(job.kind, job.seed, period)  # the provider works...
            chunks = chunk(output, 4096)
            end = job.lease.start + PERIOD_S * (period + 1)
            signed = job.chain.append(end, job.lease.gpus * PERIOD_S * (period + 1),
                                      output_root=output_root(chunks))  # fmt: skip
            job.verifier.accept(signed, chunks)  # ...the lab checks receipt and outputs...
            if not _check_output(job.kind, job.seed, period, output):
                raise SystemExit(f"lease 0x{job.lease.id.hex()}: the output is wrong")
            lab = next(lab for lab in self.labs if lab.address == job.lease.lab)
            amount = job.lease.price_per_gpu_second * signed.message.gpu_seconds_cumulative
            job.vouchers.append(lab.pay(job.lease, amount, receipt_hash(domain, signed.message)))
            job.receipts += 1
        self.log("period", f"{period + 1}/{PERIODS}: {len(jobs)} receipts verified, "
                 "outputs checked, vouchers signed")  # fmt: skip

    def settle(self, running: list[Job], jobs: list[Job]) -> None:
        for p in self.providers:
            mine = [(j.lease, j.vouchers[-1]) for j in running if j.lease.provider == p.address]
            if mine:
                result = p.claim_all(mine)
                self.log("claim", f"provider {p.address[:10]} claimed {result.total / USD:.2f} "
                         f"tUSD for {len(result.paid)} leases in one batch")  # fmt: skip
        for job in jobs:
            provider = next(p for p in self.providers if p.address == job.lease.provider)
            refund = provider.close(job.lease)
            self.log("close", f"0x{job.lease.id.hex()[:12]} refunded {refund / USD:.2f} tUSD")
        for party in [*self.providers, *self.labs]:
            party.withdraw()

    def ledger(self, jobs: list[Job]) -> int:
        w3 = self.dev.web3()
        first = self.contracts.deployment.deploy_block
        gas = sum(
            int(w3.eth.get_block(n)["gasUsed"]) for n in range(first, w3.eth.block_number + 1)
        )
        after = {a: self.balance(a) for a in self.watch}
        print("\nledger (tUSD)", file=self.out)
        names = {p.address: f"provider {i}" for i, p in enumerate(self.providers)}
        names |= {lab.address: f"lab {i}" for i, lab in enumerate(self.labs)}
        names[self.contracts.market.address] = "market"
        names[self.contracts.registry.address] = "registry"
        for a in self.watch:
            print(f"  {names[a]:11} {self.before[a] / USD:12.2f} -> {after[a] / USD:12.2f}"
                  f"  ({(after[a] - self.before[a]) / USD:+.2f})", file=self.out)  # fmt: skip
        receipts = sum(j.receipts for j in jobs)
        print(
            f"  {len(jobs)} leases, {receipts} receipts verified, {gas:,} gas used", file=self.out
        )
        if sum(after.values()) != sum(self.before.values()):
            print("error: tokens were created or lost", file=self.out)
            return 1
        print("done      every token accounted for", file=self.out)
        return 0
