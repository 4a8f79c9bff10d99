"""An honest lab never takes back what it vouched for (issue 14, bug E). The provider agent is
killed mid-lease, before it has claimed any of the lab's vouchers (it claims only every hour
here), and stays down past the lease's end and the claim window, as in a long outage. The lab,
closing the lease, first redeems its own best voucher for the provider, so the provider is paid
exactly what the lab signed and only the rest is refunded."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from market.chain.devnet import Devnet
from market.protocol import codec
from market.protocol.types import LeaseStatus, Signed, Voucher
from market.roles import Lab
from nodes.localnet import LocalMarket, command_job
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
MODEL = "E0-80GB"
PRICE = 300
LEASE_S = 24


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("fair"))
        try:
            yield market
        finally:
            market.stop_all()


def _best_voucher(market: LocalMarket, lab_name: str) -> Signed[Voucher] | None:
    with sqlite3.connect(market.folder / lab_name / "state.sqlite") as db:
        row = db.execute("SELECT signed FROM lab_vouchers ORDER BY amount DESC LIMIT 1").fetchone()
    return None if row is None else codec.decode_as(row[0], Signed[Voucher])


def test_a_lab_closing_after_a_provider_outage_pays_its_best_voucher_first(
    net: LocalMarket,
) -> None:
    relay = net.start_relay()
    provider = net.start_provider(
        0, [relay.url], model=MODEL, price=PRICE, agent="claim_interval_s = 3600\n"
    )
    acct = net.lab_account(0)
    net.fund(acct)
    job = command_job(MODEL, ["python", "-c", "import time; time.sleep(120)"], duration=LEASE_S,
                      max_price=PRICE)  # fmt: skip
    lab = net.start_lab(0, [relay.url], [job])
    wait_until(lambda: _best_voucher(net, lab.name) is not None, 90, "a voucher from the lab")
    provider.kill()  # SIGKILL: it never claims, posts or closes again
    voucher = _best_voucher(net, lab.name)
    assert voucher is not None
    assert lab.wait(180) == 0, lab.log.read_text(encoding="utf-8")[-3000:]
    best = _best_voucher(net, lab.name)
    assert best is not None
    reader = Lab.connect(net.contracts.deployment, "0x" + acct.key.hex())
    events = reader.client.events()
    (lease,) = [e.args["lease"] for e in events if e.name == "LeaseOpened"]
    mine = [e for e in events if e.args.get("lease_id") == lease.id]
    claimed = [e.args["amount"] for e in mine if e.name == "Claimed"]
    (closed,) = [e.args for e in mine if e.name == "LeaseClosed"]
    state = reader.client.lease_state(lease.id)
    assert state.status is LeaseStatus.CLOSED
    assert best.message.cumulative_amount >= voucher.message.cumulative_amount > 0
    # The provider was paid exactly the lab's best voucher, once; the rest came back.
    assert sum(claimed) == state.paid == best.message.cumulative_amount == closed["paid"]
    assert closed["refund"] == lease.escrow - state.paid
    assert " voucher_redeemed_for_provider " in lab.log.read_text(encoding="utf-8")
    wait_until(lambda: reader.withdrawable() == 0, 30, "the lab to withdraw its refund")
