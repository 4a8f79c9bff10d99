"""Acting for a contract wallet: transactions sent through its ``execute``, signed by its owner.

A lab or provider may be a contract wallet (a multisig, a smart account): the market sees the
wallet as the party (``lease.lab``, the account credited, the account whose escrow is pulled), and
decides some calls by their sender (terminate, dispute, withdraw, close, approve). Those must come
from the wallet itself. :class:`WalletTransactor` sends every transaction as the owner key's call
to the wallet's ``execute(address dest, uint256 value, bytes func)``, the interface of ERC-4337's
reference ``SimpleAccount`` (and of the accounts built on it), which calls ``dest`` as the wallet
and passes a revert on, so a refused call still raises its typed contract error here.

Orders are signed by the owner key for the wallet and checked through its ERC-1271
``isValidSignature``; receipts and vouchers are signed by the owner key directly, which the orders
name as the lease's fixed key (``docs/decisions/0011-signed-terms.md``).
"""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from hexbytes import HexBytes
from web3 import Web3

from market.chain.tx import SignedTx, Transactor
from market.errors import InvalidArgument
from market.protocol.keccak import keccak
from market.protocol.types import checksum_address

EXECUTE_SELECTOR = keccak(b"execute(address,uint256,bytes)")[:4]
"""``execute(address dest, uint256 value, bytes func)``: ERC-4337 ``SimpleAccount``'s call."""


def execute_calldata(to: str, value: int, data: bytes | HexStr) -> bytes:
    """The wallet call that makes the wallet call ``to`` with ``value`` and ``data``."""
    return EXECUTE_SELECTOR + abi_encode(
        ["address", "uint256", "bytes"], [to, value, bytes(HexBytes(data))]
    )


class WalletTransactor(Transactor):
    """A :class:`Transactor` for ``wallet``: each transaction is the owner's ``execute`` call on
    the wallet, so the market sees the wallet as its sender. Nonces, fees, estimates (a refused
    call raises its typed error before signing), durable signed bytes and receipts are the
    owner's transactions', as for any account."""

    def __init__(self, w3: Web3, owner: LocalAccount, wallet: str, **kwargs: Any) -> None:
        super().__init__(w3, owner, **kwargs)
        self.wallet: ChecksumAddress = checksum_address(wallet)

    @property
    def address(self) -> ChecksumAddress:
        """The account the contracts see: the wallet."""
        return self.wallet

    def sign(
        self,
        to: ChecksumAddress | None,
        data: bytes | HexStr,
        *,
        value: int = 0,
        gas: int | None = None,
        what: str = "transaction",
    ) -> SignedTx:
        if to is None:
            raise InvalidArgument("to", to, "a wallet does not deploy contracts through execute")
        inner = execute_calldata(to, value, data)
        return super().sign(self.wallet, inner, value=0, gas=gas, what=what)

    def estimate(
        self, to: ChecksumAddress, data: bytes | HexStr, *, value: int = 0, what: str = "call"
    ) -> int:
        return super().estimate(self.wallet, execute_calldata(to, value, data), what=what)


__all__ = ["EXECUTE_SELECTOR", "WalletTransactor", "execute_calldata"]
