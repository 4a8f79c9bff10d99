"""Sending signed transactions from one local account: nonces, fees, gas, receipts, reverts.

The transactor fills every field itself (web3's ``build_transaction`` would make five requests),
keeps the account's nonce locally, estimates gas so that a transaction that would revert fails
before it is sent (with the revert data), and waits for receipts against a deadline.
"""

from __future__ import annotations

from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from hexbytes import HexBytes
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound
from web3.types import TxParams, TxReceipt

from market.errors import RpcUnavailable, TransactionReverted, TransactionTimeout

RECEIPT_TIMEOUT_S = 60.0
GAS_HEADROOM = 1.2
# Connection-level failures worth reporting as "the endpoint is down", not as a bug.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RequestsConnectionError,
    RequestsTimeout,
    ConnectionError,
)


def revert_data(exc: ContractLogicError) -> bytes:
    """The raw revert data web3 attached to ``exc`` (empty when there was none)."""
    data: Any = exc.data
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    return b""


class Transactor:
    """Signs and sends transactions for ``account`` on ``w3``'s chain."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        chain_id: int | None = None,
        receipt_timeout_s: float = RECEIPT_TIMEOUT_S,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.receipt_timeout_s = receipt_timeout_s
        try:
            self.chain_id = chain_id if chain_id is not None else w3.eth.chain_id
            self._nonce: int = w3.eth.get_transaction_count(account.address, "pending")
        except TRANSIENT_ERRORS as exc:
            raise RpcUnavailable(_endpoint(w3), str(exc)) from exc

    @property
    def address(self) -> ChecksumAddress:
        return self.account.address

    def resync_nonce(self) -> int:
        """Re-read the pending nonce from the node (after a transaction failed to send)."""
        self._nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
        return self._nonce

    def _fees(self) -> tuple[int, int]:
        base = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
        tip = self.w3.eth.max_priority_fee
        return 2 * base + tip, tip

    def send(
        self,
        to: ChecksumAddress | None,
        data: bytes | HexStr,
        *,
        value: int = 0,
        gas: int | None = None,
        what: str = "transaction",
    ) -> TxReceipt:
        """Send a transaction and wait for its receipt; raises TransactionReverted on failure."""
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
        tx: dict[str, Any] = {
            "chainId": self.chain_id,
            "from": self.account.address,
            "nonce": self._nonce,
            "value": value,
            "data": HexBytes(data),
        }
        if to is not None:
            tx["to"] = to
        try:
            if gas is None:
                try:
                    gas = int(self.w3.eth.estimate_gas(cast(TxParams, tx)) * GAS_HEADROOM)
                except ContractLogicError as exc:
                    raise TransactionReverted(what, revert_data(exc)) from exc
            max_fee, tip = self._fees()
            tx.update({"gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip})
            signed = self.account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except TRANSIENT_ERRORS as exc:
            raise RpcUnavailable(_endpoint(self.w3), str(exc)) from exc
        self._nonce += 1
        return tx_hash

    def wait(self, tx_hash: HexBytes, *, what: str = "transaction") -> TxReceipt:
        """Wait for a receipt until the deadline; raises TransactionReverted if it failed."""
        try:
            try:  # an instant-mining devnet has the receipt already: skip the first poll sleep
                receipt = self.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self.receipt_timeout_s, poll_latency=0.01
                )
        except TimeExhausted as exc:
            raise TransactionTimeout(tx_hash.to_0x_hex(), self.receipt_timeout_s) from exc
        except TRANSIENT_ERRORS as exc:
            raise RpcUnavailable(_endpoint(self.w3), str(exc)) from exc
        if receipt["status"] != 1:
            raise TransactionReverted(what, b"", tx_hash.to_0x_hex())
        return receipt

    def deploy(self, abi: list[dict[str, Any]], bytecode: str, *args: Any) -> TxReceipt:
        """Deploy a contract; the receipt's ``contractAddress`` is its address."""
        data = (
            self.w3.eth.contract(abi=abi, bytecode=HexStr(bytecode))
            .constructor(*args)
            .data_in_transaction
        )
        return self.send(None, HexStr(data), what="deployment")


def _endpoint(w3: Web3) -> str:
    return str(getattr(w3.provider, "endpoint_uri", w3.provider))


__all__ = ["TRANSIENT_ERRORS", "Transactor", "revert_data"]
