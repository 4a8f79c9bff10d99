"""Contract wallets on the test chain: ``contracts/test/helpers/ERC1271Lab.sol`` (an owner key's
ECDSA signatures are its own, through ERC-1271; it can be told to burn gas first), compiled once
per session with the pinned solc, and raw wallets whose code answers badly."""

from __future__ import annotations

import functools
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from market.build import REPO_ROOT, SETTINGS, run_solc
from market.chain.devnet import Devnet
from market.chain.tx import Transactor
from tests.integration.conftest import START_BALANCE, MarketEnv

WALLET_SOURCE = "contracts/test/helpers/ERC1271Lab.sol"
BURN_ALL = 2**256 - 1
"""``ERC1271Lab.BURN_ALL``: the check spins until it runs out of gas."""
REVERTS = 10**30
"""A ``gasToBurn`` above any gas left: the check's ``gasleft() - burn`` underflows (Panic 0x11)."""
# Runtime code answering the magic value in 4 bytes instead of a 32-byte word, which
# SignatureChecker refuses: PUSH4 0x1626ba7e, PUSH1 224, SHL, PUSH1 0, MSTORE, RETURN(0, 4).
SHORT_ANSWER_CODE = "0x631626ba7e60e01b60005260046000f3"


@functools.cache
def wallet_artifact() -> tuple[list[dict[str, Any]], str]:
    """ERC1271Lab's ABI and creation bytecode, compiled as the contracts are (same settings)."""
    source = (REPO_ROOT / WALLET_SOURCE).read_text(encoding="utf-8")
    output = run_solc(
        {
            "language": "Solidity",
            "sources": {WALLET_SOURCE: {"content": source}},
            "settings": SETTINGS,
        }
    )
    compiled = output["contracts"][WALLET_SOURCE]["ERC1271Lab"]
    return compiled["abi"], "0x" + compiled["evm"]["bytecode"]["object"]


def deploy_wallet(env: MarketEnv, owner: str) -> Contract:
    """An ERC1271Lab owned by ``owner``, holding START_BALANCE tokens, that has approved the
    market for all of them (sent as the wallet itself, impersonated on anvil)."""
    wallet = new_wallet(env.devnet, owner)
    fund_and_approve(env, wallet.address)
    return wallet


def new_wallet(devnet: Devnet, owner: str, deployer: LocalAccount | None = None) -> Contract:
    """An ERC1271Lab owned by ``owner``, deployed by ``deployer`` (default: account 0): no
    tokens, no approval."""
    w3 = devnet.web3()
    abi, bytecode = wallet_artifact()
    sender = devnet.accounts[0] if deployer is None else deployer
    receipt = Transactor(w3, sender).deploy(abi, bytecode, owner)
    return w3.eth.contract(address=receipt["contractAddress"], abi=abi)


def raw_wallet(env: MarketEnv, address: ChecksumAddress, runtime_code: str) -> ChecksumAddress:
    """An account at ``address`` whose code is ``runtime_code``, funded and approving the market."""
    env.devnet.set_code(address, runtime_code)
    fund_and_approve(env, address)
    return address


def fund_and_approve(env: MarketEnv, address: ChecksumAddress) -> None:
    """Mint START_BALANCE to ``address`` and approve the market from it, as a wallet would by its
    own transaction (anvil impersonates it)."""
    w3, token = env.devnet.web3(), env.contracts.token
    mint = token.encode_abi("mint", args=[address, START_BALANCE])
    Transactor(w3, env.devnet.accounts[0]).send(token.address, mint, what="mint")
    approve = token.encode_abi("approve", args=[env.contracts.market.address, 2**256 - 1])
    as_wallet(env, address, token.address, approve)


def set_gas_to_burn(env: MarketEnv, wallet: Contract, gas: int) -> None:
    as_wallet(env, wallet.address, wallet.address, wallet.encode_abi("setGasToBurn", args=[gas]))


def as_wallet(env: MarketEnv, wallet: ChecksumAddress, to: ChecksumAddress, data: str) -> None:
    """Send ``data`` to ``to`` from ``wallet`` (impersonated; anvil needs no signature)."""
    w3 = env.devnet.web3()
    env.devnet.set_balance(wallet, 10**18)
    env.devnet.unsafe_impersonate(wallet)
    try:
        tx_hash = w3.eth.send_transaction({"from": wallet, "to": to, "data": data})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        assert receipt["status"] == 1, f"the wallet's transaction to {to} reverted"
    finally:
        env.devnet.stop_impersonating(wallet)


def address_of(value: int) -> ChecksumAddress:
    return Web3.to_checksum_address(value.to_bytes(20, "big"))


__all__ = [
    "BURN_ALL",
    "REVERTS",
    "SHORT_ANSWER_CODE",
    "address_of",
    "as_wallet",
    "deploy_wallet",
    "fund_and_approve",
    "new_wallet",
    "raw_wallet",
    "set_gas_to_burn",
    "wallet_artifact",
]
