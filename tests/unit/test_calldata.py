"""Calldata encoded by eth_abi directly is byte for byte web3's, for the calls the client makes."""

from __future__ import annotations

from typing import Any, cast

import pytest
from eth_abi.exceptions import EncodingTypeError
from web3 import Web3

from market.artifacts import load_artifact
from market.chain.calldata import Calldata
from market.chain.client import BatchMatch, batch_arguments
from market.protocol.types import Bid, Billing, Lease, Offer, Signed
from tests.unit.order_factory import Orders

pytestmark = pytest.mark.unit


def _lease(gpus: int) -> Lease:
    return Lease(
        provider=Web3.to_checksum_address("0x" + "11" * 20),
        lab=Web3.to_checksum_address("0x" + "22" * 20),
        gpus=gpus,
        price_per_gpu_second=7,
        start=1_000,
        duration=3600,
        salt=bytes([gpus]) * 32,
        billing=Billing.METERED,
    )


def _calls() -> list[tuple[str, str, tuple[Any, ...]]]:
    orders = Orders()
    offers = [orders.offer(provider=p) for p in (0, 1)]
    bids = [orders.bid(lab=lab, gpus=2) for lab in (0, 1, 0)]
    matches = [
        BatchMatch(cast(Signed[Offer], offers[i % 2].signed), cast(Signed[Bid], b.signed), 2)
        for i, b in enumerate(bids)
    ]
    batch = batch_arguments(matches)
    leases = [_lease(g) for g in (1, 2, 3)]
    claims = [(x.as_tuple(), 10 * x.gpus, bytes([x.gpus]) * 32, b"\x05" * 65) for x in leases]
    return [
        ("Market", "openLeaseBatch", batch),
        ("Market", "openLeaseAuction", (*batch, 9)),
        ("Market", "claimBatch", (claims,)),
        ("Market", "closeLeaseBatch", ([x.as_tuple() for x in leases],)),
        ("Market", "finalizeClaimBatch", ([x.as_tuple() for x in leases],)),
        ("Market", "closeLease", (leases[0].as_tuple(),)),
        ("Market", "cancelOrder", (b"\x42" * 32,)),
        ("Market", "withdraw", ()),
        ("Market", "register", (10**8, "http://p1", b"\x01" * 32, b"\x02" * 32)),
        ("TestUSD", "approve", (Web3.to_checksum_address("0x" + "33" * 20), 2**200)),
    ]


@pytest.mark.parametrize(("contract", "fn", "args"), _calls(), ids=lambda v: str(v)[:20])
def test_calldata_is_web3s(contract: str, fn: str, args: tuple[Any, ...]) -> None:
    abi = load_artifact(contract).abi
    expected = Web3().eth.contract(abi=abi).encode_abi(fn, args=list(args))
    assert "0x" + Calldata(abi).encode(fn, args).hex() == expected


def test_a_value_of_the_wrong_type_is_refused_not_converted() -> None:
    abi = load_artifact("Market").abi
    with pytest.raises(EncodingTypeError, match="BytesEncoder"):
        Calldata(abi).encode("cancelOrder", ("0x" + "42" * 32,))
