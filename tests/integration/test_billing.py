"""Billing as a signed term, end to end: a relay, a provider agent offering both modes and a lab
client, as real processes, with anvil mining a block a second. The lab's command job ends in
about a second; the lab verifies its output and terminates the lease. A rental lease then pays
exactly price x GPUs x (termination - start), the reserved time, and the provider signs nothing
past the termination; a metered one pays the busy GPU-seconds only; a lab whose bids name a
separate voucher key is paid for alike. Each time the lab gets the rest of its escrow back and the
ledger is exact."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from market.chain.devnet import Devnet
from market.protocol import codec
from market.protocol.types import Billing, Lease, LeaseStatus, Receipt, Signed
from market.receipts import ReceiptVerifier, reserved_gpu_seconds
from market.roles import Lab
from nodes.localnet import Daemon, LocalMarket, command_job
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
MODEL = "B0-80GB"
PRICE = 400
GPUS = 2
LEASE_S = 20
JOB = ("python", "-c", "import time; time.sleep(1); print('done', flush=True)")
INTERVAL_S = 2  # the provider's metering interval (LocalMarket's)


@dataclass
class Net:
    market: LocalMarket
    relay: Daemon
    provider: Daemon


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("billing"))
        try:
            relay = market.start_relay()
            provider = market.start_provider(
                0, [relay.url], model=MODEL, price=PRICE, billing=("rental", "metered")
            )
            yield Net(market, relay, provider)
        finally:
            market.stop_all()


@dataclass
class Settled:
    """One lab's round, settled: its lease, what the chain says, the provider's receipts."""

    lease: Lease
    end: int  # the termination's time
    paid: int
    refund: int
    receipts: list[Signed[Receipt]]
    lab_spent: int
    provider_earned: int


def _round(net: Net, i: int, billing: str, *, voucher_key: LocalAccount | None = None) -> Settled:
    """Lab ``i`` leases ``GPUS`` GPUs for the job, billed ``billing`` (its vouchers signed by
    ``voucher_key`` when given); waits until it exits."""
    market = net.market
    acct = market.lab_account(i)
    market.fund(acct)
    provider = net.provider.address
    reader = Lab.connect(market.contracts.deployment, "0x" + acct.key.hex())
    wait_until(lambda: reader.client.withdrawable(provider) == 0, 30, "the provider to withdraw")
    lab_before, provider_before = market.balance(acct.address), market.balance(provider)
    job = command_job(MODEL, JOB, gpus=GPUS, duration=LEASE_S, max_price=PRICE, billing=billing)
    lab = market.start_lab(i, [net.relay.url], [job], voucher_key=voucher_key)
    assert lab.wait(120) == 0, lab.log.read_text(encoding="utf-8")[-3000:]
    log = lab.log.read_text(encoding="utf-8")
    assert " job_verified " in log
    assert " lease_terminated " in log

    events = reader.client.events()
    (lease,) = [
        e.args["lease"] for e in events if e.name == "LeaseOpened" and e.args["lab"] == acct.address
    ]
    mine = [e for e in events if e.args.get("lease_id") == lease.id]
    (end,) = [e.args["end"] for e in mine if e.name == "LeaseTerminated"]
    (closed,) = [e.args for e in mine if e.name == "LeaseClosed"]
    state = reader.client.lease_state(lease.id)
    assert state.status is LeaseStatus.CLOSED
    assert state.end == end < lease.end  # terminated early
    claimed = [e.args["amount"] for e in mine if e.name == "Claimed"]
    assert sum(claimed) == state.paid == closed["paid"]  # each payment once
    assert closed["refund"] == lease.escrow - state.paid
    wait_until(lambda: reader.client.withdrawable(provider) == 0, 30, "the provider to withdraw")
    assert reader.withdrawable() == 0  # the lab took its refund
    return Settled(
        lease=lease,
        end=end,
        paid=state.paid,
        refund=closed["refund"],
        receipts=_receipts(net, lease),
        lab_spent=lab_before - market.balance(acct.address),
        provider_earned=market.balance(provider) - provider_before,
    )


def _receipts(net: Net, lease: Lease) -> list[Signed[Receipt]]:
    path = net.market.folder / net.provider.name / "state.sqlite"
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT signed FROM receipts WHERE lease_id = ? ORDER BY seq", (lease.id,)
        ).fetchall()
    return [codec.decode_as(row[0], Signed[Receipt]) for row in rows]


def test_rental_pays_the_reserved_time_until_the_lab_terminates_after_its_job(net: Net) -> None:
    s = _round(net, 0, "rental")
    lease = s.lease
    assert lease.billing is Billing.RENTAL
    # The job ran about a second; the lab paid for the GPUs held from the start to its
    # termination, exactly, and got the rest of the escrow back.
    assert (
        s.paid == PRICE * GPUS * (s.end - lease.start) == PRICE * reserved_gpu_seconds(lease, s.end)
    )
    assert s.refund == lease.escrow - s.paid > 0
    assert s.lab_spent == s.paid == s.provider_earned  # no fee on the devnet: all to the provider
    # The provider's receipts: one chain, the last ending at the termination, none past it.
    client = Lab.connect(
        net.market.contracts.deployment, "0x" + net.market.lab_account(0).key.hex()
    ).client
    verifier = ReceiptVerifier(client.domain, lease, lease_end=s.end)
    for signed in s.receipts:
        verifier.accept(signed)
    last = s.receipts[-1].message
    assert (last.period_end, last.gpu_seconds_cumulative) == (s.end, GPUS * (s.end - lease.start))
    assert [r.message.period_end for r in s.receipts].count(s.end) == 1
    # Past the lease's scheduled end, the provider has signed nothing more for it.
    wait_until(lambda: client.chain_time() >= lease.end + 2 * INTERVAL_S, 60, "the scheduled end")
    block = client.head().number
    wait_until(lambda: _cursor(net) > block + 2, 30, "the provider's ticks past that block")
    assert _receipts(net, lease) == s.receipts


def test_metered_pays_the_busy_gpu_seconds_only(net: Net) -> None:
    s = _round(net, 1, "metered")
    lease = s.lease
    assert lease.billing is Billing.METERED
    usage = s.receipts[-1].message.gpu_seconds_cumulative
    assert s.paid == PRICE * usage  # exactly what the receipts say
    # The job slept a second (and Python started): busy time, not the time reserved.
    assert GPUS * 1 <= usage < GPUS * (s.end - lease.start)
    assert usage <= GPUS * 5
    assert s.refund == lease.escrow - s.paid
    assert s.lab_spent == s.paid == s.provider_earned
    assert s.receipts[-1].message.period_end == s.end  # metered to the termination, no further


def test_a_lab_paying_with_a_separate_voucher_key_is_paid_for_as_with_its_own(net: Net) -> None:
    """The lab's bids name a voucher key of its own (as a contract lab's must): the provider
    accepts the vouchers it signs and claims them on-chain, where only that key's count."""
    voucher_key = Account.from_key(b"\x5a" * 32)
    s = _round(net, 2, "rental", voucher_key=voucher_key)
    assert s.lease.voucher_key == voucher_key.address != s.lease.lab
    assert s.paid == PRICE * GPUS * (s.end - s.lease.start)
    assert s.lab_spent == s.paid == s.provider_earned


def _cursor(net: Net) -> int:
    """The next block the provider's event follower reads (stored each tick, before it meters:
    once it passed a block by two, a whole tick ran after that block was the head)."""
    path = net.market.folder / net.provider.name / "state.sqlite"
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT value FROM agent_meta WHERE key = 'cursor'").fetchone()
    return int.from_bytes(row[0], "big")
