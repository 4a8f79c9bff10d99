"""The leases a market opened, with the hardware of the offers they filled: what prices cleared.

    for lease in opened_leases(client, from_block=head - 5000):
        lease.model, lease.memory_gib, lease.gpus, lease.price_per_gpu_second, lease.time

A ``LeaseOpened`` event names its offer by hash only; the offer itself (the GPU model, memory)
is in the calldata of the transaction that opened the lease (``openLease``,
``openLeaseWithPermit``, ``openLeaseBatch``, ``openLeaseAuction``). Each such transaction is
read once and its offers decoded and hashed (EIP-712, as the contract hashes them), so a lease
is tied to its offer by the hash the chain emitted, never by guessing. A lease opened through a
contract that is not the market (a wallet's ``execute``, another contract) has no offer in
calldata the market's ABI reads, and is left out: ``skipped`` counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from market.chain.client import MarketClient
from market.chain.events import ChainEvent
from market.chain.history import block_timestamps
from market.protocol.eip712 import order_hash
from market.protocol.types import Offer, gpu_model_from_bytes32

ENDING_EVENTS = {
    "LeaseTerminated": "terminated",
    "LeaseClosed": "closed",
    "LeaseSlashed": "slashed",
}
"""The events after which a lease runs no more, and the state each leaves it in."""
OPENING_FUNCTIONS = ("openLease", "openLeaseWithPermit", "openLeaseBatch", "openLeaseAuction")
DEFAULT_CHUNK_BLOCKS = 10_000


@dataclass(frozen=True, slots=True)
class OpenedLease:
    """A lease as a price record: when, what hardware, how many GPUs, at what price."""

    lease_id: bytes
    bid_hash: bytes
    """The order hash of the bid it filled (as a relay's book names the bid)."""
    time: int
    """The timestamp of the block that opened it."""
    model: str
    memory_gib: int
    gpus: int
    price_per_gpu_second: int
    """What the lease pays (the offer's price, or a batch auction's clearing price)."""
    duration: int
    provider: str = ""
    lab: str = ""


@dataclass(frozen=True, slots=True)
class OpenedLeases:
    leases: tuple[OpenedLease, ...]
    skipped: int
    """Leases whose offer no market call in their transaction carried."""


def opened_leases(
    client: MarketClient,
    from_block: int | None = None,
    to_block: int | None = None,
    *,
    chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
) -> OpenedLeases:
    """Leases opened in blocks ``[from_block, to_block]`` (default: the deployment's block to
    the head), in chain order, each with its offer's model and memory."""
    start = client.contracts.deployment.deploy_block if from_block is None else from_block
    end = client.head().number if to_block is None else to_block
    events: list[ChainEvent] = []
    for low in range(max(start, 0), end + 1, chunk_blocks):
        chunk = client.events(low, min(low + chunk_blocks - 1, end))
        events.extend(e for e in chunk if e.name == "LeaseOpened")
    times = block_timestamps(
        client.w3, {e.block_number for e in events}, deadline_s=client.rpc_deadline_s
    )
    offers: dict[bytes, Mapping[bytes, Offer]] = {}
    out: list[OpenedLease] = []
    for event in events:
        if event.tx_hash not in offers:
            offers[event.tx_hash] = _offers_in(client, event.tx_hash)
        offer = offers[event.tx_hash].get(bytes(event.args["offer_hash"]))
        if offer is None:
            continue
        lease = event.args["lease"]
        out.append(
            OpenedLease(
                lease_id=bytes(event.args["lease_id"]),
                bid_hash=bytes(event.args["bid_hash"]),
                time=times[event.block_number],
                model=offer.gpu_model,
                memory_gib=offer.memory_gib,
                gpus=lease.gpus,
                price_per_gpu_second=lease.price_per_gpu_second,
                duration=lease.duration,
                provider=lease.provider,
                lab=lease.lab,
            )
        )
    return OpenedLeases(tuple(out), len(events) - len(out))


def ended_leases(
    client: MarketClient,
    from_block: int | None = None,
    to_block: int | None = None,
    *,
    chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
) -> dict[bytes, str]:
    """The leases that stopped running in blocks ``[from_block, to_block]`` (default: the
    deployment's block to the head), by id: ``terminated`` (the lab ended it early), ``closed``
    or ``slashed``, the latest event winning (a terminated lease closes later)."""
    start = client.contracts.deployment.deploy_block if from_block is None else from_block
    end = client.head().number if to_block is None else to_block
    out: dict[bytes, str] = {}
    for low in range(max(start, 0), end + 1, chunk_blocks):
        for event in client.events(low, min(low + chunk_blocks - 1, end)):
            state = ENDING_EVENTS.get(event.name)
            if state is not None:
                out[bytes(event.args["lease_id"])] = state
    return out


def _offers_in(client: MarketClient, tx_hash: bytes) -> Mapping[bytes, Offer]:
    """The offers in the market call of transaction ``tx_hash``, by their order hash."""
    tx = client.transaction(tx_hash)
    if tx is None or tx.get("to") != client.market.address:
        return {}
    try:
        fn, args = client.market.decode_function_input(tx["input"])
    except ValueError:  # not a market function (a fallback, a wallet's call)
        return {}
    if fn.fn_name not in OPENING_FUNCTIONS:
        return {}
    raw = [args["offer"]] if "offer" in args else [o["offer"] for o in args["offers"]]
    decoded = (_offer(o) for o in raw)
    return {bytes(order_hash(client.domain, o)): o for o in decoded}


def _offer(raw: Mapping[str, Any] | Iterable[Any]) -> Offer:
    values = (
        [raw[solidity] for _, solidity, _ in Offer.FIELDS]
        if isinstance(raw, Mapping)
        else list(raw)
    )
    fields: dict[str, Any] = {}
    for (attr, _, kind), value in zip(Offer.FIELDS, values, strict=True):
        if kind == "address":
            value = to_checksum_address(value)
        elif attr == "gpu_model":
            value = gpu_model_from_bytes32(bytes(value))
        fields[attr] = value
    return Offer(**fields)


__all__ = ["OPENING_FUNCTIONS", "OpenedLease", "OpenedLeases", "opened_leases"]
