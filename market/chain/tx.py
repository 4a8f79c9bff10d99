"""Sending signed transactions from one local account: nonces, fees, gas, receipts, reverts.

The transactor fills every field itself (web3's ``build_transaction`` would make five requests)
and makes its requests through :class:`~market.chain.rpc.JsonRpc` (a kept-alive connection,
checked as web3 checks answers: a fifth of the CPU of ``w3.eth``; receipts formatted by web3),
keeps the account's nonce locally, estimates gas so that a transaction that would revert fails
before it is sent (decoded into a typed contract error), and waits for receipts against a deadline.
A send that fails on the connection is retried with the *same signed bytes*, so it can never be
sent twice; reads are retried on connection failures only.

Sending is two steps, for callers that must store a transaction before it leaves
(``nodes.state.durable``); :meth:`Transactor.send` does both and waits::

    signed = tx.sign(to, data, what="claim")   # estimate, fees, sign; the nonce is not taken yet
    ...                                        # store signed.raw, signed.hash, signed.nonce
    tx.broadcast(signed)                       # send the bytes (again after a crash: same hash)
    tx.wait(signed.hash, what="claim")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_typing import ChecksumAddress, HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.method_formatters import receipt_formatter
from web3.datastructures import AttributeDict
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import RPCEndpoint, TxReceipt

from market.chain.eip1559 import DynamicFeeFields, sign_dynamic_fee
from market.chain.retry import TRANSIENT_ERRORS, with_retries
from market.chain.revert import decode_revert
from market.chain.rpc import JsonRpc, quantity
from market.errors import NonceUsed, TransactionTimeout
from market.protocol.signing import SigningKey

RECEIPT_TIMEOUT_S = 60.0
RPC_DEADLINE_S = 10.0  # how long connection failures are retried before RpcUnavailable
GAS_HEADROOM = 1.25
POLL_FIRST_S = 0.01
POLL_MAX_S = 0.25
POLL_GROWTH = 1.5
"""Receipt polls back off from ``POLL_FIRST_S`` (a devnet mines at once) to ``POLL_MAX_S`` (a
chain with 12 s blocks is polled about 50 times a block, not 1,200)."""
FEES_TTL_S = 1.0
"""How long the fees read for one transaction serve the next ones (a busy matcher sends many a
second; each read is two requests)."""
# How nodes refuse bytes already in their pool: geth, reth, erigon; anvil.
# anvil and geth say "already known", Nethermind "already imported", Hardhat "known transaction".
_ALREADY_KNOWN = ("already known", "already imported", "known transaction")
T = TypeVar("T")


def revert_data(exc: ContractLogicError) -> bytes:
    """The raw revert data web3 attached to ``exc`` (empty when there was none).

    anvil answers a revert with the data as the error's ``data`` string, which web3 passes on; a
    Hardhat node's message is not one web3 recognises, and web3 then attaches the whole error
    object, the data inside it.
    """
    data: Any = exc.data
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    return b""


def _error_data(response: Any) -> bytes:
    """The revert data in a JSON-RPC error answer: the error's ``data`` string (anvil, geth), or
    the ``data`` inside its ``data`` object (Hardhat)."""
    error: Any = response.get("error") or {}
    data = error.get("data") if isinstance(error, dict) else None
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    return b""


def _rpc_value(value: Any) -> Any:
    """A transaction field as JSON-RPC spells it: quantities and bytes in hex."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def endpoint_of(w3: Web3) -> str:
    return str(getattr(w3.provider, "endpoint_uri", w3.provider))


@dataclass(frozen=True, slots=True)
class SignedTx:
    """An EIP-1559 transaction signed and not necessarily sent. ``raw`` broadcast any number of
    times is one transaction, ``hash``, mined at most once (it holds ``nonce``)."""

    raw: bytes
    hash: HexBytes
    nonce: int
    chain_id: int
    to: ChecksumAddress | None
    value: int
    data: bytes
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    @classmethod
    def from_raw(cls, raw: bytes) -> SignedTx:
        """Decode stored bytes (as :meth:`Transactor.sign` made them) to broadcast them again."""
        fields: dict[str, Any] = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        to = bytes(fields["to"])
        return cls(
            raw=bytes(raw),
            hash=HexBytes(Web3.keccak(raw)),
            nonce=int(fields["nonce"]),
            chain_id=int(fields["chainId"]),
            to=Web3.to_checksum_address(to) if to else None,
            value=int(fields["value"]),
            data=bytes(fields["data"]),
            gas=int(fields["gas"]),
            max_fee_per_gas=int(fields["maxFeePerGas"]),
            max_priority_fee_per_gas=int(fields["maxPriorityFeePerGas"]),
        )


class Transactor:
    """Signs and sends transactions for ``account`` on ``w3``'s chain."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        chain_id: int | None = None,
        receipt_timeout_s: float = RECEIPT_TIMEOUT_S,
        rpc_deadline_s: float = RPC_DEADLINE_S,
        fees_ttl_s: float = FEES_TTL_S,
    ) -> None:
        self.w3 = w3
        self.rpc = JsonRpc.of(w3)
        self.fees_ttl_s = fees_ttl_s
        self._fees_read: tuple[float, int, int] | None = None  # (when, max fee, tip)
        self.rpc_deadline_s = rpc_deadline_s
        self.account = account
        self._key = SigningKey(bytes(account.key))
        self.receipt_timeout_s = receipt_timeout_s
        self.endpoint = endpoint_of(w3)
        self.chain_id: int = self._quantity("eth_chainId") if chain_id is None else chain_id
        self._nonce: int = self._quantity("eth_getTransactionCount", account.address, "pending")

    @property
    def address(self) -> ChecksumAddress:
        return self.account.address

    def _read(self, fn: Callable[[], T]) -> T:
        """Run one JSON-RPC interaction, retrying connection failures until the RPC deadline."""
        return with_retries(fn, endpoint=self.endpoint, deadline_s=self.rpc_deadline_s)

    def _quantity(self, method: str, *params: Any) -> int:
        """A request whose result is a quantity, retried like every read."""
        return quantity(self._read(lambda: self.rpc.request(method, list(params))))

    def resync_nonce(self) -> int:
        """Re-read the pending nonce from the node (after a transaction failed to send)."""
        self._nonce = self._quantity("eth_getTransactionCount", self.account.address, "pending")
        return self._nonce

    def _fees(self) -> tuple[int, int]:
        """``(maxFeePerGas, maxPriorityFeePerGas)``: twice the latest base fee plus the node's
        tip, read again once ``fees_ttl_s`` has passed (a base fee moves at most 12.5% a block,
        so the factor 2 covers the blocks of that interval many times over)."""
        now = time.monotonic()
        if (read := self._fees_read) is not None and now - read[0] < self.fees_ttl_s:
            return read[1], read[2]
        block = self._read(lambda: self.rpc.request("eth_getBlockByNumber", ["latest", False]))
        base = quantity(block.get("baseFeePerGas", 0))
        tip = self._read(self._tip)
        self._fees_read = (now, 2 * base + tip, tip)
        return 2 * base + tip, tip

    def _tip(self) -> int:
        try:
            return quantity(self.rpc.request("eth_maxPriorityFeePerGas", []))
        except Web3RPCError:  # not every node has it: web3 falls back to eth_feeHistory
            return int(self.w3.eth.max_priority_fee)

    def send(
        self,
        to: ChecksumAddress | None,
        data: bytes | HexStr,
        *,
        value: int = 0,
        gas: int | None = None,
        what: str = "transaction",
    ) -> TxReceipt:
        """Send a transaction and wait for its receipt; raises a typed error if it reverts."""
        tx_hash = self.submit(to, data, value=value, gas=gas, what=what)
        return self.wait(tx_hash, what=what)

    def submit(
        self,
        to: ChecksumAddress | None,
        data: bytes | HexStr,
        *,
        value: int = 0,
        gas: int | None = None,
        what: str = "transaction",
    ) -> HexBytes:
        """Sign and send a transaction without waiting; returns its hash."""
        return self.broadcast(self.sign(to, data, value=value, gas=gas, what=what))

    def sign(
        self,
        to: ChecksumAddress | None,
        data: bytes | HexStr,
        *,
        value: int = 0,
        gas: int | None = None,
        what: str = "transaction",
    ) -> SignedTx:
        """Fill and sign a transaction with the account's next nonce, without sending it.

        Gas is estimated (unless given) before signing, so a transaction that would revert raises
        its typed error here and nothing is signed. The nonce is taken by :meth:`broadcast`, not
        here: two signatures before a broadcast hold the same nonce, and only one can be mined.
        """
        tx: dict[str, Any] = {
            "chainId": self.chain_id,
            "from": self.account.address,
            "nonce": self._nonce,
            "value": value,
            "data": HexBytes(data),
        }
        if to is not None:
            tx["to"] = to
        if gas is None:
            gas = int(self._estimate(tx, what) * GAS_HEADROOM)
        max_fee, tip = self._fees()
        fields = DynamicFeeFields(
            chain_id=self.chain_id,
            nonce=tx["nonce"],
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=max_fee,
            gas=gas,
            to=b"" if to is None else bytes.fromhex(to[2:]),
            value=value,
            data=bytes(tx["data"]),
        )
        raw, tx_hash = sign_dynamic_fee(self._key, fields)  # eth-account's bytes, in a fifth
        return SignedTx(
            raw=raw,
            hash=HexBytes(tx_hash),
            nonce=tx["nonce"],
            chain_id=self.chain_id,
            to=to,
            value=value,
            data=bytes(tx["data"]),
            gas=gas,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
        )

    def broadcast(self, signed: SignedTx) -> HexBytes:
        """Send signed bytes and take their nonce; returns their hash.

        Idempotent: bytes the node already holds are not an error (the same hash), so stored bytes
        can be broadcast again after a crash. Raises :class:`NonceUsed` when the node says their
        nonce is already used: they can never be mined.
        """
        tx_hash = self._send_raw(signed)
        self._nonce = max(self._nonce, signed.nonce + 1)
        return tx_hash

    def estimate(
        self, to: ChecksumAddress, data: bytes | HexStr, *, value: int = 0, what: str = "call"
    ) -> int:
        """Gas the transaction would use now, from this account; raises the typed contract error
        it would revert with. Nothing is signed or sent."""
        tx: dict[str, Any] = {
            "from": self.account.address,
            "to": to,
            "value": value,
            "data": HexBytes(data),
        }
        return self._estimate(tx, what)

    def _estimate(self, tx: dict[str, Any], what: str) -> int:
        call = {k: _rpc_value(v) for k, v in tx.items() if k != "chainId"}

        def estimate() -> int:
            try:
                return quantity(self.rpc.request("eth_estimateGas", [call]))
            except ContractLogicError as exc:
                raise decode_revert(revert_data(exc), what) from exc

        result: int = self._read(estimate)
        return result

    def _send_raw(self, signed: SignedTx) -> HexBytes:
        def send() -> HexBytes:
            try:
                return HexBytes(
                    self.rpc.request("eth_sendRawTransaction", ["0x" + signed.raw.hex()])
                )
            except Web3RPCError as exc:
                text = str(exc).lower()
                # These bytes reached the node before (an earlier attempt, or a run before a
                # crash): they are one transaction, with this hash.
                if any(phrase in text for phrase in _ALREADY_KNOWN):
                    return signed.hash
                if "nonce too low" in text:
                    raise NonceUsed(self.account.address, signed.nonce) from exc
                raise

        result: HexBytes = self._read(send)
        return result

    def receipt(self, tx_hash: bytes) -> TxReceipt | None:
        """The transaction's receipt, or None while it is not mined (or not known to the node)."""

        params = [HexBytes(tx_hash).to_0x_hex()]

        def read() -> Any:
            try:
                return self.rpc.request("eth_getTransactionReceipt", params)
            except TransactionNotFound:  # a node that answers an error, not null
                return None

        raw = self._read(read)
        if raw is None:  # not mined yet (where w3.eth would raise TransactionNotFound)
            return None
        # Formatted once, when found, by web3's own formatter, as w3.eth would give it.
        return cast(TxReceipt, AttributeDict.recursive(receipt_formatter(raw)))

    def mined_nonce(self) -> int:
        """The account's transaction count in the latest block: every nonce below it is used."""
        address = self.account.address
        return self._quantity("eth_getTransactionCount", address, "latest")

    def wait(self, tx_hash: bytes, *, what: str = "transaction") -> TxReceipt:
        """Wait for a receipt until the deadline; raises a typed error if the transaction failed."""
        tx_hash = HexBytes(tx_hash)
        deadline = time.monotonic() + self.receipt_timeout_s
        delay = POLL_FIRST_S
        while (receipt := self.receipt(tx_hash)) is None:
            if time.monotonic() > deadline:
                raise TransactionTimeout(tx_hash.to_0x_hex(), self.receipt_timeout_s)
            time.sleep(delay)  # waiting for the next block, bounded by the deadline
            delay = min(delay * POLL_GROWTH, POLL_MAX_S)
        if receipt["status"] != 1:
            raise decode_revert(self._replay(tx_hash, receipt), what, tx_hash.to_0x_hex())
        return receipt

    def _replay(self, tx_hash: HexBytes, receipt: TxReceipt) -> bytes:
        """Revert data of a mined, failed transaction: replay it as a call on the state before its
        block, with that block's number and timestamp (best effort: earlier transactions of the
        same block are not replayed)."""
        try:
            tx = self.w3.eth.get_transaction(tx_hash)
            block = self.w3.eth.get_block(receipt["blockNumber"])
            call = {
                "from": tx["from"],
                "to": tx.get("to"),
                "data": HexBytes(tx["input"]).to_0x_hex(),
            }
            overrides = {"number": hex(block["number"]), "time": hex(block["timestamp"])}
            parent = hex(receipt["blockNumber"] - 1)
            response = self.w3.provider.make_request(
                RPCEndpoint("eth_call"), [call, parent, {}, overrides]
            )
        except TRANSIENT_ERRORS:
            return b""
        return _error_data(response) or self._traced_return(tx_hash)

    def _traced_return(self, tx_hash: HexBytes) -> bytes:
        """The return data of a mined transaction from ``debug_traceTransaction``: the replay's
        fallback on a node without eth_call block overrides (Hardhat 2.x), where a revert that
        depends on the block's time does not happen again on the parent block."""
        options = {"disableStack": True, "disableStorage": True, "enableMemory": False}
        try:
            response = self.w3.provider.make_request(
                RPCEndpoint("debug_traceTransaction"), [tx_hash.to_0x_hex(), options]
            )
        except TRANSIENT_ERRORS:
            return b""
        result: Any = response.get("result") or {}
        value = result.get("returnValue") if isinstance(result, dict) else None
        if isinstance(value, str) and value:
            return bytes.fromhex(value.removeprefix("0x"))
        return b""

    def deploy(self, abi: list[dict[str, Any]], bytecode: str, *args: Any) -> TxReceipt:
        """Deploy a contract; the receipt's ``contractAddress`` is its address."""
        data = (
            self.w3.eth.contract(abi=abi, bytecode=HexStr(bytecode))
            .constructor(*args)
            .data_in_transaction
        )
        return self.send(None, HexStr(data), what="deployment")


# TxReceipt is re-exported: it is what Transactor.send and wait return.
__all__ = ["SignedTx", "Transactor", "TxReceipt", "endpoint_of", "revert_data"]
