"""The lab's on-chain checks before it bids (:mod:`nodes.daemon.preflight`).

    checks = lab_checks(client, needed, gas_payer)   # gas, tokens for the escrow, allowance

``needed`` is what the lab's bids may pull into escrow (``[lab] fund``, else each open bid's
price x GPUs x duration). Run by ``gpumarket lab --check`` (printed, nothing sent) and by the lab
at start, before it approves or posts anything: a lab without the tokens is told so there, not
left to a relay whose fill fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from market.chain.client import MarketClient
from market.chain.funds import gas_balance, token_units
from market.protocol.types import Bid, Signed
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
)
from nodes.errors import ConfigError
from nodes.lab.config import JobConfig, load_config


def jobs_escrow(jobs: Iterable[JobConfig]) -> int:
    """What the jobs' bids may pull into escrow at most, in token base units."""
    return sum(j.max_price_per_gpu_second * j.gpus * j.duration for j in jobs)


def bid_escrow(bid: Signed[Bid]) -> int:
    """What a signed bid may pull into escrow at most: price x GPUs x duration."""
    m = bid.message
    return m.max_price_per_gpu_second * m.gpu_count * m.duration


def lab_checks(client: MarketClient, needed: int, gas_payer: str) -> list[Check]:
    """Gas for ``gas_payer`` (the key's account), then the lab's (or its wallet's) tokens and
    allowance against ``needed``."""
    chain_id = client.domain.chain_id
    tokens = Tokens(*token_units(client))
    lab = client.address
    return [
        gas_check(gas_payer, gas_balance(client, gas_payer), chain_id),
        balance_check(lab, client.balance_of(lab), needed, "the jobs' escrow", chain_id, tokens),
        allowance_check(client.allowance(lab), needed, "the lab", tokens),
    ]


def check_lab(path: Path) -> Iterator[Check]:
    """``gpumarket lab --check``: the config, the keystores, the chain, then :func:`lab_checks`
    for all the config's jobs (or ``[lab] allowance``); stops at the first of the first three that
    fails."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        yield failed("config", str(exc), "fix that field (nodes/lab/config.py)")
        return
    yield passed("config", f"{path} is valid")
    check, key = keystore_check(config.key)
    yield check
    if key is None:
        return
    if config.voucher_key is not None:
        check, voucher = keystore_check(config.voucher_key)
        yield check
        if voucher is None:
            return
    check, client = chain_check(config.chain, key, wallet=config.wallet)
    yield check
    if client is None:
        return
    token = client.token_metadata()
    allowance = config.lab.allowance_units(token)
    needed = allowance if allowance is not None else jobs_escrow(config.jobs(token))
    yield from lab_checks(client, needed, client.account.address)


__all__ = ["bid_escrow", "check_lab", "jobs_escrow", "lab_checks"]
