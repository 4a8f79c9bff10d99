"""What a daemon needs on-chain before it acts, judged from numbers: one line and a fix each.

    checks = [gas_check(address, wei, chain_id), stake_check(stake, min_stake, field, tokens)]
    report(checks, sys.stdout)          # "ok    stake ..." / "FAIL  stake ... -> fix", 0 or 1
    raise_first_failure(checks)         # AgentError with the first failure's fix, or nothing

``gpumarket provider --check`` and ``gpumarket lab --check`` print every check; the provider
agent and the lab client run the same ones at start and stop on the first failure, before
anything is staked, approved or posted. The functions read nothing themselves: the caller reads
the chain (``market.chain``) and passes the numbers, so each rule is testable alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from market.chain.client import MarketClient
from market.errors import ChainError, DeploymentError
from nodes.daemon.config import ChainConfig, KeyConfig, load_deployment
from nodes.daemon.keystore import decrypt_key
from nodes.errors import AgentError, KeystoreError

DEVNET_CHAIN_ID = 31337


@dataclass(frozen=True, slots=True)
class Tokens:
    """How the settlement token's amounts read: its decimals and symbol."""

    decimals: int = 6
    symbol: str = "tUSD"

    def __call__(self, units: int) -> str:
        """``units`` (base units) as whole tokens: ``1,000.5 tUSD``."""
        whole, frac = divmod(units, 10**self.decimals)
        text = f"{whole:,}"
        if frac:
            text += "." + f"{frac:0{self.decimals}d}".rstrip("0")
        return f"{text} {self.symbol}"

    def whole(self, units: int) -> int:
        """The smallest whole number of tokens holding ``units``."""
        whole: int = -(-units // 10**self.decimals)
        return whole


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``fix`` says what to do when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok    {self.name:10} {self.detail}"
        return f"FAIL  {self.name:10} {self.detail} -> {self.fix}"


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def get_tokens_fix(address: str, units: int, chain_id: int, tokens: Tokens) -> str:
    """How to get ``units`` more tokens to ``address``: the faucet on a devnet."""
    if chain_id == DEVNET_CHAIN_ID:
        return f"get tokens: gpumarket faucet {address} {tokens.whole(units)}"
    return f"send {address} at least {tokens(units)} more of the market's token"


def gas_check(address: str, wei: int, chain_id: int) -> Check:
    """The account pays gas for its transactions: it needs some ether."""
    if wei > 0:
        return passed("gas", f"{address} holds {wei / 10**18:.6g} ETH for gas")
    fix = (
        f"get ether: gpumarket faucet {address} 0 --eth 1"
        if chain_id == DEVNET_CHAIN_ID
        else f"send {address} some ether for gas"
    )
    return failed("gas", f"{address} holds no ether to pay for gas", fix)


def stake_check(
    stake: int,
    min_stake: int,
    field: str,
    tokens: Tokens,
) -> Check:
    """The stake to register with is at least the market's minimum (below it, no offer is
    ever matched)."""
    if stake >= min_stake:
        return passed(
            "stake", f"{tokens(stake)} to stake; the market's minimum is {tokens(min_stake)}"
        )
    return failed(
        "stake",
        f"{tokens(stake)} to stake is below the market's minimum {tokens(min_stake)}",
        f"set {field} = {tokens.whole(min_stake)} or more",
    )


def balance_check(
    address: str, balance: int, needed: int, what: str, chain_id: int, tokens: Tokens
) -> Check:
    """``address`` holds the ``needed`` tokens ``what`` takes (the stake, the jobs' escrow)."""
    if balance >= needed:
        return passed(
            "balance", f"{address} holds {tokens(balance)}; {what} takes {tokens(needed)}"
        )
    return failed(
        "balance",
        f"{address} holds {tokens(balance)} but {what} takes {tokens(needed)}",
        get_tokens_fix(address, needed - balance, chain_id, tokens),
    )


def allowance_check(allowance: int, needed: int, who: str, tokens: Tokens) -> Check:
    """The market may pull ``needed``; else the daemon approves it at start (a transaction of
    its own, which the ``gas`` check covers)."""
    if allowance >= needed:
        return passed("allowance", f"the market may pull {tokens(allowance)}")
    return passed(
        "allowance",
        f"the market may pull {tokens(allowance)}; {who} approves {tokens(needed)} at start",
    )


def raise_first_failure(checks: Iterable[Check]) -> None:
    """AgentError with the first failed check's line (what is wrong and the fix)."""
    for c in checks:
        if not c.ok:
            raise AgentError(f"{c.name}: {c.detail}; {c.fix}")


def keystore_check(key: KeyConfig) -> tuple[Check, bytes | None]:
    """The keystore decrypts with the password in its variable: the key, or None."""
    try:
        secret = decrypt_key(key)
    except KeystoreError as exc:
        return failed("keystore", str(key.keystore), exc.reason), None
    return passed("keystore", f"{key.keystore} decrypts"), secret


def chain_check(
    chain: ChainConfig, key: bytes, *, wallet: str | None = None
) -> tuple[Check, MarketClient | None]:
    """The deployment file reads, its RPC URL answers with its chain id, and the market is
    deployed there: a client acting for ``key`` (or its ``wallet``), or None."""
    try:
        deployment = load_deployment(chain)
    except DeploymentError as exc:
        fix = "start a devnet (gpumarket devnet up) or set [chain] deployment to its file"
        return failed("chain", str(exc), fix), None
    try:
        client = MarketClient.connect(deployment, key, wallet=wallet)
        client.min_stake()  # the market answers: a devnet restarted since is a stale file
    except (ChainError, DeploymentError) as exc:
        fix = (
            "start the chain (gpumarket devnet up) or set [chain] rpc_url and deployment to a "
            "running one"
        )
        return failed("chain", f"{deployment.rpc_url}: {exc}", fix), None
    return passed("chain", f"chain {deployment.chain_id} at {deployment.rpc_url}, market "
                  "deployed"), client  # fmt: skip


def report(checks: Iterable[Check], out: TextIO) -> int:
    """Print each check's line as it comes; 0 if all passed, else 1."""
    code = 0
    for c in checks:
        print(c.line(), file=out, flush=True)
        code = code or int(not c.ok)
    return code


__all__ = [
    "DEVNET_CHAIN_ID",
    "Check",
    "Tokens",
    "allowance_check",
    "balance_check",
    "chain_check",
    "failed",
    "gas_check",
    "get_tokens_fix",
    "keystore_check",
    "passed",
    "raise_first_failure",
    "report",
    "stake_check",
]
