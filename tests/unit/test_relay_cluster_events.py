"""The cluster stream's events and the replica book, without a server: frames round-trip and
refuse what is not one of them, message ids are stable and tell events apart, and the replica
applies each fact once."""

from __future__ import annotations

import types

import pytest

import nodes.relay.cluster as cluster
from market.errors import DecodeError, UnknownMessageType
from market.protocol import codec
from market.protocol.eip712 import Domain
from nodes.relay.cluster import (
    BookReplica,
    ClusterEvent,
    FillChanged,
    LeaseOpened,
    NonceFloorRaised,
    OrderAccepted,
    OrderCancelled,
    decode_event,
    encode_event,
    message_id,
)
from nodes.relay.cluster.jetstream import subject_of
from nodes.wire import BookQuery, FillStatus
from tests.unit.order_factory import DOMAIN, LAB_KEYS, MODEL, Orders

pytestmark = pytest.mark.unit

H1, H2, LEASE = bytes([1]) * 32, bytes([2]) * 32, bytes([9]) * 32


def every_event() -> list[ClusterEvent]:
    order = Orders().offer()
    return [
        OrderAccepted(order.hash, order.signed),
        OrderCancelled(H1, 7),
        NonceFloorRaised(LAB_KEYS[0].address, 2**200, 8),
        LeaseOpened(LEASE, H1, H2, 3, 9),
        FillChanged(5, H1, H2, 3, FillStatus.PENDING),
        FillChanged(5, H1, H2, 3, FillStatus.FAILED, error="MarketOrderExpired"),
    ]


@pytest.mark.parametrize("event", every_event(), ids=lambda e: type(e).__name__)
def test_every_event_round_trips_through_its_frame(event: ClusterEvent) -> None:
    assert decode_event(encode_event(event)) == event


def test_the_package_face_lists_what_it_exports() -> None:
    public = {
        name
        for name, value in vars(cluster).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(cluster.__all__) == sorted(public)


def test_an_orders_message_id_is_its_hash_and_others_differ_by_content() -> None:
    events = every_event()
    accepted = events[0]
    assert isinstance(accepted, OrderAccepted)
    assert message_id(accepted) == "0x" + accepted.order_hash.hex()
    ids = [message_id(e) for e in events]
    assert len(set(ids)) == len(ids)
    assert message_id(OrderCancelled(H1, 7)) == message_id(OrderCancelled(H1, 7))
    assert message_id(FillChanged(5, H1, H2, 3, FillStatus.PENDING)) != message_id(
        FillChanged(6, H1, H2, 3, FillStatus.PENDING)
    )  # two fills of the same pair and size are two events


def test_subjects_split_orders_fills_and_the_chain() -> None:
    kinds = [subject_of("c1", e).rsplit(".", 1)[1] for e in every_event()]
    assert kinds == ["orders", "chain", "chain", "chain", "fills", "fills"]


def test_decode_refuses_an_unknown_type_and_a_missing_key() -> None:
    with pytest.raises(UnknownMessageType):
        decode_event(codec.seal_frame("OrderShredded", {"orderHash": H1}))
    with pytest.raises(DecodeError, match="blockNumber"):
        decode_event(codec.seal_frame("OrderCancelled", {"orderHash": H1}))
    with pytest.raises(DecodeError):
        decode_event(codec.seal_frame("OrderCancelled", {"orderHash": H1[:31], "blockNumber": 1}))


def test_encode_refuses_a_daemon_message_that_is_no_cluster_event() -> None:
    with pytest.raises(TypeError, match="not a cluster event"):
        encode_event(BookQuery(MODEL, 10))  # type: ignore[arg-type]


def test_the_replica_refuses_an_order_whose_hash_is_not_its_own_under_its_domain() -> None:
    order = Orders().offer()
    other_market = BookReplica(Domain(1, LAB_KEYS[1].address))
    with pytest.raises(DecodeError, match="another market"):
        other_market.apply(1, OrderAccepted(order.hash, order.signed))
    assert len(other_market) == 0


def test_the_replica_adds_an_order_once_and_never_brings_back_a_cancelled_one() -> None:
    orders = Orders()
    offer, bid = orders.offer(gpus=8), orders.bid(gpus=2)
    replica = BookReplica(DOMAIN)
    replica.apply(1, OrderAccepted(offer.hash, offer.signed))
    replica.apply(2, OrderAccepted(offer.hash, offer.signed))  # published again, past the window
    replica.apply(3, OrderCancelled(offer.hash, 5))
    replica.apply(4, OrderAccepted(offer.hash, offer.signed))
    replica.apply(5, OrderAccepted(bid.hash, bid.signed))
    assert offer.hash not in replica
    assert replica.remaining(bid.hash) == 2
    assert replica.position == 5


def test_a_failed_fill_gives_its_gpus_back_and_a_lease_settles_a_pending_fill_once() -> None:
    orders = Orders()
    offer, bid = orders.offer(gpus=8), orders.bid(gpus=2)
    replica = BookReplica(DOMAIN)
    for seq, o in enumerate((offer, bid), 1):
        replica.apply(seq, OrderAccepted(o.hash, o.signed))
    replica.apply(3, FillChanged(1, offer.hash, bid.hash, 2, FillStatus.PENDING))
    assert (replica.remaining(offer.hash), replica.remaining(bid.hash)) == (6, 0)
    replica.apply(4, FillChanged(1, offer.hash, bid.hash, 2, FillStatus.FAILED, error="x"))
    assert (replica.remaining(offer.hash), replica.remaining(bid.hash)) == (8, 2)
    replica.apply(5, FillChanged(2, offer.hash, bid.hash, 2, FillStatus.PENDING))
    replica.apply(6, LeaseOpened(LEASE, offer.hash, bid.hash, 2, 10))  # the chain says first
    replica.apply(7, FillChanged(2, offer.hash, bid.hash, 2, FillStatus.OPENED, LEASE))
    assert replica.remaining(offer.hash) == 6
    assert bid.hash not in replica  # filled whole
    snap = replica.snapshot(MODEL, 5)
    assert [(e.order.signed, e.remaining) for e in snap.offers] == [(offer.signed, 6)]
    assert snap.bids == ()


def test_a_nonce_floor_takes_out_the_signers_orders_below_it() -> None:
    orders = Orders()
    low, high = orders.bid(lab=0), orders.bid(lab=0)
    replica = BookReplica(DOMAIN)
    replica.apply(1, OrderAccepted(low.hash, low.signed))
    replica.apply(2, OrderAccepted(high.hash, high.signed))
    floor = high.signed.message.nonce
    replica.apply(3, NonceFloorRaised(LAB_KEYS[0].address, floor, 4))
    assert low.hash not in replica
    assert high.hash in replica
