"""ERC-1271 signature checks through an RPC endpoint, made as the Market contract makes them.

:class:`Erc1271Checker` implements :class:`~market.protocol.signing.ContractSignatureChecker`, the
question ``verify_orders`` asks about an order whose ECDSA check failed: does its signer, a
contract, accept the signature?

    checker = Erc1271Checker.connect(deployment.rpc_url)
    valid, rejected = verify_orders(domain, orders, checker=checker)

The answer is the one the contract computes. An account without code accepts nothing (its code is
read once with ``eth_getCode`` and cached, so an EOA's forged orders cost no further call). For a
contract, an ``eth_call`` runs a few bytes of init code (nothing is deployed, and no state is
overridden, so any endpoint serves it) that makes the Market's own bounded call,
``staticcall(gas, signer, isValidSignature(digest, signature))`` with ``gas`` the cap (50,000 by
default, ``Market.BATCH_ERC1271_GAS``), and returns what it saw: the call's success, the answer's
length and its first word. The signature is valid when, as in OpenZeppelin's
``SignatureChecker``, the call succeeded with at least 32 bytes whose first word is the magic
value ``0x1626ba7e``. A wallet that reverts, answers wrongly, or spins until it runs out of gas is
therefore judged inside the EVM, never by reading an endpoint's error message, and costs at most
the cap: an error from the endpoint always means it could not answer, and raises
:class:`~market.errors.RpcUnavailable` (connection failures retried until ``rpc_deadline_s``).

Two differences with ``openLease`` are deliberate and stated here:

* ``openLease`` gives a contract signer's check all the gas the transaction has; this checker
  gives it ``gas`` only, so an order whose wallet needs more is refused off-chain though the
  contract would accept it. A relay checks orders from anyone, and the cap bounds what one order
  can cost it.
* on-chain, the wallet's ``msg.sender`` is the Market; here it is the init code's throwaway address.
  A wallet that answers differently depending on its caller is not supported.

Answers are cached per (signer, digest, signature) in a bounded LRU for ``ttl_s`` seconds: a
wallet can change its mind (an owner rotated), and a wallet deployed after a first look must be
seen. Keying on the signature too means a forged signature's refusal never shadows the real one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

from eth_abi.abi import encode as abi_encode
from requests.exceptions import RequestException
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3Exception
from web3.types import TxParams

from market.chain.retry import with_retries
from market.chain.tx import endpoint_of
from market.errors import InvalidArgument, RpcUnavailable
from market.protocol.keccak import keccak

ERC1271_MAGIC_VALUE: Final = bytes.fromhex("1626ba7e")
"""``IERC1271.isValidSignature.selector``: what a contract answers for a valid signature."""
DEFAULT_GAS: Final = 50_000
"""The gas a contract signer's check may spend: ``Market.BATCH_ERC1271_GAS``."""
DEFAULT_TIMEOUT_S: Final = 5.0
DEFAULT_CACHE_SIZE: Final = 4096
DEFAULT_TTL_S: Final = 300.0

_MAGIC_WORD = ERC1271_MAGIC_VALUE.ljust(32, b"\0")
_MAX_GAS = 2**32 - 1  # the cap is a PUSH4 in the init code


def _init_code_prefix(gas: int) -> bytes:
    """Init code followed by a 32-byte signer word and the call's ABI-encoded payload: copies the
    payload to memory at 0 (length L), makes ``staticcall(gas, signer, 0, L, L + 64, 32)`` and
    returns memory ``[L, L + 96)``: success, RETURNDATASIZE, the answer's first word. The first
    byte returned is always 0, so EIP-3541 never refuses the "code" it returns."""
    p = 48  # the length of this prefix: where the signer word starts
    after = p + 32  # where the payload starts
    return bytes(
        [
            *(0x60, 0x20, 0x60, p, 0x60, 0x00, 0x39),  # CODECOPY(0, p, 32): the signer word
            *(0x60, 0x00, 0x51),  # MLOAD(0) -> signer
            *(0x60, after, 0x38, 0x03),  # CODESIZE - after -> L
            *(0x80, 0x60, after, 0x60, 0x00, 0x39),  # CODECOPY(0, after, L): the payload
            *(0x60, 0x20, 0x81, 0x60, 0x40, 0x01),  # retSize 32, retOffset L + 64
            *(0x82, 0x60, 0x00, 0x85),  # argsSize L, argsOffset 0, the signer
            0x63,  # PUSH4 gas
            *gas.to_bytes(4, "big"),
            0xFA,  # STATICCALL -> success
            *(0x81, 0x52),  # MSTORE(L, success)
            *(0x3D, 0x81, 0x60, 0x20, 0x01, 0x52),  # MSTORE(L + 32, RETURNDATASIZE)
            *(0x60, 0x60, 0x90, 0xF3),  # RETURN(L, 96)
        ]
    )


def call_gas(gas: int, init_code_length: int) -> int:
    """The gas an ``eth_call`` of ``init_code_length`` bytes of the checking code is sent with:
    enough for the intrinsic cost of a creation with that much calldata (EIP-7623's floor
    included), the code around the call, and ``gas`` for the call itself after the 63/64 rule."""
    return 53_000 + 40 * init_code_length + 40_000 + gas + gas // 63 + 1


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Cache(Generic[K, V]):
    """A bounded LRU whose entries expire ``ttl_s`` after they were stored; thread-safe."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float]) -> None:
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._size = size
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + self._ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Erc1271Checker:
    """Answers ERC-1271 questions through ``w3`` as the Market contract would (see the module).

    ``gas`` caps what one check may spend, ``cache_size`` bounds each of the two caches (signers'
    code, answers) and ``ttl_s`` is how long an entry is trusted; ``rpc_deadline_s`` bounds the
    retries of a connection failure. Every request has the timeout of ``w3``'s provider
    (:meth:`connect` sets it). Safe to share between threads.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        gas: int = DEFAULT_GAS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        ttl_s: float = DEFAULT_TTL_S,
        rpc_deadline_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < gas <= _MAX_GAS:
            raise InvalidArgument("gas", gas, f"gas must be in [1, {_MAX_GAS}], got {gas}")
        if cache_size < 1:
            raise InvalidArgument(
                "cache_size", cache_size, f"cache_size must be at least 1, got {cache_size}"
            )
        self.w3 = w3
        self.gas = gas
        self.rpc_deadline_s = rpc_deadline_s
        self._endpoint = endpoint_of(w3)
        self._prefix = _init_code_prefix(gas)
        self._code: _Cache[bytes, bool] = _Cache(cache_size, ttl_s, clock)
        self._answers: _Cache[tuple[bytes, bytes, bytes], bool] = _Cache(cache_size, ttl_s, clock)

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        gas: int = DEFAULT_GAS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        ttl_s: float = DEFAULT_TTL_S,
        rpc_deadline_s: float = 10.0,
    ) -> Erc1271Checker:
        """A checker over HTTP whose every request times out after ``timeout_s``."""
        provider = HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s})
        return cls(
            Web3(provider),
            gas=gas,
            cache_size=cache_size,
            ttl_s=ttl_s,
            rpc_deadline_s=rpc_deadline_s,
        )

    def is_valid_signature(self, signer: str, digest: bytes, signature: bytes) -> bool:
        """Whether ``signer`` is a contract whose ``isValidSignature(digest, signature)`` accepts
        the signature within the gas cap. Raises RpcUnavailable when the endpoint cannot say."""
        address = bytes.fromhex(signer[2:])
        key = (address, digest, keccak(signature))
        answer = self._answers.get(key)
        if answer is None:
            answer = self.has_code(signer) and self._ask(address, digest, signature)
            self._answers.put(key, answer)
        return answer

    def has_code(self, signer: str) -> bool:
        """Whether ``signer`` has code (a contract, or an EIP-7702 account), as the contract's
        ``signer.code.length > 0`` sees it; cached."""
        address = bytes.fromhex(signer[2:])
        known = self._code.get(address)
        if known is None:
            code = self._rpc(lambda: self.w3.eth.get_code(Web3.to_checksum_address(address)))
            known = len(code) > 0
            self._code.put(address, known)
        return known

    def _ask(self, signer: bytes, digest: bytes, signature: bytes) -> bool:
        payload = ERC1271_MAGIC_VALUE + abi_encode(["bytes32", "bytes"], [digest, signature])
        init_code = self._prefix + signer.rjust(32, b"\0") + payload
        tx: TxParams = {"data": init_code, "gas": call_gas(self.gas, len(init_code))}
        answer = bytes(self._rpc(lambda: self.w3.eth.call(tx, "latest")))
        if len(answer) != 96:
            raise RpcUnavailable(
                self._endpoint, f"the ERC-1271 check returned {len(answer)} bytes, expected 96"
            )
        success = int.from_bytes(answer[:32], "big")
        returned = int.from_bytes(answer[32:64], "big")
        return success == 1 and returned >= 32 and answer[64:] == _MAGIC_WORD

    def _rpc(self, fn: Callable[[], V]) -> V:
        """``fn()``, connection failures retried; any error the endpoint answers with is an
        outage too: the checking code itself cannot fail, so the endpoint did not run it."""
        try:
            return with_retries(fn, endpoint=self._endpoint, deadline_s=self.rpc_deadline_s)
        except (Web3Exception, RequestException) as exc:
            raise RpcUnavailable(self._endpoint, f"{type(exc).__name__}: {exc}") from exc


__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_GAS",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_TTL_S",
    "ERC1271_MAGIC_VALUE",
    "Erc1271Checker",
    "call_gas",
]
