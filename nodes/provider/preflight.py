"""The provider's on-chain checks before it stakes or offers (:mod:`nodes.daemon.preflight`).

    checks = provider_checks(config, client)   # gas, stake vs the market's minimum, balance, ...

Run by ``gpumarket provider --check`` (printed, nothing sent) and by the agent at start (the first
failure stops it before registering, so a stake below the minimum is never staked).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from market.chain.client import MarketClient
from market.chain.funds import gas_balance, token_units
from nodes.daemon.preflight import (
    Check,
    Tokens,
    allowance_check,
    balance_check,
    chain_check,
    failed,
    gas_check,
    keystore_check,
    passed,
    stake_check,
)
from nodes.errors import ConfigError
from nodes.provider.config import ProviderConfig, load_config

STAKE_FIELD = "[agent] stake"


def provider_checks(config: ProviderConfig, client: MarketClient) -> list[Check]:
    """Gas; then, registered, its bonded stake against the minimum, else the stake it would
    register with against the minimum, the balance that pays it and the allowance."""
    address = client.address
    chain_id = client.domain.chain_id
    tokens = Tokens(*token_units(client))
    min_stake = client.min_stake()
    checks = [gas_check(address, gas_balance(client, address), chain_id)]
    info = client.provider_info(address)
    if info.registered:
        if info.stake >= min_stake:
            checks.append(passed("stake", f"registered with {tokens(info.stake)} staked; the "
                                 f"market's minimum is {tokens(min_stake)}"))  # fmt: skip
        else:
            checks.append(failed(
                "stake",
                f"registered with {tokens(info.stake)} staked, below the market's minimum "
                f"{tokens(min_stake)}: no offer of it can be matched",
                f"add {tokens(min_stake - info.stake)} of stake",
            ))  # fmt: skip
        return checks
    wanted = config.agent.stake
    stake = (wanted and wanted.units(client.token_metadata())) or min_stake
    checks.append(stake_check(stake, min_stake, STAKE_FIELD, tokens))
    balance = client.balance_of(address)
    checks.append(balance_check(address, balance, stake, "the stake", chain_id, tokens))
    checks.append(allowance_check(client.allowance(address), stake, "the agent", tokens))
    return checks


def check_provider(path: Path) -> Iterator[Check]:
    """``gpumarket provider --check``: the config, the keystore, the chain, then
    :func:`provider_checks`; stops at the first of the first three that fails."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        yield failed("config", str(exc), "fix that field (nodes/provider/config.py)")
        return
    yield passed("config", f"{path} is valid")
    check, key = keystore_check(config.key)
    yield check
    if key is None:
        return
    check, client = chain_check(config.chain, key)
    yield check
    if client is not None:
        yield from provider_checks(config, client)


__all__ = ["STAKE_FIELD", "check_provider", "provider_checks"]
