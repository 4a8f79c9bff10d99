"""The lab daemon audits training jobs by re-executing segments (issue 13), through the real
daemons: a relay, two provider agents and two lab clients as processes on a devnet.

Both providers run the same training job for their labs. The honest one's checkpoints all
re-execute to the same bytes: its lease is verified, paid its usage and closed. The other runs
``bench.cheating_provider`` (the agent with its training jobs faking 10% of their segments, the
receipts signed over that output as an honest agent's would be): the lab re-executes the
segments sampled from each receipt, finds one that is not what the checkpoint before it trains
to, stops paying, terminates the lease and records why; the provider is paid no more than the
lab vouched for before the mismatch, and the optimistic claim it posts for the refused receipt
is disputed.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.chain.devnet import Devnet
from market.protocol import codec
from market.protocol.types import LeaseStatus, Signed, Voucher
from market.roles import Lab
from nodes.localnet import LocalMarket, train_job

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PRICE = 300
LEASE_S = 20
SEGMENTS = 30


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("train-audit"))
        try:
            yield market
        finally:
            market.stop_all()


def _failures(market: LocalMarket, lab: str) -> list[str]:
    with sqlite3.connect(market.folder / lab / "state.sqlite") as db:
        rows = db.execute("SELECT failure FROM lab_leases WHERE failure != ''").fetchall()
    return [str(row[0]) for row in rows]


def test_a_provider_that_fakes_training_segments_is_caught_and_not_paid_for_them(
    net: LocalMarket,
) -> None:
    relay = net.start_relay()
    net.start_provider(0, [relay.url], model="T0-80GB", price=PRICE)
    cheater = net.start_provider(
        1, [relay.url], model="T1-80GB", price=PRICE, module="bench.cheating_provider",
        env={"GPUMARKET_SKIP": "0.1", "PYTHONPATH": os.pathsep.join([str(ROOT),
             os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    jobs = [
        train_job(model, duration=LEASE_S, seed=7, segments=SEGMENTS, max_price=PRICE)
        for model in ("T0-80GB", "T1-80GB")
    ]
    honest_lab = net.start_lab(0, [relay.url], jobs[:1])
    cheated_lab = net.start_lab(1, [relay.url], jobs[1:])
    for lab in (honest_lab, cheated_lab):
        assert lab.wait(240) == 0, lab.log.read_text(encoding="utf-8")[-3000:]

    honest_log = honest_lab.log.read_text(encoding="utf-8")
    assert " job_verified " in honest_log
    assert _failures(net, honest_lab.name) == []
    (failure,) = _failures(net, cheated_lab.name)
    assert "OutputCheckFailed" in failure
    assert "(re-executed)" in failure, failure
    cheated_log = cheated_lab.log.read_text(encoding="utf-8")
    assert " lease_failed " in cheated_log
    assert " job_verified " not in cheated_log
    assert " job_started " in cheater.log.read_text(encoding="utf-8")

    reader = Lab.connect(net.contracts.deployment, "0x" + net.lab_account(0).key.hex())
    opened = [e.args["lease"] for e in reader.client.events() if e.name == "LeaseOpened"]
    by_provider = {lease.provider: lease for lease in opened}
    honest = by_provider[net.provider_account(0).address]
    cheated = by_provider[cheater.address]
    honest_state = reader.client.lease_state(honest.id)
    cheated_state = reader.client.lease_state(cheated.id)
    assert honest_state.status is cheated_state.status is LeaseStatus.CLOSED
    assert honest_state.paid > 0  # the honest provider's verified work was paid
    # The cheater is paid at most what the lab vouched for before the mismatch, never the rest.
    with sqlite3.connect(net.folder / cheated_lab.name / "state.sqlite") as db:
        rows = db.execute("SELECT signed FROM lab_vouchers WHERE lease_id = ?", (cheated.id,))
        vouchers = [codec.decode_as(row[0], Signed[Voucher]) for row in rows.fetchall()]
    vouched = max((v.message.cumulative_amount for v in vouchers), default=0)
    assert cheated_state.paid <= vouched < cheated.escrow
    # Its optimistic claim for the receipt the lab refused is disputed; the honest one's is not.
    disputed = {e.args["lease_id"] for e in reader.client.events() if e.name == "ClaimDisputed"}
    assert cheated.id in disputed
    assert honest.id not in disputed
