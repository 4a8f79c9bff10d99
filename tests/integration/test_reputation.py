"""Reputation on anvil: five leases with known outcomes (completed, terminated early, still running
after a finalized optimistic claim, slashed for equivocation, given up after a disputed claim),
each figure checked exactly from ``market.chain.history`` + ``ReputationBook`` and over HTTP from
a relay that brings its book up to date as blocks arrive."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from market.chain.history import read_history
from market.protocol.eip712 import receipt_hash
from market.protocol.types import Lease, Offer, Receipt, Signed, checksum_address
from market.receipts import ReceiptChain, voucher_amount
from market.reputation import LabRecord, Reputation, ReputationBook, rank_offers
from market.roles import Lab, Provider
from nodes.errors import RequestRefused
from nodes.wire import ZERO_ADDRESS, ReputationReport
from tests.integration.conftest import CHALLENGE_WINDOW, MIN_STAKE, MarketEnv
from tests.integration.relay_harness import RelayHandle, Relays, open_relays, small_limits

pytestmark = pytest.mark.integration

PRICE = 3
GPUS = 2
DURATION = 2000
PENALTY = PRICE * GPUS * DURATION  # a lease's stake lock: one escrow, the default ratio
NOBODY = "0x" + "5a" * 20


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


def _lease(provider: Provider, lab: Lab) -> Lease:
    offer = provider.offer(
        "H100",
        gpus=GPUS,
        memory_gib=80,
        price_per_gpu_second=PRICE,
        min_duration=1,
        max_duration=DURATION,
    )
    bid = lab.bid("H100", gpus=GPUS, max_price_per_gpu_second=PRICE, duration=DURATION)
    return lab.open(offer, bid, GPUS)


def _advance(env: MarketEnv, seconds: int) -> int:
    """Move chain time on by ``seconds`` and mine; returns the new chain time."""
    env.devnet.increase_time(seconds)
    env.devnet.mine()
    return env.devnet.timestamp()


def _full_use(env: MarketEnv, chain: ReceiptChain, seconds: int) -> Signed[Receipt]:
    """The next receipt after ``seconds`` more of chain time, every GPU busy since the start."""
    now = _advance(env, seconds)
    return chain.append(now, chain.lease.gpus * (now - chain.lease.start))


def _paid_by_voucher(provider: Provider, lab: Lab, lease: Lease, receipt: Receipt) -> int:
    """The lab accepts ``receipt`` with a voucher and the provider claims it; returns the total."""
    owed = voucher_amount(lease, receipt)
    provider.claim(lease, lab.pay(lease, owed, receipt_hash(lab.client.domain, receipt)))
    return owed


def _chain(provider: Provider, lease: Lease, head: Signed[Receipt] | None = None) -> ReceiptChain:
    return ReceiptChain(provider.key, provider.client.domain, lease, head=head)


def _run_market(env: MarketEnv, midway: Callable[[], None] = lambda: None) -> list[Reputation]:
    """Run the five leases; returns the reputations they must give, in address order.
    ``midway`` runs once the first lease has closed."""
    p1, p2, lab = env.provider(1), env.provider(3), env.lab(2)
    p1.register(stake=MIN_STAKE, endpoint="p1")
    p2.register(stake=2 * MIN_STAKE, endpoint="p2")
    delays: dict[str, list[int]] = {p1.address: [], p2.address: []}

    def first_claim(provider: Provider, lease: Lease) -> None:
        # The transaction just sent is the latest block (anvil mines one per transaction).
        delays[provider.address].append(env.devnet.timestamp() - lease.start)

    # Completed: two receipts paid by vouchers, then the provider closes.
    a = _lease(p1, lab)
    chain_a = _chain(p1, a)
    _paid_by_voucher(p1, lab, a, _full_use(env, chain_a, 100).message)
    first_claim(p1, a)
    last_a = _full_use(env, chain_a, 100).message
    paid_a = _paid_by_voucher(p1, lab, a, last_a)
    assert p1.close(a) == a.escrow - paid_a
    midway()

    # Terminated early by the lab, paying 40 s of work.
    b = _lease(p1, lab)
    _advance(env, 50)
    paid_b = PRICE * GPUS * 40
    lab.terminate(b, paid_b)
    first_claim(p1, b)

    # Still running, after an optimistic claim paid once its challenge window passed.
    e = _lease(p1, lab)
    posted_e = _full_use(env, _chain(p1, e), 100)
    p1.post_receipt(e, posted_e)
    first_claim(p1, e)
    _advance(env, CHALLENGE_WINDOW)
    paid_e = p1.finalize_claim(e)
    assert paid_e == PRICE * posted_e.message.gpu_seconds_cumulative

    # Slashed: the provider signs two different receipts for seq 1 after one paid receipt.
    c = _lease(p2, lab)
    chain_c = _chain(p2, c)
    first_c = _full_use(env, chain_c, 100)
    paid_c = _paid_by_voucher(p2, lab, c, first_c.message)
    first_claim(p2, c)
    fork = _chain(p2, c, head=first_c)
    told_lab = _full_use(env, chain_c, 100)
    told_others = fork.append(
        told_lab.message.period_end, told_lab.message.gpu_seconds_cumulative - 7
    )
    assert lab.prove_equivocation(c, told_lab, told_others) == PENALTY

    # Unpaid: an optimistic claim the lab disputes, then the provider gives the lease up (the
    # disputed amount stays in escrow until the dispute is settled).
    d = _lease(p2, lab)
    disputed = p2.post_receipt(d, _full_use(env, _chain(p2, d), 100)).amount
    first_claim(p2, d)
    lab.dispute(d)
    assert p2.close(d) == d.escrow - disputed

    gpu_seconds_p1 = last_a.gpu_seconds_cumulative + GPUS * 40
    gpu_seconds_p1 += posted_e.message.gpu_seconds_cumulative
    expected = [
        Reputation(
            p1.address,
            leases_opened=3,
            leases_completed=1,
            leases_terminated=1,
            gpu_seconds_delivered=gpu_seconds_p1,
            tokens_earned=paid_a + paid_b + paid_e,
            claims_posted=1,
            claims_finalized=1,
            median_first_claim_s=statistics.median_low(delays[p1.address]),
        ),
        Reputation(
            p2.address,
            leases_opened=2,
            leases_slashed=1,
            leases_unpaid=1,
            gpu_seconds_delivered=first_c.message.gpu_seconds_cumulative,
            tokens_earned=paid_c,
            claims_posted=1,
            claims_disputed=1,
            slashes=1,
            stake_slashed=PENALTY,
            median_first_claim_s=min(delays[p2.address]),
        ),
    ]
    assert gpu_seconds_p1 * PRICE == paid_a + paid_b + paid_e
    return sorted(expected, key=lambda r: r.provider.lower())


def test_history_folded_by_anyone_gives_every_figure_exactly(env: MarketEnv) -> None:
    expected = _run_market(env)
    reader = env.client()  # no key: anyone
    history = read_history(reader)
    assert history.from_block == env.contracts.deployment.deploy_block
    assert history.to_block == env.devnet.block_number()
    book = ReputationBook()
    history.fold_into(book)
    assert book.reputations() == expected

    # The same history read in small chunks, or in two ranges folded one after the other.
    assert read_history(reader, chunk_blocks=3).events == history.events
    middle = (history.from_block + history.to_block) // 2
    split = ReputationBook()
    read_history(reader, to_block=middle).fold_into(split)
    read_history(reader, middle + 1).fold_into(split)
    assert split.reputations() == expected
    # A lab ranking offers by these figures puts the slashed provider last, even when cheaper.
    honest, slashed = sorted(expected, key=lambda r: r.slashes)
    offers = [_offer(slashed.provider, PRICE - 1), _offer(honest.provider, PRICE)]
    ranked = rank_offers(offers, book.reputations())
    assert [r.offer.provider for r in ranked] == [honest.provider, slashed.provider]


def test_a_relay_serves_the_same_figures_and_follows_new_blocks(
    env: MarketEnv, relays: Relays
) -> None:
    relay = relays.start()
    assert _report(relay).reputations == ()  # nothing happened yet
    partial: list[ReputationReport] = []
    expected = _run_market(env, midway=lambda: partial.append(_report(relay)))

    midway = {r.provider: (r.leases_opened, r.leases_completed) for r in partial[0].reputations}
    p1, p2 = env.provider(1).address, env.provider(3).address
    assert midway == {p1: (1, 1), p2: (0, 0)}  # both registered; one lease completed
    report = _report(relay)
    assert report.reputations == tuple(expected)
    assert (report.from_block, report.to_block) == (
        env.contracts.deployment.deploy_block,
        env.devnet.block_number(),
    )
    assert report.next_after == ZERO_ADDRESS
    one = relay.do(lambda c: c.reputation(expected[1].provider.lower()))
    assert one.reputations == (expected[1],)
    named = relay.do(lambda c: c.reputations([NOBODY, expected[0].provider]))
    # In address order; a provider without history has zero figures.
    assert named.reputations == (Reputation(checksum_address(NOBODY)), expected[0])


def test_a_relay_serves_a_labs_dispute_record(env: MarketEnv, relays: Relays) -> None:
    _run_market(env)  # the lab disputed one claim, and its provider then gave the lease up
    relay = relays.start()
    lab = env.lab(2).address
    record = relay.do(lambda c: c.lab_record(lab.lower()))
    assert record == LabRecord(lab, leases_opened=5, disputes_opened=1)
    assert record.disputes_open == 1
    # Nobody rules (no arbiter): at the deadline the provider takes the claim and the bond.
    claim = next(e for e in env.client().events() if e.name == "ClaimDisputed")
    pending = env.client().claim_slot(claim.args["lease_id"])
    _advance(env, pending.ruling_deadline - env.devnet.timestamp())
    terms = next(
        e.args["lease"]
        for e in env.client().events()
        if e.name == "LeaseOpened" and e.args["lease_id"] == claim.args["lease_id"]
    )
    env.provider(3).finalize_claim(terms)
    record = relay.do(lambda c: c.lab_record(lab))
    assert (record.disputes_lost, record.bonds_lost) == (1, pending.bond)
    assert relay.do(lambda c: c.lab_record(NOBODY)) == LabRecord(checksum_address(NOBODY))


def test_a_relay_pages_every_provider_in_address_order(env: MarketEnv, relays: Relays) -> None:
    expected = _run_market(env)
    relay = relays.start(limits=small_limits(max_reputations=1))
    status, _ = relay.raw("GET", "/v1/reputation")
    assert status == 200
    first = _page(relay, "/v1/reputation?limit=5")  # capped at the relay's page size
    assert (first.reputations, first.next_after) == ((expected[0],), expected[0].provider)
    second = _page(relay, f"/v1/reputation?after={first.next_after}")
    assert (second.reputations, second.next_after) == ((expected[1],), ZERO_ADDRESS)
    assert _report(relay).reputations == tuple(expected)  # the client follows the pages


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/reputation/0x1234", "invalid_field"),
        ("/v1/reputation/not-an-address", "invalid_field"),
        ("/v1/reputation?after=0xzz", "invalid_field"),
        ("/v1/reputation?limit=0", "invalid_field"),
        ("/v1/reputation?limit=-1", "malformed_frame"),
    ],
)
def test_a_bad_reputation_request_is_refused_with_a_code(
    env: MarketEnv, relays: Relays, path: str, code: str
) -> None:
    relay = relays.start()
    with pytest.raises(RequestRefused) as info:
        relay.do(lambda c: c._expect("GET", path, None, ReputationReport))
    assert (info.value.status, info.value.code) == (400, code)


def _offer(provider: str, price: int) -> Offer:
    return Offer(checksum_address(provider), "H100", GPUS, 80, price, 1, DURATION, 2**40, 1)


def _report(relay: RelayHandle) -> ReputationReport:
    return relay.do(lambda c: c.reputation())


def _page(relay: RelayHandle, path: str) -> ReputationReport:
    return relay.do(lambda c: c._expect("GET", path, None, ReputationReport))
