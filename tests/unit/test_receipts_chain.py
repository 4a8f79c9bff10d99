"""Receipt chains: an honest provider's chain verifies; every way of breaking one is caught, typed.

Issuer (ReceiptChain), verifier (ReceiptVerifier, verify_chain) and equivocation detection.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import (
    InvalidArgument,
    ReceiptChainBroken,
    ReceiptError,
    ReceiptOutputMismatch,
    ReceiptPeriodInvalid,
    ReceiptSignatureInvalid,
    ReceiptUsageDecreased,
    ReceiptUsageImpossible,
    ReceiptWrongLease,
)
from market.protocol.eip712 import receipt_hash
from market.protocol.signing import SigningKey
from market.protocol.types import ZERO_HASH, Lease, Receipt, Signed
from market.receipts.equivocation import detect_equivocation
from market.receipts.issue import ReceiptChain, voucher_amount
from market.receipts.merkle import MerkleTree, output_root
from market.receipts.verify import (
    ChainHead,
    ReceiptVerifier,
    check_chunk,
    reserved_gpu_seconds,
    verify_chain,
)
from tests.unit.test_eip712_signing import DOMAIN, KEY, OTHER_KEY

pytestmark = pytest.mark.unit

LAB = SigningKey(b"\x44" * 32)
START = 1_700_000_000
LEASE = Lease(
    provider=KEY.address,
    lab=LAB.address,
    gpus=4,
    price_per_gpu_second=1000,
    start=START,
    duration=4000,
    salt=b"\x02" * 32,
)
OTHER_LEASE = dataclasses.replace(LEASE, salt=b"\x03" * 32)


def outputs_of(seq: int) -> list[bytes]:
    return [f"lease output {seq}.{i}".encode() for i in range(seq % 4 + 1)]


def honest_chain(n: int, lease: Lease = LEASE, period: int = 60) -> list[Signed[Receipt]]:
    """``n`` receipts of fully used ``period``-second periods, each with its outputs' root."""
    chain = ReceiptChain(KEY, DOMAIN, lease)
    return [
        chain.append(
            lease.start + (k + 1) * period,
            lease.gpus * period * (k + 1),
            output_root=output_root(outputs_of(k)),
        )
        for k in range(n)
    ]


def resigned(signed: Signed[Receipt], **changes: Any) -> Signed[Receipt]:
    return KEY.sign(DOMAIN, dataclasses.replace(signed.message, **changes))


def refused(receipts: list[Signed[Receipt]], error: type[ReceiptError], **kwargs: Any) -> Any:
    with pytest.raises(error) as info:
        verify_chain(DOMAIN, LEASE, receipts, **kwargs)
    assert type(info.value) is error
    return info.value


# --- honest chains ----------------------------------------------------------------------------


def test_honest_chain_verifies_and_links_every_receipt() -> None:
    chain = honest_chain(20)
    head = verify_chain(DOMAIN, LEASE, chain, outputs={k: outputs_of(k) for k in range(20)})
    assert head == ChainHead.of(DOMAIN, chain[-1].message)
    assert head is not None
    assert (head.seq, head.period_end, head.gpu_seconds) == (19, START + 1200, 4 * 1200)
    assert chain[0].message.prev_hash == ZERO_HASH
    for before, after in itertools.pairwise(chain):
        assert after.message.prev_hash == receipt_hash(DOMAIN, before.message)


def test_usage_exactly_at_the_bound_and_a_late_first_period_are_accepted() -> None:
    chain = ReceiptChain(KEY, DOMAIN, LEASE)
    first = chain.append(START + 100, 4 * 100, period_start=START + 90)  # job began late
    last = chain.append(LEASE.end, 4 * 4000)  # the whole lease, every GPU, every second
    assert verify_chain(DOMAIN, LEASE, [first, last]) == ChainHead.of(DOMAIN, last.message)


def test_no_receipts_verify_to_no_head() -> None:
    assert verify_chain(DOMAIN, LEASE, []) is None


@st.composite
def chain_shapes(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """A first-period offset and (period length, usage increment) pairs that fit the lease."""
    offset = draw(st.integers(0, 100))
    lengths = draw(st.lists(st.integers(1, 300), min_size=1, max_size=12))
    steps = [(length, draw(st.integers(0, LEASE.gpus * length))) for length in lengths]
    return offset, steps


def build(offset: int, steps: list[tuple[int, int]]) -> list[Signed[Receipt]]:
    chain = ReceiptChain(KEY, DOMAIN, LEASE)
    end, used, receipts = START + offset, 0, []
    for length, increment in steps:
        start, end, used = end, end + length, used + increment
        receipts.append(chain.append(end, used, period_start=start, metrics_hash=bytes([7]) * 32))
    return receipts


@given(shape=chain_shapes())
@settings(max_examples=60, deadline=None)
def test_any_honest_chain_verifies(shape: tuple[int, list[tuple[int, int]]]) -> None:
    receipts = build(*shape)
    head = verify_chain(DOMAIN, LEASE, receipts)
    assert head is not None
    assert head.seq == len(receipts) - 1


Mutation = Callable[[list[Signed[Receipt]], int], tuple[list[Signed[Receipt]], type[ReceiptError]]]


def _replayed(chain: list[Signed[Receipt]], i: int) -> Any:
    return [*chain[:i], resigned(chain[i], lease_id=OTHER_LEASE.id)], ReceiptWrongLease


def _other_signer(chain: list[Signed[Receipt]], i: int) -> Any:
    return [*chain[:i], OTHER_KEY.sign(DOMAIN, chain[i].message)], ReceiptSignatureInvalid


def _tampered(chain: list[Signed[Receipt]], i: int) -> Any:
    m = chain[i].message
    forged = dataclasses.replace(m, metrics_hash=bytes(32))
    return [*chain[:i], Signed(forged, chain[i].signature)], ReceiptSignatureInvalid


def _out_of_order(chain: list[Signed[Receipt]], i: int) -> Any:
    if i + 1 < len(chain):
        return [*chain[:i], chain[i + 1]], ReceiptChainBroken  # one skipped
    if i > 0:
        return [*chain[:i], chain[i - 1]], ReceiptChainBroken  # one replayed
    return [resigned(chain[0], seq=1)], ReceiptChainBroken  # a first receipt numbered 1


def _bad_link(chain: list[Signed[Receipt]], i: int) -> Any:
    return [*chain[:i], resigned(chain[i], prev_hash=b"\x09" * 32)], ReceiptChainBroken


def _gap(chain: list[Signed[Receipt]], i: int) -> Any:
    m = chain[i].message
    start = LEASE.start - 1 if i == 0 else m.period_start + 1
    return [*chain[:i], resigned(chain[i], period_start=start)], ReceiptPeriodInvalid


def _past_the_end(chain: list[Signed[Receipt]], i: int) -> Any:
    return [*chain[:i], resigned(chain[i], period_end=LEASE.end + 1)], ReceiptPeriodInvalid


def _inflated(chain: list[Signed[Receipt]], i: int) -> Any:
    m = chain[i].message
    limit = LEASE.gpus * (m.period_end - LEASE.start)
    return [
        *chain[:i],
        resigned(chain[i], gpu_seconds_cumulative=limit + 1),
    ], ReceiptUsageImpossible


def _decreased(chain: list[Signed[Receipt]], i: int) -> Any:
    if i == 0 or chain[i - 1].message.gpu_seconds_cumulative == 0:
        return _inflated(chain, i)
    lower = chain[i - 1].message.gpu_seconds_cumulative - 1
    return [*chain[:i], resigned(chain[i], gpu_seconds_cumulative=lower)], ReceiptUsageDecreased


MUTATIONS: list[Mutation] = [
    _replayed,
    _other_signer,
    _tampered,
    _out_of_order,
    _bad_link,
    _gap,
    _past_the_end,
    _inflated,
    _decreased,
]


@given(shape=chain_shapes(), mutation=st.sampled_from(MUTATIONS), data=st.data())
@settings(max_examples=150, deadline=None)
def test_any_broken_rule_is_caught_at_the_receipt_that_breaks_it(
    shape: tuple[int, list[tuple[int, int]]], mutation: Mutation, data: st.DataObject
) -> None:
    chain = build(*shape)
    i = data.draw(st.integers(0, len(chain) - 1))
    broken, error = mutation(chain, i)
    with pytest.raises(error) as info:
        verify_chain(DOMAIN, LEASE, broken)
    assert info.value.seq == broken[-1].message.seq
    verify_chain(DOMAIN, LEASE, broken[:-1])  # everything before it still verifies


# --- each refusal, with the values behind it ---------------------------------------------------


def test_receipt_replayed_from_another_lease_names_both_leases() -> None:
    other = honest_chain(1, OTHER_LEASE)
    err = refused(other, ReceiptWrongLease)
    assert (err.seq, err.expected, err.actual) == (0, LEASE.id, OTHER_LEASE.id)


def test_receipt_signed_by_someone_else_names_the_signer() -> None:
    err = refused([OTHER_KEY.sign(DOMAIN, honest_chain(1)[0].message)], ReceiptSignatureInvalid)
    assert (err.expected, err.recovered) == (KEY.address, OTHER_KEY.address)


def test_missing_receipt_breaks_the_chain() -> None:
    chain = honest_chain(3)
    err = refused([chain[0], chain[2]], ReceiptChainBroken)
    assert (err.seq, err.expected_seq) == (2, 1)


def test_receipt_replayed_twice_breaks_the_chain() -> None:
    chain = honest_chain(2)
    err = refused([chain[0], chain[1], chain[1]], ReceiptChainBroken)
    assert (err.seq, err.expected_seq) == (1, 2)


def test_forked_prev_hash_breaks_the_chain() -> None:
    chain = honest_chain(2)
    fork = resigned(chain[1], prev_hash=b"\x05" * 32)
    err = refused([chain[0], fork], ReceiptChainBroken)
    assert (err.prev_hash, err.expected_prev_hash) == (
        b"\x05" * 32,
        receipt_hash(DOMAIN, chain[0].message),
    )


@pytest.mark.parametrize(
    ("start", "end", "expected_start", "reason"),
    [
        (START + 60, START + 60, START + 60, "empty or reversed"),
        (START + 61, START + 120, START + 60, "does not start where receipt 0 ended"),
        (START + 59, START + 120, START + 60, "does not start where receipt 0 ended"),
        (START + 60, LEASE.end + 1, START + 60, "ends after the lease"),
    ],
)
def test_periods_must_be_contiguous_non_empty_and_inside_the_lease(
    start: int, end: int, expected_start: int, reason: str
) -> None:
    first = honest_chain(1)[0]
    second = KEY.sign(
        DOMAIN,
        Receipt(
            LEASE.id, 1, receipt_hash(DOMAIN, first.message), start, end, 240, ZERO_HASH, ZERO_HASH
        ),
    )
    err = refused([first, second], ReceiptPeriodInvalid)
    assert (err.period_start, err.period_end) == (start, end)
    assert (err.expected_start, err.lease_end) == (expected_start, LEASE.end)
    assert reason in err.reason


def test_first_period_may_not_start_before_the_lease() -> None:
    early = resigned(honest_chain(1)[0], period_start=START - 1)
    err = refused([early], ReceiptPeriodInvalid)
    assert err.expected_start is None
    assert "starts before the lease" in err.reason


def test_receipt_after_an_early_termination_is_refused() -> None:
    chain = honest_chain(3)
    err = refused(chain, ReceiptPeriodInvalid, lease_end=START + 150)
    assert (err.seq, err.lease_end) == (2, START + 150)


def test_decreasing_usage_is_refused_with_both_values() -> None:
    chain = honest_chain(2)
    err = refused([chain[0], resigned(chain[1], gpu_seconds_cumulative=239)], ReceiptUsageDecreased)
    assert (err.seq, err.previous, err.current) == (1, 240, 239)


def test_inflated_usage_is_refused_with_the_bound_it_breaks() -> None:
    receipt = resigned(honest_chain(1)[0], gpu_seconds_cumulative=241)
    err = refused([receipt], ReceiptUsageImpossible)
    assert (err.gpu_seconds, err.gpus, err.elapsed, err.limit) == (241, 4, 60, 240)


def test_forged_output_is_caught_by_the_merkle_root() -> None:
    chain = honest_chain(2)
    forged = [*outputs_of(1)[:-1], b"not what was computed"]
    err = refused(chain, ReceiptOutputMismatch, outputs={0: outputs_of(0), 1: forged})
    assert err.seq == 1
    assert (err.output_root, err.computed_root) == (
        chain[1].message.output_root,
        output_root(forged),
    )
    assert err.chunk_index is None


def test_outputs_checked_chunk_by_chunk_with_proofs() -> None:
    receipt = honest_chain(4)[3].message
    chunks = outputs_of(3)
    tree = MerkleTree.of_chunks(chunks)
    for i, data in enumerate(chunks):
        check_chunk(receipt, i, data, tree.proof(i))  # does not raise
    with pytest.raises(ReceiptOutputMismatch) as info:
        check_chunk(receipt, 2, b"forged", tree.proof(2))
    assert (info.value.seq, info.value.chunk_index) == (3, 2)
    with pytest.raises(ReceiptOutputMismatch):  # a true chunk, at the wrong position
        check_chunk(receipt, 1, chunks[2], tree.proof(1))


def test_verifier_resumes_after_an_accepted_head() -> None:
    chain = honest_chain(5)
    verifier = ReceiptVerifier(DOMAIN, LEASE, head=ChainHead.of(DOMAIN, chain[2].message))
    assert verifier.accept(chain[3]).seq == 3
    assert verifier.accept(chain[4]) == verifier.head


def test_verifier_refuses_a_lease_end_outside_the_lease() -> None:
    with pytest.raises(InvalidArgument, match="outside"):
        ReceiptVerifier(DOMAIN, LEASE, lease_end=LEASE.end + 1)


# --- the issuer ---------------------------------------------------------------------------------


def test_issuer_refuses_to_sign_a_receipt_a_lab_would_refuse() -> None:
    chain = ReceiptChain(KEY, DOMAIN, LEASE)
    first = chain.append(START + 60, 200)
    with pytest.raises(ReceiptUsageDecreased):
        chain.append(START + 120, 199)
    with pytest.raises(ReceiptUsageImpossible):
        chain.append(START + 120, 4 * 120 + 1)
    with pytest.raises(ReceiptPeriodInvalid):
        chain.append(LEASE.end + 1, 300)
    assert chain.head == first  # nothing was signed
    assert (chain.next_seq, chain.next_period_start) == (1, START + 60)


def test_issuer_resumes_from_its_last_receipt() -> None:
    before = honest_chain(3)
    chain = ReceiptChain(KEY, DOMAIN, LEASE, head=before[-1])
    nxt = chain.append(START + 240, 4 * 240)
    assert nxt.message.seq == 3
    assert verify_chain(DOMAIN, LEASE, [*before, nxt]) == ChainHead.of(DOMAIN, nxt.message)


def test_issuer_must_hold_the_leases_receipt_key() -> None:
    with pytest.raises(InvalidArgument, match="not the lease's receipt key"):
        ReceiptChain(OTHER_KEY, DOMAIN, LEASE)
    named = dataclasses.replace(LEASE, receipt_signer=OTHER_KEY.address)
    with pytest.raises(InvalidArgument, match="not the lease's receipt key"):
        ReceiptChain(KEY, DOMAIN, named)  # the provider's own key, once the offer named another


def test_receipts_verify_by_the_named_receipt_key_only() -> None:
    named = dataclasses.replace(LEASE, receipt_signer=OTHER_KEY.address)
    signed = ReceiptChain(OTHER_KEY, DOMAIN, named).append(START + 60, 4 * 60)
    assert verify_chain(DOMAIN, named, [signed]) == ChainHead.of(DOMAIN, signed.message)
    by_provider = KEY.sign(DOMAIN, signed.message)  # the provider's own key: not the lease's
    with pytest.raises(ReceiptSignatureInvalid) as info:
        verify_chain(DOMAIN, named, [by_provider])
    assert (info.value.expected, info.value.recovered) == (OTHER_KEY.address, KEY.address)


def test_reserved_gpu_seconds_run_from_the_start_to_the_end_or_termination() -> None:
    assert reserved_gpu_seconds(LEASE, START - 5) == 0
    assert reserved_gpu_seconds(LEASE, START + 60) == 4 * 60
    assert reserved_gpu_seconds(LEASE, START + 10_000) == 4 * 4000  # never past the end
    assert reserved_gpu_seconds(LEASE, START + 60, end=START + 30) == 4 * 30  # terminated


def test_voucher_amount_is_price_times_usage_capped_at_the_escrow() -> None:
    receipt = honest_chain(1)[0].message
    assert voucher_amount(LEASE, receipt) == 1000 * 240
    everything = dataclasses.replace(receipt, gpu_seconds_cumulative=4 * 4000 + 5)
    assert voucher_amount(LEASE, everything) == LEASE.escrow == 1000 * 4 * 4000


# --- equivocation -------------------------------------------------------------------------------


def test_two_different_receipts_for_one_period_are_equivocation() -> None:
    honest = honest_chain(2)[1]
    lower = resigned(honest, gpu_seconds_cumulative=300)
    assert detect_equivocation(DOMAIN, honest, lower)
    assert detect_equivocation(DOMAIN, lower, honest, provider=KEY.address)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda s: s, id="the-same-receipt"),
        pytest.param(lambda s: resigned(s, seq=s.message.seq + 1), id="another-seq"),
        pytest.param(lambda s: resigned(s, lease_id=OTHER_LEASE.id), id="another-lease"),
        pytest.param(
            lambda s: OTHER_KEY.sign(
                DOMAIN, dataclasses.replace(s.message, metrics_hash=bytes(32))
            ),
            id="another-signer",
        ),
        pytest.param(
            lambda s: Signed(dataclasses.replace(s.message, metrics_hash=bytes(32)), s.signature),
            id="a-forged-signature",
        ),
        pytest.param(
            lambda s: Signed(s.message, s.signature[:64] + b"\x00"), id="a-malformed-signature"
        ),
    ],
)
def test_other_pairs_are_not_equivocation(other: Callable[[Signed[Receipt]], Any]) -> None:
    honest = honest_chain(2)[1]
    assert not detect_equivocation(DOMAIN, honest, other(honest))


def test_equivocation_by_someone_other_than_the_named_provider_does_not_count() -> None:
    a = OTHER_KEY.sign(DOMAIN, honest_chain(1)[0].message)
    b = OTHER_KEY.sign(DOMAIN, dataclasses.replace(a.message, gpu_seconds_cumulative=1))
    assert detect_equivocation(DOMAIN, a, b)
    assert not detect_equivocation(DOMAIN, a, b, provider=KEY.address)
