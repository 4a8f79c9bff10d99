"""The lab daemon's hardware challenge (issue 13), through the real daemons: a relay, two provider
agents and two lab clients as processes on a devnet.

Both providers declare GPUs the labs hold to the ``cpu-test`` class. The honest one answers each
challenge at once: it passes at the lease's start and at the random times after, and its lease
is paid as usual. The other runs ``bench.cheating_provider`` with its challenge answers 10 s late
(a slower GPU than it offers): it fails the first challenge, before any period is paid, so its
lab terminates the lease paying nothing and records the failure against the provider.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.chain.devnet import Devnet
from market.protocol.types import LeaseStatus
from market.roles import Lab
from nodes.lab.challenges import MIN_GAP_S
from nodes.localnet import LocalMarket, command_job

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PRICE = 300
# Room for the start's challenge and one after: none comes in a lease's last MIN_GAP_S.
LEASE_S = int(MIN_GAP_S) * 3 + 6
# Deadlines with room for a busy test machine (about 4.5 s here); the slow provider is 10 s late.
CHALLENGE = (
    'n = 128\nrows = 8\ndefault_class = "cpu-test"\nmean_interval_s = 1.0\nallowance_s = 3.0\n'
)
SLEEP = ["python", "-c", "import time; time.sleep(120)"]


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("challenge"))
        try:
            yield market
        finally:
            market.stop_all()


def _challenges(market: LocalMarket, lab: str) -> list[tuple[str, int, str]]:
    with sqlite3.connect(market.folder / lab / "state.sqlite") as db:
        rows = db.execute("SELECT provider, passed, reason FROM lab_challenges ORDER BY id")
        return [(str(p), int(ok), str(why)) for p, ok, why in rows.fetchall()]


def test_a_provider_too_slow_for_its_gpu_class_is_terminated_unpaid_and_recorded(
    net: LocalMarket,
) -> None:
    relay = net.start_relay()
    honest = net.start_provider(0, [relay.url], model="C0-80GB", price=PRICE)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    slow = net.start_provider(
        1, [relay.url], model="C1-80GB", price=PRICE, module="bench.cheating_provider",
        env={"GPUMARKET_CHALLENGE_DELAY_S": "10", "PYTHONPATH": path},
    )  # fmt: skip
    honest_lab = net.start_lab(
        0, [relay.url], [command_job("C0-80GB", SLEEP, duration=LEASE_S, max_price=PRICE)],
        challenge=CHALLENGE,
    )  # fmt: skip
    cheated_lab = net.start_lab(
        1, [relay.url], [command_job("C1-80GB", SLEEP, duration=LEASE_S, max_price=PRICE)],
        challenge=CHALLENGE,
    )  # fmt: skip
    for lab in (honest_lab, cheated_lab):
        assert lab.wait(240) == 0, lab.log.read_text(encoding="utf-8")[-3000:]

    # The honest provider passed every challenge: at the start and at least once after.
    passed = _challenges(net, honest_lab.name)
    assert len(passed) >= 2, passed
    assert all(p == honest.address and ok for p, ok, _ in passed), passed
    assert " challenge_answered " in honest.log.read_text(encoding="utf-8")
    # The slow one failed its first, for its time, and nothing else was tried.
    [(provider, ok, reason)] = _challenges(net, cheated_lab.name)
    assert provider == slow.address
    assert not ok
    assert "over the" in reason
    assert "deadline for cpu-test" in reason
    cheated_log = cheated_lab.log.read_text(encoding="utf-8")
    assert " challenge_failed " in cheated_log
    assert " receipt_verified " not in cheated_log

    reader = Lab.connect(net.contracts.deployment, "0x" + net.lab_account(0).key.hex())
    opened = {e.args["lease"].provider: e.args["lease"] for e in reader.client.events()
              if e.name == "LeaseOpened"}  # fmt: skip
    honest_state = reader.client.lease_state(opened[honest.address].id)
    slow_state = reader.client.lease_state(opened[slow.address].id)
    assert honest_state.status is slow_state.status is LeaseStatus.CLOSED
    assert honest_state.paid > 0
    assert slow_state.paid == 0  # failed before any period was vouched: none is paid
