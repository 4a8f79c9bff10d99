"""A lab's dispute that loses pays the provider (issue 12), through the daemons.

The lab daemon is killed mid-lease after paying a first receipt, so it never sees the receipts
the provider signs afterwards for work it did. The provider, unpaid after the lease's end, posts
its last receipt as an optimistic claim, and is then killed too. The lab, restarted, finds a
claim for a receipt it never verified (and a provider it cannot reach to fetch it) and disputes
it, posting the market's bond; it then closes the lease, the disputed amount held back in
escrow. The lease names no arbiter, so nothing can rule for the lab: the provider agent,
restarted, collects the claim and the lab's bond at the ruling deadline.

A second provider, configured to refuse labs that lost a dispute, then gives up at once a lease
the same lab opens with it: the lab is refunded all, the provider owes and is owed nothing, and
its stake lock comes back after the lease's proof window.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator

import pytest

from market.chain.deploy import MarketParams
from market.chain.devnet import Devnet
from market.matching import Submission
from market.protocol import codec
from market.protocol.types import Lease, LeaseStatus, Signed, Voucher
from market.roles import Lab
from nodes.localnet import USD, LocalMarket, command_job
from nodes.wire import RelayClient
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
MODEL = "D0-80GB"
PRICE = 300
LEASE_S = 20
PARAMS = MarketParams(
    min_stake=100 * USD,
    unbonding_delay=60,
    claim_window=20,
    challenge_window=30,  # room for the lab's restart
    ruling_window=15,
)


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("dispute"), params=PARAMS)
        try:
            yield market
        finally:
            market.stop_all()


def _vouchers(market: LocalMarket, lab_name: str) -> list[Signed[Voucher]]:
    with sqlite3.connect(market.folder / lab_name / "state.sqlite") as db:
        rows = db.execute("SELECT signed FROM lab_vouchers WHERE sent = 1").fetchall()
    return [codec.decode_as(row[0], Signed[Voucher]) for row in rows]


def test_a_lab_dispute_without_a_ruling_pays_the_provider_the_claim_and_the_bond(
    net: LocalMarket,
) -> None:
    relay = net.start_relay()
    provider = net.start_provider(
        0, [relay.url], model=MODEL, price=PRICE,
        agent="final_voucher_wait_s = 2\nclaim_interval_s = 1\n",
    )  # fmt: skip
    acct = net.lab_account(0)
    net.fund(acct)
    job = command_job(MODEL, ["python", "-c", "import time; time.sleep(120)"], duration=LEASE_S,
                      max_price=PRICE)  # fmt: skip
    lab = net.start_lab(0, [relay.url], [job])
    wait_until(lambda: _vouchers(net, lab.name), 90, "a first voucher from the lab")
    lab.kill()  # SIGKILL: it verifies and pays nothing more
    provider_log = provider.log.read_text
    wait_until(lambda: " receipt_posted " in provider_log(encoding="utf-8"), 90, "the claim")
    provider.kill()  # unreachable: the lab cannot fetch the receipts it missed
    net.restart(lab)
    lab_log = lab.log.read_text
    wait_until(lambda: " claim_disputed " in lab_log(encoding="utf-8"), 60, "the lab's dispute")
    net.restart(provider)
    assert lab.wait(180) == 0, lab_log(encoding="utf-8")[-3000:]
    wait_until(
        lambda: " path=disputed " in provider_log(encoding="utf-8"), 90, "the claim collected"
    )

    reader = Lab.connect(net.contracts.deployment, "0x" + acct.key.hex())
    events = reader.client.events()
    (lease,) = [e.args["lease"] for e in events if e.name == "LeaseOpened"]
    assert isinstance(lease, Lease)
    mine = [e for e in events if e.args.get("lease_id") == lease.id]
    (posted,) = [e.args for e in mine if e.name == "ReceiptPosted"]
    (disputed,) = [e.args for e in mine if e.name == "ClaimDisputed"]
    (closed,) = [e.args for e in mine if e.name == "LeaseClosed"]
    (finalized,) = [e.args for e in mine if e.name == "ClaimFinalized"]
    claim, bond = posted["amount"], disputed["bond"]
    assert bond > 0  # the dispute was not free
    state = reader.client.lease_state(lease.id)
    assert (state.status, state.disputed) == (LeaseStatus.CLOSED, False)
    # The provider was paid its claim in full (by the lab's vouchers once it could fetch the
    # receipts, and the rest, if any, by the claim itself) and, the dispute lost, the bond.
    assert state.paid == claim
    assert finalized["bond"] == bond
    paid = sum(e.args["amount"] for e in mine if e.name == "Claimed")
    assert paid == claim
    assert closed["refund"] == lease.escrow - closed["paid"] - (claim - closed["paid"])
    wait_until(lambda: reader.client.withdrawable(lease.provider) == 0, 30, "provider withdraws")
    withdrawn = [
        e.args["amount"]
        for e in events
        if e.name == "Withdrawn" and e.args["account"] == lease.provider
    ]
    assert sum(withdrawn) >= claim + bond - reader.client.withdrawable(lease.provider)

    # The lab has lost a dispute: a provider refusing such labs gives its next lease up at once.
    strict = net.start_provider(
        1, [relay.url], model="D1-80GB", price=PRICE, agent="max_lab_disputes_lost = 0\n"
    )
    bid = reader.bid("D1-80GB", gpus=1, max_price_per_gpu_second=PRICE, duration=LEASE_S)
    reader.fund(PRICE * LEASE_S)

    async def submit() -> None:
        async with RelayClient(relay.url) as client:
            (result,) = await client.submit([Submission(bid)])
            assert result.accepted, result

    asyncio.run(submit())
    strict_log = strict.log.read_text
    wait_until(lambda: " lab_refused " in strict_log(encoding="utf-8"), 90, "the refusal")
    assert " disputes_lost=1 " in strict_log(encoding="utf-8")
    wait_until(lambda: " lease_given_up " in strict_log(encoding="utf-8"), 30, "the close")
    opened = [e for e in reader.client.events() if e.name == "LeaseOpened"]
    given_up = opened[-1].args["lease"]
    assert given_up.provider == strict.address
    (gave_up,) = [
        e.args
        for e in reader.client.events()
        if e.name == "LeaseClosed" and e.args["lease_id"] == given_up.id
    ]
    assert (gave_up["paid"], gave_up["refund"]) == (0, given_up.escrow)
    # The lock of a lease closed early comes back once its proof window is over.
    wait_until(lambda: " stake_released " in strict_log(encoding="utf-8"), 90, "the release")
    info = reader.client.provider_info(strict.address)
    assert info.locked == 0
