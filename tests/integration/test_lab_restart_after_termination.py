"""A lab SIGKILLed right after it terminated a lease (its job verified) and restarted before the
provider's last receipt (metered up to the termination) reached it.

Found by the soak (``python -m bench.soak --kills 50 --outages 5 --seed 1``): the restarted lab
challenged the ended lease's hardware at once (its challenge schedule is kept in memory), the
honest provider refused ("the lease has ended"), the lab counted the refusal as a failed
challenge, failed the lease, left the last receipt unpaid, and disputed the provider's
optimistic claim for it: an honest provider's pay held until the ruling deadline and an honest
lab's bond forfeited. A lease the lab has itself decided to terminate (or that has ended) has no
hardware left to challenge."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from market.chain.client import MarketClient
from market.chain.devnet import Devnet
from market.protocol import codec
from market.protocol.types import Lease, LeaseStatus, Receipt, Signed
from nodes.localnet import Daemon, LocalMarket, command_job
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
MODEL = "R0-80GB"
LEASE_S = 30  # the job is over in a second: the lab terminates the lease long before its end
ROUND_S = 180


def test_lab_restarted_after_terminating_pays_the_last_receipt_and_disputes_nothing(
    tmp_path: Path,
) -> None:
    killed = threading.Event()
    labs: list[Daemon] = []

    def on_log(name: str, line: str) -> None:
        if name == "lab0" and " lease_terminated " in line and not killed.is_set():
            labs[0].kill()  # at once, from the log reader: before the last receipt is fetched
            killed.set()

    with Devnet.start(accounts=12, block_time=1) as dev:
        net = LocalMarket(dev, tmp_path, on_log=on_log)
        try:
            relay = net.start_relay()
            provider = net.start_provider(0, [relay.url], model=MODEL, price=400)
            job = command_job(MODEL, ["python", "-c", "print('done')"], duration=LEASE_S)
            labs.append(net.start_lab(0, [relay.url], [job]))
            lab = labs[0]
            wait_until(killed.is_set, 90, "the lab to terminate the lease")
            wait_until(lambda: not lab.running, 10, "the killed lab to be gone")
            net.restart(lab)
            assert lab.wait(ROUND_S) == 0, lab.log.read_text(encoding="utf-8")[-3000:]
            reader = MarketClient.connect(net.contracts.deployment)
            events = reader.events()
            (lease,) = [e.args["lease"] for e in events if e.name == "LeaseOpened"]
            assert isinstance(lease, Lease)
            state = reader.lease_state(lease.id)
            with sqlite3.connect(tmp_path / "provider0" / "state.sqlite") as db:
                (best,) = db.execute(
                    "SELECT MAX(amount) FROM vouchers WHERE lease_id = ?", (lease.id,)
                ).fetchone()
                (last,) = db.execute(
                    "SELECT signed FROM receipts WHERE lease_id = ? ORDER BY seq DESC LIMIT 1",
                    (lease.id,),
                ).fetchone()
            receipt = codec.decode_as(last, Signed[Receipt]).message
            log = lab.log.read_text(encoding="utf-8")
            assert " challenge_failed " not in log
            assert " lease_failed " not in log
            assert [e.name for e in events if e.name in ("ClaimDisputed", "ReceiptPosted")] == []
            assert state.status is LeaseStatus.CLOSED
            terminated = [e.args["paid"] for e in events if e.name == "LeaseTerminated"]
            # The last receipt, up to the termination, was paid by voucher after the restart.
            assert receipt.period_end == state.end
            owed = lease.price_per_gpu_second * receipt.gpu_seconds_cumulative
            assert state.paid == owed == int.from_bytes(best, "big") >= terminated[0]
            assert provider.terminate() == 0
        finally:
            net.stop_all()
