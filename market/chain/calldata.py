"""Calldata for a contract's functions (and their return data), encoded by eth_abi directly.

web3's ``Contract.encode_abi`` first walks every argument through its normalizers (recursive maps
over the ABI tree), which cost about 10 ms per match of a 100-match ``openLeaseBatch`` on a
2-core machine: several times the rest of sending it, and as much again for a large
``claimBatch``. The client builds its arguments as ABI-native Python values already (``bytes``
for ``bytesN`` and ``bytes``, ints, bools, hex addresses, tuples and lists), so nothing needs
normalizing; eth_abi refuses a value of another type with an ``EncodingError`` that names it.
``tests/unit/test_calldata.py`` checks the bytes against web3's for every function the client
calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import collapse_if_tuple
from web3 import Web3

from market.errors import InvalidArgument


class Calldata:
    """Encodes calls of the functions in ``abi`` (a contract without overloaded names)."""

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        self._functions: dict[str, tuple[bytes, tuple[str, ...]]] = {}
        self._outputs: dict[str, tuple[str, ...]] = {}
        for item in abi:
            if item.get("type") != "function":
                continue
            name = str(item["name"])
            if name in self._functions:
                raise InvalidArgument("abi", name, f"{name} is overloaded: encode it with web3")
            types = tuple(collapse_if_tuple(dict(i)) for i in item["inputs"])
            selector = bytes(Web3.keccak(text=f"{name}({','.join(types)})"))[:4]
            self._functions[name] = (selector, types)
            self._outputs[name] = tuple(collapse_if_tuple(dict(o)) for o in item["outputs"])

    def encode(self, fn: str, args: Sequence[Any]) -> bytes:
        """The calldata of ``fn(*args)``: its selector, then the arguments ABI-encoded."""
        selector, types = self._functions[fn]
        return selector + abi_encode(types, list(args))

    def decode_result(self, fn: str, data: bytes) -> Any:
        """What a call of ``fn`` returned, from its return data, as web3's ``call()`` gives it:
        the value itself when ``fn`` has one output (a struct as a tuple), else a tuple
        (addresses as lowercase hex)."""
        values = abi_decode(self._outputs[fn], data)
        return values[0] if len(values) == 1 else tuple(values)


__all__ = ["Calldata"]
