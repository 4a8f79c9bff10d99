"""Issue 14: the lab client and the provider agent notice a reorganisation deeper than their
confirmations (a block they applied replaced), drop the leases the new branch does not have, and
follow the new branch from the fork, so a lease opened again there is taken up as a new one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from market.chain.client import MarketClient
from market.protocol.signing import SigningKey
from market.protocol.types import ZERO_HASH, Receipt
from nodes.jobs.spec import CommandParams, JobSpec, MatmulParams
from nodes.lab.config import JobConfig
from nodes.lab.ledger import Ledger
from nodes.logs import get_logger
from nodes.provider.config import (
    ChainConfig,
    InventoryConfig,
    JobLimits,
    KeyConfig,
    MeteringConfig,
    PricingConfig,
    ProviderConfig,
)
from nodes.provider.confinement import Confinement
from nodes.provider.inventory import Inventory
from nodes.provider.store import AgentStore
from nodes.provider.work import LeaseWork
from nodes.state import DurableChain
from nodes.state.records import Records
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import (
    LAB,
    MODEL,
    OUTSIDER,
    PROVIDER,
    bid,
    fund_market,
    offer,
    reorg,
)

pytestmark = pytest.mark.integration

Logged = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def market(env: MarketEnv) -> MarketEnv:
    return fund_market(env)


def _outsider(market: MarketEnv) -> MarketClient:
    """A fresh client each time: a reorganisation frees the nonces of orphaned transactions."""
    return market.client(market.devnet.accounts[OUTSIDER])


@pytest.fixture
def lab_ledger(market: MarketEnv, tmp_path: Path) -> Iterator[tuple[Ledger, Logged]]:
    logged: Logged = []

    def emit(event: str, **fields: Any) -> None:
        logged.append((event, fields))

    key = bytes(market.devnet.accounts[LAB].key)
    ledger = Ledger.open(tmp_path / "lab.sqlite", market.contracts.deployment, key, emit)
    try:
        yield ledger, logged
    finally:
        ledger.close()


def test_the_lab_forgets_a_lease_a_deep_reorg_removed_and_takes_up_its_reopening(
    market: MarketEnv, lab_ledger: tuple[Ledger, Logged]
) -> None:
    ledger, logged = lab_ledger
    job = JobConfig(MODEL, 2, 5, 3600, MatmulParams(n=64, seed=1, rounds=1))
    [record] = ledger.prepare_jobs([job], 3600)
    o = offer(market)
    for _ in range(2):  # blocks applied one poll each: their hashes in the ledger's window
        market.devnet.mine(1)
        ledger.poll_events()
    lease = _outsider(market).open_lease(o, record.bid, 2)
    opened_in = ledger.poll_events()
    assert ledger.store.lease(lease.id) is not None
    assert ledger.check_reorg() is None  # nothing replaced: one read, nothing done

    fork = reorg(market, 2)  # the lease's block and the one before
    assert ledger.poll_events() == opened_in
    assert ledger.store.lease(lease.id) is None  # no paying, no following
    assert ledger.store.leases() == []
    assert [(e, f) for e, f in logged if e in ("reorg_detected", "lease_gone")] == [
        ("reorg_detected", {"depth": opened_in - fork + 1, "fork": fork, "beyond_window": False}),
        ("lease_gone", {"lease": lease.id, "job": record.idx}),
    ]
    assert ledger.store.cursor() == opened_in + 1  # the new branch followed to its head

    again = _outsider(market).open_lease(o, record.bid, 2)  # the bid fills on the new branch
    ledger.poll_events()
    taken = ledger.store.lease(again.id)
    assert taken is not None
    assert taken.phase == "opened"
    assert [e for e, _ in logged].count("reorg_detected") == 1


@pytest.fixture
def provider_work(market: MarketEnv, tmp_path: Path) -> Iterator[LeaseWork]:
    """The provider agent's chain side, without its HTTP side or jobs: what follows events."""
    limits = JobLimits(wall_time_s=60, memory_bytes=None, sandbox="none")
    config = ProviderConfig(
        state=tmp_path / "provider.sqlite",
        key=KeyConfig(tmp_path / "key.json", "UNUSED"),
        chain=ChainConfig(None, None, confirmations=0),
        inventory=InventoryConfig(detect=True),  # the work is given its inventory below
        pricing=PricingConfig("fixed", {}),
        metering=MeteringConfig(interval_s=1),
        jobs=limits,
    )
    account = market.devnet.accounts[PROVIDER]
    client = market.client(account)
    store = AgentStore.open(config.state)
    log = get_logger("gpumarket.provider")
    work = LeaseWork(
        config, SigningKey(account.key), client, store, Records(store.db, client.domain),
        DurableChain(store.db, client), client.domain, tmp_path / "jobs", log,
        Inventory((), "declared"), Confinement.prepare(limits, tag="reorg-test", log=log),
    )  # fmt: skip
    try:
        yield work
    finally:
        store.db.close()


def test_the_provider_drops_a_lease_a_deep_reorg_removed_and_takes_up_its_reopening(
    market: MarketEnv, provider_work: LeaseWork, caplog: pytest.LogCaptureFixture
) -> None:
    work = provider_work
    o, b = offer(market), bid(market, gpus=2)
    for _ in range(2):  # blocks applied one poll each: their hashes in the agent's window
        market.devnet.mine(1)
        work.follow()
    lease = _outsider(market).open_lease(o, b, 2)
    work.follow()
    assert work.store.job(lease.id) is not None
    assert work.records.open_leases() == [lease]
    opened_in = market.client().head().number
    # The lab's job arrived (as the HTTP side stores it) and runs until stopped.
    forever = CommandParams(("python", "-c", "import signal; signal.pause()"))
    assert work.store.set_spec(lease.id, JobSpec(b"\x01" * 32, forever).encode())
    work.start_jobs()
    job = work.running[lease.id].job
    assert job.poll() is None

    with caplog.at_level(logging.INFO, logger="gpumarket.provider"):
        fork = reorg(market, 2)  # the lease's block and the one before
        work.follow()
    logged = [(r.event, r.fields) for r in caplog.records if hasattr(r, "event")]  # type: ignore[attr-defined]
    assert [(e, f) for e, f in logged if e in ("reorg_detected", "lease_gone")] == [
        ("reorg_detected", {"depth": opened_in - fork + 1, "fork": fork, "beyond_window": False}),
        ("lease_gone", {"lease": lease.id, "lab": lease.lab}),
    ]
    assert job.poll() is not None  # stopped
    assert work.running == {}
    assert work.store.job(lease.id) is None  # no job to start, no receipt to sign
    assert work.records.open_leases() == []
    assert work.store.cursor(0) == opened_in + 1

    again = _outsider(market).open_lease(o, b, 2)  # the same orders fill on the new branch
    work.follow()
    assert work.store.job(again.id) is not None
    assert work.records.open_leases() == [again]


def test_a_removed_lease_the_provider_signed_receipts_for_stays_ended_with_its_receipts(
    market: MarketEnv, provider_work: LeaseWork
) -> None:
    """Its receipts stay: a second receipt chain for the same lease id would be equivocation."""
    work = provider_work
    o, b = offer(market), bid(market, gpus=2)
    for _ in range(2):
        market.devnet.mine(1)
        work.follow()
    lease = _outsider(market).open_lease(o, b, 2)
    work.follow()
    receipt = Receipt(lease.id, 0, ZERO_HASH, lease.start, lease.start + 1, 2, ZERO_HASH, ZERO_HASH)
    work.records.save_receipt(work.key.sign(work.domain, receipt))

    reorg(market, 2)
    work.follow()
    row = work.store.job(lease.id)
    assert row is not None
    assert row.ended_at is not None  # no receipt is signed for it again
    assert work.records.open_leases() == []
    assert work.records.awaiting_release() == []  # no stake lock: the lease does not exist
    assert [r.message for r in work.records.receipts(lease.id)] == [receipt]
