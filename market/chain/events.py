"""Reading the market's events: one ``eth_getLogs`` over the market, decoded by topic.

Every event of the Market (its provider registry's included) is decoded into a
:class:`ChainEvent` with snake_case argument names; ``LeaseOpened`` carries its terms as a
``market.protocol.types.Lease`` (and its ``provider`` and ``lab`` as arguments of their own)
and ``ReceiptPosted`` its receipt as a
``market.protocol.types.Receipt``.
:func:`follow` polls for new blocks and yields events in chain order, resuming from a block.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3RPCError
from web3.types import LogReceipt

from market.chain.retry import with_retries
from market.chain.rpc import JsonRpc
from market.chain.tx import endpoint_of
from market.protocol.types import Billing, Lease, Receipt

FOLLOW_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """One decoded log."""

    name: str
    args: Mapping[str, Any]
    address: ChecksumAddress
    block_number: int
    tx_hash: bytes
    log_index: int

    @property
    def position(self) -> tuple[int, int]:
        """Where the event sits in chain order."""
        return self.block_number, self.log_index


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _convert(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in args.items():
        if name == "LeaseOpened" and key == "lease":
            out["lease"] = Lease(
                provider=value["provider"],
                lab=value["lab"],
                gpus=value["gpus"],
                price_per_gpu_second=value["pricePerGpuSecond"],
                start=value["start"],
                duration=value["duration"],
                salt=bytes(value["salt"]),
                billing=Billing(value["billing"]),
                receipt_signer=value["receiptSigner"],
                voucher_signer=value["voucherSigner"],
                arbiter=value["arbiter"],
                min_charge=value["minCharge"],
            )
            # Its parties, as every reader of the event wants them (they are in the terms).
            out["provider"], out["lab"] = value["provider"], value["lab"]
        elif name == "ReceiptPosted" and key == "receipt":
            fields: dict[str, Any] = {
                attr: bytes(value[abi]) if solidity == "bytes32" else value[abi]
                for attr, abi, solidity in Receipt.FIELDS
            }
            out["receipt"] = Receipt(**fields)
        else:
            out[_snake(key)] = bytes(value) if isinstance(value, bytes | HexBytes) else value
    return out


class EventLayout:
    """One event's ABI: decodes a log's topics and data with eth_abi directly, into what web3's
    ``process_log`` gives (addresses checksummed, structs as maps by component name) at a
    fraction of the cost: web3 walks every value through its normalizers, milliseconds a log, and
    each daemon decodes every event of the market."""

    def __init__(self, item: Mapping[str, Any]) -> None:
        self.name = str(item["name"])
        inputs = list(item["inputs"])
        self.indexed = [i for i in inputs if i["indexed"]]
        self.unindexed = [i for i in inputs if not i["indexed"]]
        self.types = [_abi_type(i) for i in self.unindexed]
        self.topic = bytes(Web3.keccak(text=f"{self.name}({','.join(map(_abi_type, inputs))})"))
        # Indexed value types, each one 32-byte word: decoded together, in one eth_abi call.
        self._valued = [n for n, i in enumerate(self.indexed) if _is_value_type(i)]
        self._topic_types = [str(self.indexed[n]["type"]) for n in self._valued]

    def decode(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        args: dict[str, Any] = {}
        indexed = list(zip(self.indexed, topics[1:], strict=True))
        words = b"".join(bytes(indexed[n][1]) for n in self._valued)
        valued = dict(zip(self._valued, abi_decode(self._topic_types, words), strict=True))
        for n, (item, topic) in enumerate(indexed):
            if n in valued:
                args[item["name"]] = _normalize(item, valued[n])
            else:  # an indexed string, bytes, array or struct is logged as its hash
                args[item["name"]] = bytes(topic)
        for item, value in zip(self.unindexed, abi_decode(self.types, data), strict=True):
            args[item["name"]] = _normalize(item, value)
        return args


def _bytes(value: str | bytes) -> bytes:
    return bytes(HexBytes(value))


def _int(value: str | int) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _is_value_type(item: Mapping[str, Any]) -> bool:
    kind = str(item["type"])
    return not (kind in ("string", "bytes") or kind.startswith("tuple") or kind.endswith("]"))


def _normalize(item: Mapping[str, Any], value: Any) -> Any:
    kind = str(item["type"])
    if kind.endswith("]"):
        inner = {**item, "type": kind[: kind.rindex("[")]}
        return [_normalize(inner, v) for v in value]
    if kind == "tuple":
        return {c["name"]: _normalize(c, v) for c, v in zip(item["components"], value, strict=True)}
    if kind == "address":
        return _checksummed(value)
    return value


@lru_cache(maxsize=1 << 14)
def _checksummed(address: str) -> ChecksumAddress:
    """EIP-55 form, remembered: the same few accounts are in almost every log."""
    return Web3.to_checksum_address(address)


class EventReader:
    """Decodes the logs of a set of contracts."""

    def __init__(self, w3: Web3, contracts: list[Contract]) -> None:
        self.w3 = w3
        self.addresses = [c.address for c in contracts]
        self._by_topic: dict[bytes, EventLayout] = {}
        for contract in contracts:
            for item in contract.abi:
                if item["type"] == "event" and not item.get("anonymous", False):
                    layout = EventLayout(item)
                    self._by_topic[layout.topic] = layout

    def decode(self, log: LogReceipt | Mapping[str, Any]) -> ChainEvent | None:
        """The event a log carries, or None for a log of an unknown event. The log is web3's (a
        receipt's, fields typed) or the node's own JSON (hex strings)."""
        topics = [_bytes(t) for t in log["topics"]]
        layout = self._by_topic.get(topics[0]) if topics else None
        if layout is None:
            return None
        return ChainEvent(
            name=layout.name,
            args=_convert(layout.name, layout.decode(topics, _bytes(log["data"]))),
            address=_checksummed(str(log["address"])),
            block_number=_int(log["blockNumber"]),
            tx_hash=_bytes(log["transactionHash"]),
            log_index=_int(log["logIndex"]),
        )

    def events(self, from_block: int, to_block: int | None = None) -> list[ChainEvent]:
        """Every event of the contracts in ``[from_block, to_block]`` (default: latest), from
        one ``eth_getLogs`` whose JSON is decoded here (web3's result formatters cost more than
        the decoding itself)."""
        params = {
            "fromBlock": hex(from_block),
            "toBlock": "latest" if to_block is None else hex(to_block),
            "address": self.addresses,
        }
        logs = with_retries(lambda: self._get_logs(params), endpoint=endpoint_of(self.w3))
        decoded = (self.decode(log) for log in logs)
        return sorted((e for e in decoded if e is not None), key=lambda e: e.position)

    def _get_logs(self, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        response = JsonRpc.of(self.w3).response("eth_getLogs", [params])
        if "error" in response:  # as web3 raises it
            raise Web3RPCError(str(response["error"]), rpc_response=response)
        logs: list[Mapping[str, Any]] = response["result"]
        return logs

    def follow(
        self, from_block: int, *, poll_s: float = FOLLOW_POLL_S, stop_after_s: float | None = None
    ) -> Iterator[ChainEvent]:
        """Yield events from ``from_block`` on, as blocks arrive; stops after ``stop_after_s``.

        Resume after a restart by passing the block after the last one processed.
        """
        deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
        next_block = from_block
        while deadline is None or time.monotonic() < deadline:
            head = with_retries(lambda: self.w3.eth.block_number, endpoint=endpoint_of(self.w3))
            if head >= next_block:
                yield from self.events(next_block, head)
                next_block = head + 1
            else:
                time.sleep(poll_s)  # no new block yet; poll again


def _abi_type(item: Mapping[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][len('tuple') :]}"
    return str(item["type"])


__all__ = ["ChainEvent", "EventLayout", "EventReader"]
