"""Gas a block range's transactions used, by the contract function each called.

    spent = gas_by_function(client, first_block)     # to the head block
    spent["openLeaseBatch"].gas, spent["openLeaseBatch"].calls

Each block is read with its transactions and each transaction's receipt for its gas, retried like
every other read. A call to the market or the token is named by its function selector; a call to
any other address, or with a selector no ABI of theirs has, counts as ``other``; a contract
creation (a deployment) is not counted.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any

from web3.contract import Contract

from market.chain.client import MarketClient
from market.chain.history import head_block
from market.chain.retry import with_retries
from market.chain.tx import endpoint_of

OTHER = "other"
"""The name of calls to no contract of the deployment, or to no function of one."""


@dataclass(frozen=True, slots=True)
class GasUse:
    """``calls`` transactions of one function, ``gas`` used by them all."""

    calls: int
    gas: int

    @property
    def per_call(self) -> int:
        return self.gas // self.calls if self.calls else 0


def gas_by_function(
    client: MarketClient, from_block: int, to_block: int | None = None
) -> dict[str, GasUse]:
    """The gas of every transaction in blocks ``[from_block, to_block]`` (default: to the head),
    by the name of the function it called."""
    w3 = client.w3
    endpoint = endpoint_of(w3)
    end = head_block(client) if to_block is None else to_block
    contracts: dict[str, Contract] = {c.address: c for c in (client.market, client.token)}
    spent: dict[str, GasUse] = {}
    for number in range(from_block, end + 1):
        block: Any = with_retries(
            functools.partial(w3.eth.get_block, number, full_transactions=True),
            endpoint=endpoint,
            deadline_s=client.rpc_deadline_s,
        )
        for tx in block["transactions"]:
            if tx.get("to") is None:
                continue  # a contract creation
            receipt: Any = with_retries(
                functools.partial(w3.eth.get_transaction_receipt, tx["hash"]),
                endpoint=endpoint,
                deadline_s=client.rpc_deadline_s,
            )
            name = _function_name(contracts.get(str(tx["to"])), bytes(tx["input"])[:4])
            use = spent.get(name, GasUse(0, 0))
            spent[name] = GasUse(use.calls + 1, use.gas + int(receipt["gasUsed"]))
    return spent


def _function_name(contract: Contract | None, selector: bytes) -> str:
    if contract is None:
        return OTHER
    with contextlib.suppress(ValueError):  # web3 finds no function with that selector
        return str(contract.get_function_by_selector(selector).abi["name"])
    return OTHER


__all__ = ["OTHER", "GasUse", "gas_by_function"]
