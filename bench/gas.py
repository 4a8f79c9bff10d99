"""Gas figures: gasUsed of each market transaction, read from real receipts on anvil.

python -m bench.gas      -> bench/results/gas.json

Every figure is one transaction in a representative state, sent through the ``Provider`` and
``Lab`` facades (``docs/benchmarks.md`` says which state each one measures). ``NAME_vs_goal`` is
the figure over the project's goal for it: below 1 meets the goal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from eth_typing import ChecksumAddress

from bench.results_file import write
from market.chain.client import BatchMatch, MarketClient
from market.chain.deploy import Contracts, MarketParams, deploy
from market.chain.devnet import Devnet
from market.chain.tx import Transactor
from market.protocol.eip712 import receipt_hash
from market.protocol.signing import SigningKey
from market.protocol.types import ZERO_ADDRESS, Bid, Lease, Offer, Receipt, Signed
from market.receipts import ReceiptChain, voucher_amount
from market.roles import Lab, Provider

USD = 10**6  # TestUSD has 6 decimals
PRICE = 600  # per GPU-second: about 2.16 tUSD per GPU-hour
DURATION = 3600
STAKE = 100_000 * USD  # covers the lock of every lease the figures open (one escrow each)
BATCH_SIZES = (10, 100)
AUCTION_LEASES = 50
GOALS = {
    "open_lease": 150_000,
    "open_lease_permit": 150_000,
    "open_lease_batch_per_lease_50": 90_000,
    "claim": 50_000,
    "claim_batch_per_lease_100": 20_000,
    "slash_equivocation": 60_000,
}


class _Bench:
    """One deployment, its parties funded from the faucet: a provider and three kinds of lab."""

    def __init__(self, dev: Devnet, contracts: Contracts) -> None:
        self.contracts = contracts
        w3 = dev.web3()
        faucet = Transactor(w3, dev.accounts[0])
        token = contracts.token
        for acct in dev.accounts[1:6]:
            mint = token.encode_abi("mint", args=[acct.address, 1_000_000 * USD])
            faucet.send(token.address, mint, what="mint")

        def client(index: int) -> tuple[MarketClient, SigningKey]:
            acct = dev.accounts[index]
            return MarketClient(w3, contracts, acct), SigningKey(acct.key)

        self.provider = Provider(*client(1))
        self.lab = Lab(*client(2))  # pays escrow from a finite allowance
        self.permit_lab = Lab(*client(3))  # pays escrow by permit only
        self.other_provider = Provider(*client(4))
        self.unlimited_lab = Lab(*client(5))  # approved 2**256 - 1 once
        self.lab.fund(1_000_000 * USD)
        self.unlimited_lab.fund(2**256 - 1)

    def offer(self, gpus: int) -> Signed[Offer]:
        return _offer_of(self.provider, gpus)

    def bid(self, gpus: int, lab: Lab | None = None) -> Signed[Bid]:
        lab = lab or self.lab
        return lab.bid("H100-80GB", gpus=gpus, max_price_per_gpu_second=PRICE, duration=DURATION)


def gas_of(client: MarketClient, action: Callable[[], object]) -> int:
    """gasUsed of the transaction ``action`` sends through ``client`` (the last, if several)."""
    before = client.last_receipt
    action()
    receipt = client.last_receipt
    if receipt is None or receipt is before:
        raise RuntimeError("the measured action sent no transaction")
    return int(receipt["gasUsed"])


def _lease_figures(b: _Bench) -> dict[str, int]:
    provider, lab, permit_lab = b.provider, b.lab, b.permit_lab
    pc, lc, plc = provider.client, lab.client, permit_lab.client
    g: dict[str, int] = {}
    # Warm-up: the first stake in the registry, the first escrow in the market, a lab's first
    # permit (its nonce 0 -> 1) and an account's first credit in the market write fresh slots
    # once; the figures below are the steady state. Withdrawing leaves an account's credit slot
    # non-zero, so the provider and the lab below have been paid and have withdrawn before.
    b.other_provider.register(STAKE, "https://gpu.example:7001")
    g["register"] = gas_of(pc, lambda: provider.register(STAKE, "https://gpu.example:7000"))
    warm = lab.open(b.offer(1), b.bid(1), gpus=1, use_permit=False)
    g["open_lease_permit_first_of_lab"] = gas_of(
        plc, lambda: permit_lab.open(b.offer(1), b.bid(1, permit_lab), gpus=1)
    )
    g["claim_first_credit_of_provider"] = gas_of(
        pc, lambda: provider.claim(warm, lab.pay(warm, USD))
    )
    provider.close(warm)  # the lab's first credit: its refund
    provider.withdraw()
    lab.withdraw()

    # A fresh offer and a fresh bid: both order slots go from zero to non-zero.
    shared = b.offer(8)
    leases: list[Lease] = []
    g["open_lease"] = gas_of(
        lc, lambda: leases.append(lab.open(shared, b.bid(4), gpus=4, use_permit=False))
    )
    # The same offer filled again (its slot is non-zero already) for another fresh bid.
    g["open_lease_second_fill"] = gas_of(
        lc, lambda: leases.append(lab.open(shared, b.bid(4), gpus=4, use_permit=False))
    )
    g["open_lease_permit"] = gas_of(
        plc, lambda: permit_lab.open(b.offer(4), b.bid(4, permit_lab), gpus=4)
    )
    unlimited = b.unlimited_lab
    g["open_lease_unlimited_allowance"] = gas_of(
        unlimited.client,
        lambda: unlimited.open(b.offer(4), b.bid(4, unlimited), gpus=4, use_permit=False),
    )

    first, second = leases
    g["claim"] = gas_of(pc, lambda: provider.claim(first, lab.pay(first, 2 * USD)))
    g["claim_second"] = gas_of(pc, lambda: provider.claim(first, lab.pay(first, 4 * USD)))
    # Anyone may claim; sent by the lab. ECDSA recovery never reads the lab's account, so its
    # being warm no longer matters: this costs what `claim` does.
    third = lab.open(b.offer(4), b.bid(4), gpus=4, use_permit=False)
    g["claim_sent_by_lab"] = gas_of(lc, lambda: lc.claim(third, lab.pay(third, 2 * USD)))
    g["terminate"] = gas_of(lc, lambda: lab.terminate(second, 3 * USD))
    g["close_lease"] = gas_of(pc, lambda: provider.close(first))
    # What the claims and the termination above credited, in one transfer.
    g["withdraw"] = gas_of(pc, provider.withdraw)

    g["cancel"] = gas_of(pc, lambda: provider.cancel(b.offer(1)))
    g["cancel_all"] = gas_of(lc, lab.cancel_all)
    return g


def _batch_figures(b: _Bench) -> dict[str, int]:
    """One claimBatch over N leases of the provider, each with its first voucher."""
    figures: dict[str, int] = {}
    for n in BATCH_SIZES:
        offer, bid = b.offer(n), b.bid(n)
        leases = [b.lab.open(offer, bid, gpus=1, use_permit=False) for _ in range(n)]
        items = [(lease, b.lab.pay(lease, USD)) for lease in leases]
        result = b.provider.claim_all(items)
        if len(result.paid) != n:
            raise RuntimeError(f"claimBatch skipped items: {result.skipped}")
        figures[f"claim_batch_{n}"] = result.gas_used
        figures[f"claim_batch_per_lease_{n}"] = round(result.gas_used / n)
    return figures


def _auction_figures(b: _Bench, dev: Devnet) -> dict[str, int]:
    """One batch auction of 50 one-GPU leases at one clearing price: 10 offers of 5 GPUs from two
    providers, 50 fresh bids from two labs (25 each, consecutive, so each lab's escrow is pulled
    once); then the provider closes those leases in one batch, and finalizes 50 posted claims in
    one batch."""
    labs = (b.lab, b.unlimited_lab)
    offers = [b.offer(5) for _ in range(10)]
    bids = [
        labs[j * 2 // AUCTION_LEASES].bid(
            "H100-80GB", gpus=1, max_price_per_gpu_second=PRICE + 100, duration=DURATION
        )
        for j in range(AUCTION_LEASES)
    ]
    matches = [BatchMatch(offers[j // 5], bids[j], 1) for j in range(AUCTION_LEASES)]
    client = b.lab.client
    leases: list[Lease] = []
    gas = gas_of(client, lambda: leases.extend(client.open_lease_auction(matches, PRICE + 50)))
    if len(leases) != AUCTION_LEASES or {x.price_per_gpu_second for x in leases} != {PRICE + 50}:
        raise RuntimeError("the auction did not open every lease at the clearing price")
    g = {
        "open_lease_batch_50": gas,
        "open_lease_batch_per_lease_50": round(gas / AUCTION_LEASES),
    }
    mine = leases
    closed = b.provider.client.close_lease_batch(mine)
    if len(closed.done) != len(mine):
        raise RuntimeError(f"closeLeaseBatch skipped items: {closed.skipped}")
    g[f"close_batch_{len(mine)}"] = closed.gas_used
    g[f"close_batch_per_lease_{len(mine)}"] = round(closed.gas_used / len(mine))

    # 50 leases whose lab went silent: the provider posts one receipt each, then finalizes all.
    cheat = b.other_provider
    offer = _offer_of(cheat, AUCTION_LEASES)
    bid = b.lab.bid(
        "H100-80GB", gpus=AUCTION_LEASES, max_price_per_gpu_second=PRICE, duration=DURATION
    )
    silent = client.open_lease_batch([BatchMatch(offer, bid, 1)] * AUCTION_LEASES)
    dev.increase_time(300)
    dev.mine()
    now = dev.timestamp()
    for lease in silent:
        chain = ReceiptChain(cheat.key, client.domain, lease)
        cheat.post_receipt(lease, chain.append(now, lease.gpus * (now - lease.start)))
    dev.increase_time(cheat.client.challenge_window())
    dev.mine()
    done = cheat.client.finalize_claim_batch(silent)
    if len(done.done) != AUCTION_LEASES:
        raise RuntimeError(f"finalizeClaimBatch skipped items: {done.skipped}")
    g[f"finalize_batch_{AUCTION_LEASES}"] = done.gas_used
    g[f"finalize_batch_per_lease_{AUCTION_LEASES}"] = round(done.gas_used / AUCTION_LEASES)
    return g


def _offer_of(provider: Provider, gpus: int) -> Signed[Offer]:
    return provider.offer(
        "H100-80GB",
        gpus=gpus,
        memory_gib=80,
        price_per_gpu_second=PRICE,
        min_duration=60,
        max_duration=86_400,
    )


def _receipt_figures(b: _Bench, dev: Devnet) -> dict[str, int]:
    """Proofs of cheating and optimistic claims, against ``other_provider`` (staked the penalty).

    Each slash hits an Active lease that a voucher has partly paid, whose lab has a credit slot in
    the market already (it has been refunded before): the steady state of a lab.
    """
    cheat, lab = b.other_provider, b.lab
    domain = lab.client.domain
    g: dict[str, int] = {}

    def lease_with_receipt(
        seconds: int, arbiter: ChecksumAddress = ZERO_ADDRESS
    ) -> tuple[Lease, ReceiptChain, Receipt]:
        """A lease ``seconds`` old, its first receipt signed and paid by a voucher."""
        offer = cheat.offer(
            "H100-80GB",
            gpus=4,
            memory_gib=80,
            price_per_gpu_second=PRICE,
            min_duration=60,
            max_duration=86_400,
            arbiter=arbiter,
        )
        bid = lab.bid(
            "H100-80GB", gpus=4, max_price_per_gpu_second=PRICE, duration=DURATION, arbiter=arbiter
        )
        lease = lab.open(offer, bid, gpus=4, use_permit=False)
        dev.increase_time(seconds)
        dev.mine()
        chain = ReceiptChain(cheat.key, domain, lease)
        now = dev.timestamp()
        first = chain.append(now, lease.gpus * (now - lease.start))
        voucher = lab.pay(
            lease, voucher_amount(lease, first.message), receipt_hash(domain, first.message)
        )
        cheat.claim(lease, voucher)
        return lease, chain, first.message

    lease, chain, _ = lease_with_receipt(300)
    fork = ReceiptChain(cheat.key, domain, lease, head=chain.head)
    dev.increase_time(300)
    dev.mine()
    now = dev.timestamp()
    a = chain.append(now, lease.gpus * (now - lease.start))
    other = fork.append(now, lease.gpus * (now - lease.start) - 1)
    g["slash_equivocation"] = gas_of(lab.client, lambda: lab.prove_equivocation(lease, a, other))

    lease, chain, head = lease_with_receipt(300)
    future = cheat.key.sign(
        domain,
        dataclasses.replace(
            head,
            seq=1,
            prev_hash=receipt_hash(domain, head),
            period_start=head.period_end,
            period_end=head.period_end + 3600,
        ),
    )
    g["slash_impossible_usage"] = gas_of(
        lab.client, lambda: lab.prove_impossible_usage(lease, future)
    )

    # The lab goes silent after the first voucher: the provider posts its next receipts.
    lease, chain, _ = lease_with_receipt(300)
    dev.increase_time(300)
    dev.mine()
    now = dev.timestamp()
    posted = chain.append(now, lease.gpus * (now - lease.start))
    pc = cheat.client
    g["post_receipt"] = gas_of(pc, lambda: cheat.post_receipt(lease, posted))
    dev.increase_time(300)
    dev.mine()
    now = dev.timestamp()
    later = chain.append(now, lease.gpus * (now - lease.start))
    g["post_receipt_replacing"] = gas_of(pc, lambda: cheat.post_receipt(lease, later))
    dev.increase_time(pc.challenge_window())
    dev.mine()
    g["finalize_claim"] = gas_of(pc, lambda: cheat.finalize_claim(lease))

    lease, chain, _ = lease_with_receipt(300)
    dev.increase_time(300)
    dev.mine()
    now = dev.timestamp()
    cheat.post_receipt(lease, chain.append(now, lease.gpus * (now - lease.start)))
    g["dispute_claim"] = gas_of(lab.client, lambda: lab.dispute(lease))

    # A lease naming an arbiter: the lab disputes, the arbiter rules for the provider (paid the
    # claim and the bond).
    arbiter = MarketClient(dev.web3(), b.contracts, dev.accounts[7])
    lease, chain, _ = lease_with_receipt(300, arbiter.address)
    dev.increase_time(300)
    dev.mine()
    now = dev.timestamp()
    cheat.post_receipt(lease, chain.append(now, lease.gpus * (now - lease.start)))
    lab.dispute(lease)
    g["arbiter_ruling"] = gas_of(arbiter, lambda: arbiter.rule_dispute(lease, for_provider=True))
    return g


def _fee_figures(dev: Devnet) -> dict[str, int]:
    """A claim on a market with a 1% protocol fee, the treasury already credited with fees."""
    treasury = dev.accounts[9].address
    contracts = deploy(
        dev.web3(), dev.accounts[0], params=MarketParams(fee_bps=100, treasury=treasury)
    )
    b = _Bench(dev, contracts)
    b.provider.register(STAKE, "https://gpu.example:7000")
    first, second = (b.lab.open(b.offer(1), b.bid(1), gpus=1, use_permit=False) for _ in range(2))
    b.provider.claim(first, b.lab.pay(first, USD))
    pc = b.provider.client
    return {"claim_fee_1pct": gas_of(pc, lambda: b.provider.claim(second, b.lab.pay(second, USD)))}


def main() -> None:
    with Devnet.start() as dev:
        b = _Bench(dev, deploy(dev.web3(), dev.accounts[0]))
        figures: dict[str, float | int | str] = {}
        figures.update(_lease_figures(b))
        figures.update(_batch_figures(b))
        figures.update(_auction_figures(b, dev))
        figures.update(_receipt_figures(b, dev))
        figures.update(_fee_figures(dev))
    for name, goal in GOALS.items():
        figures[f"{name}_vs_goal"] = round(int(figures[name]) / goal, 3)
    path = write("gas", figures)
    for key, value in figures.items():
        print(f"{key:36} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
