"""Orders signed by contracts (ERC-1271): ECDSA first, then the checker, as the Market decides.

The checker here answers from a table; ``tests/integration/test_erc1271_orders.py`` runs the real
one against contracts on anvil and compares with the Market itself.
"""

from __future__ import annotations

import dataclasses

import pytest
from eth_utils.address import to_checksum_address

from market.chain.erc1271 import _Cache, _init_code_prefix, call_gas
from market.errors import InvalidField, InvalidSignature, RpcUnavailable
from market.matching import Submission, verify_order, verify_orders
from market.matching.verified import PARALLEL_MIN_BATCH
from market.protocol.eip712 import Domain, digest
from market.protocol.signing import SigningKey, to_compact, verify, verify_signature
from market.protocol.types import Bid, Offer, Signed
from tests.unit.test_protocol_types import BASE

pytestmark = pytest.mark.unit

DOMAIN = Domain(31337, to_checksum_address("0x" + "5f" * 20))
OWNER = SigningKey(b"\x42" * 32)
STRANGER = SigningKey(b"\x43" * 32)
WALLET = to_checksum_address("0x" + "a1" * 20)


class TableChecker:
    """Accepts what ``accepted`` holds, as (signer, digest, signature); counts the questions."""

    def __init__(self, accepted: set[tuple[str, bytes, bytes]] | None = None) -> None:
        self.accepted = accepted or set()
        self.asked: list[tuple[str, bytes, bytes]] = []

    def is_valid_signature(self, signer: str, digest: bytes, signature: bytes) -> bool:
        self.asked.append((signer, digest, signature))
        return (signer, digest, signature) in self.accepted


class DownChecker:
    def is_valid_signature(self, signer: str, digest: bytes, signature: bytes) -> bool:
        raise RpcUnavailable("http://rpc.invalid", "ConnectionError: refused")


def _wallet_bid(nonce: int = 0, signature: bytes | None = None) -> Signed[Bid]:
    """A bid for WALLET, signed by its owner key (what the wallet's ERC-1271 check accepts) or
    carrying ``signature``."""
    bid = dataclasses.replace(BASE[Bid], lab=WALLET, nonce=nonce, voucher_signer=OWNER.address)
    return Signed(bid, signature or OWNER.unsafe_sign_hash(digest(DOMAIN, bid)))


def _accepting(*orders: Signed[Bid]) -> TableChecker:
    return TableChecker({(WALLET, digest(DOMAIN, o.message), o.signature) for o in orders})


def test_ecdsa_order_is_verified_without_asking_the_checker() -> None:
    bid = dataclasses.replace(BASE[Bid], lab=OWNER.address)
    full = OWNER.sign(DOMAIN, bid)
    checker = TableChecker()
    valid, rejected = verify_orders(
        DOMAIN, [full, Signed(bid, to_compact(full.signature))], checker=checker
    )
    assert [v.signed for v in valid] == [full, Signed(bid, to_compact(full.signature))]
    assert rejected == []
    assert checker.asked == []


@pytest.mark.parametrize("length", [65, 64, 1, 300, Signed.MAX_SIGNATURE_LENGTH])
def test_contract_signed_order_is_verified_through_the_checker(length: int) -> None:
    owner_sig = OWNER.unsafe_sign_hash(digest(DOMAIN, _wallet_bid().message))
    signature = {65: owner_sig, 64: to_compact(owner_sig)}.get(length, b"\x5a" * length)
    signed = _wallet_bid(signature=signature)
    checker = _accepting(signed)

    verified = verify_order(DOMAIN, signed, checker=checker)

    h = digest(DOMAIN, signed.message)
    assert (verified.signed, verified.hash, verified.signer) == (signed, h, WALLET)
    assert checker.asked == [(WALLET, h, signature)]
    verify(DOMAIN, signed, checker=checker)


@pytest.mark.parametrize(
    ("length", "recovered", "reason"),
    [
        (65, OWNER.address, "signed by another account"),
        (1, None, "length 1: an ECDSA signature is 65 bytes, or 64 in EIP-2098 form (a "
         "contract signer's signature needs an ERC-1271 check, not made here)"),
    ],
)  # fmt: skip
def test_contract_signed_order_is_refused_without_a_checker(
    length: int, recovered: str | None, reason: str
) -> None:
    signed = _wallet_bid(signature=None if length == 65 else b"\x5a" * length)
    valid, rejected = verify_orders(DOMAIN, [signed])
    assert valid == []
    [r] = rejected
    assert isinstance(r.error, InvalidSignature)
    h = digest(DOMAIN, signed.message)
    assert (r.index, r.error.digest, r.error.expected) == (0, h, WALLET)
    assert (r.error.recovered, r.error.reason) == (recovered, reason)


def test_order_the_contract_refuses_is_an_invalid_signature_naming_both_checks() -> None:
    signed = _wallet_bid(signature=STRANGER.unsafe_sign_hash(digest(DOMAIN, _wallet_bid().message)))
    checker = TableChecker()
    valid, rejected = verify_orders(DOMAIN, [signed], checker=checker)
    assert valid == []
    [r] = rejected
    assert isinstance(r.error, InvalidSignature)
    assert (r.error.expected, r.error.recovered) == (WALLET, STRANGER.address)
    assert (
        r.error.reason
        == "signed by another account; nor does the signer accept it through ERC-1271"
    )
    assert checker.asked == [(WALLET, digest(DOMAIN, signed.message), signed.signature)]


def test_malleable_ecdsa_signature_is_still_offered_to_a_contract_signer() -> None:
    """As on-chain: a failed ECDSA check of any kind falls through to ERC-1271."""
    good = _wallet_bid()
    s = int.from_bytes(good.signature[32:64], "big")
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    twin = good.signature[:32] + (n - s).to_bytes(32, "big") + bytes([55 - good.signature[64]])
    signed = _wallet_bid(signature=twin)
    with pytest.raises(InvalidSignature, match=r"malleable.*nor does the signer accept it"):
        verify(DOMAIN, signed, checker=TableChecker())
    verify(DOMAIN, signed, checker=_accepting(signed))


@pytest.mark.parametrize("side", ["offer", "bid"])
def test_contract_signed_order_must_name_its_evidence_key(side: str) -> None:
    """As the Market's MarketSignerKeyRequired: a wallet's receipts and vouchers are signed by a
    fixed ECDSA key its order names, never by the wallet's revocable ERC-1271 answer."""
    order: Offer | Bid = (
        dataclasses.replace(BASE[Offer], provider=WALLET)
        if side == "offer"
        else dataclasses.replace(BASE[Bid], lab=WALLET)
    )
    signed = Signed(order, b"\x5a" * 100)
    checker = TableChecker({(WALLET, digest(DOMAIN, order), signed.signature)})
    valid, rejected = verify_orders(DOMAIN, [Submission(signed)], checker=checker)
    assert valid == []
    [r] = rejected
    assert isinstance(r.error, InvalidField)
    expected = ("Offer", "receipt_signer") if side == "offer" else ("Bid", "voucher_signer")
    assert (r.error.message_type, r.error.field) == expected
    named = dataclasses.replace(
        order,
        **{expected[1]: OWNER.address},  # type: ignore[arg-type]
    )
    signed = Signed(named, b"\x5a" * 100)
    checker = TableChecker({(WALLET, digest(DOMAIN, named), signed.signature)})
    valid, rejected = verify_orders(DOMAIN, [signed], checker=checker)
    assert [v.signed for v in valid] == [signed]


def test_checker_outage_fails_the_whole_batch_with_rpc_unavailable() -> None:
    ecdsa = OWNER.sign(DOMAIN, dataclasses.replace(BASE[Bid], lab=OWNER.address))
    with pytest.raises(RpcUnavailable):
        verify_orders(DOMAIN, [ecdsa, _wallet_bid()], checker=DownChecker())
    # ECDSA orders alone never ask the checker, so an outage cannot refuse them.
    valid, _ = verify_orders(DOMAIN, [ecdsa], checker=DownChecker())
    assert [v.signed for v in valid] == [ecdsa]


def test_large_batch_on_threads_mixes_ecdsa_and_contract_signers_in_input_order() -> None:
    orders: list[Signed[Bid]] = []
    for i in range(PARALLEL_MIN_BATCH + 9):
        if i % 3 == 0:
            orders.append(_wallet_bid(nonce=i, signature=bytes([i % 251 + 1]) * 70))
        else:
            bid = dataclasses.replace(BASE[Bid], lab=OWNER.address, nonce=i)
            orders.append(OWNER.sign(DOMAIN, bid))
    checker = _accepting(*(o for i, o in enumerate(orders) if i % 6 == 0))

    results = [verify_orders(DOMAIN, orders, threads=n, checker=checker) for n in (1, 4)]

    for valid, rejected in results:
        assert [v.signed for v in valid] == [o for i, o in enumerate(orders) if i % 6 != 3]
        assert [r.index for r in rejected] == [i for i in range(len(orders)) if i % 6 == 3]


@pytest.mark.parametrize("length", [63, 66, 130])
def test_verify_signature_refuses_other_lengths_with_a_typed_error(length: int) -> None:
    h = digest(DOMAIN, BASE[Bid])
    with pytest.raises(InvalidSignature) as info:
        verify_signature(h, OWNER.address, b"\x01" * length)
    assert (info.value.digest, info.value.expected, info.value.recovered) == (
        h,
        OWNER.address,
        None,
    )


# --- the chain checker's parts ---------------------------------------------------------------


def test_checking_code_prefix_is_48_bytes_with_the_gas_cap_in_its_push4() -> None:
    prefix = _init_code_prefix(50_000)
    assert len(prefix) == 48
    assert prefix[30:35] == b"\x63" + (50_000).to_bytes(4, "big")
    assert prefix[35] == 0xFA  # STATICCALL
    assert _init_code_prefix(1)[:30] == prefix[:30]


def test_call_gas_covers_the_cap_after_the_63_64_rule_and_grows_with_the_code() -> None:
    assert call_gas(50_000, 200) - call_gas(0, 200) >= 50_000 * 64 // 63
    assert call_gas(50_000, 4_300) - call_gas(50_000, 200) == 40 * 4_100


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cache_evicts_the_least_recently_used_and_forgets_after_its_ttl() -> None:
    clock = FakeClock()
    cache: _Cache[str, bool] = _Cache(2, ttl_s=10.0, clock=clock)
    cache.put("a", True)
    cache.put("b", False)
    assert cache.get("a") is True  # "a" is now the most recently used
    cache.put("c", True)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (True, None, True)
    clock.now += 9.9
    assert cache.get("a") is True
    clock.now += 0.1
    assert (cache.get("a"), cache.get("c")) == (None, None)
    assert len(cache) == 0
