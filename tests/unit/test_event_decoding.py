"""Events decoded by eth_abi directly (``EventLayout``) are exactly web3's ``process_log``, for
every event of the Market (its provider registry's included)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from hexbytes import HexBytes
from web3 import Web3

from market.artifacts import load_artifact
from market.chain.events import EventLayout, EventReader

pytestmark = pytest.mark.unit
ADDRESS = Web3.to_checksum_address("0x5fbdb2315678afecb367f032d93f642f64180aa3")


def _sample(item: Mapping[str, Any], n: int) -> Any:
    kind = str(item["type"])
    if kind.endswith("]"):
        return [_sample({**item, "type": kind[: kind.rindex("[")]}, n + i) for i in range(2)]
    if kind == "tuple":
        return tuple(_sample(c, n + i) for i, c in enumerate(item["components"]))
    if kind == "address":
        return Web3.to_checksum_address(bytes([n % 250 + 1]) * 20)
    if kind.startswith("uint"):
        return n % 2  # 0 or 1: a valid value of every enum (billing)
    if kind == "bool":
        return n % 2 == 1
    if kind == "string":
        return f"http://provider-{n}"
    if kind == "bytes":
        return bytes([n % 256]) * 65
    size = int(kind[len("bytes") :])
    return bytes([n % 256]) * size


def _log(layout: EventLayout, item: Mapping[str, Any]) -> dict[str, Any]:
    values = {i["name"]: _sample(i, k + 3) for k, i in enumerate(item["inputs"])}
    topics = [HexBytes(layout.topic)] + [
        HexBytes(abi_encode([i["type"]], [values[i["name"]]])) for i in layout.indexed
    ]
    data = abi_encode(layout.types, [values[i["name"]] for i in layout.unindexed])
    return {
        "address": ADDRESS,
        "topics": topics,
        "data": HexBytes(data),
        "blockNumber": 7,
        "transactionHash": HexBytes(b"\x09" * 32),
        "transactionIndex": 0,
        "blockHash": HexBytes(b"\x08" * 32),
        "logIndex": 2,
        "removed": False,
    }


def _events() -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (name, item)
        for name in ("Market",)
        for item in load_artifact(name).abi
        if item["type"] == "event"
    ]


@pytest.mark.parametrize(
    ("contract", "item"), _events(), ids=[str(item["name"]) for _, item in _events()]
)
def test_an_event_decodes_as_web3_decodes_it(contract: str, item: Mapping[str, Any]) -> None:
    w3 = Web3()
    deployed = w3.eth.contract(address=ADDRESS, abi=load_artifact(contract).abi)
    reader = EventReader(w3, [deployed])
    layout = EventLayout(item)
    log: Any = _log(layout, item)

    expected = deployed.events[item["name"]]().process_log(log)
    assert layout.decode(log["topics"], bytes(log["data"])) == {
        k: (dict(v) if isinstance(v, Mapping) else v) for k, v in expected["args"].items()
    }
    event = reader.decode(log)
    assert event is not None
    assert (event.name, event.block_number, event.log_index) == (item["name"], 7, 2)
    assert event.tx_hash == b"\x09" * 32
    # The node's own JSON (eth_getLogs read without web3's formatters) decodes the same.
    raw = {
        "address": ADDRESS.lower(),
        "topics": [HexBytes(t).to_0x_hex() for t in log["topics"]],
        "data": HexBytes(log["data"]).to_0x_hex(),
        "blockNumber": "0x7",
        "transactionHash": "0x" + "09" * 32,
        "logIndex": "0x2",
    }
    assert reader.decode(raw) == event
