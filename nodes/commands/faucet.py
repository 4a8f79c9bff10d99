"""``gpumarket faucet ADDRESS AMOUNT``: TestUSD and gas for an address, on a devnet only.

    gpumarket faucet 0xabc... 1000 [--eth 1] [--deployment FILE]

Mints AMOUNT whole tokens of the devnet's TestUSD to ADDRESS and sends it ``--eth`` ether (default
1) from a dev account, so a new key can pay for its transactions. Any chain but a devnet (chain
id 31337 with TestUSD's ``mint``) is refused: there, tokens come from the token's own sources.
"""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from market.chain.deploy import Deployment, default_deployment_path
from market.chain.faucet import DevnetFaucet
from market.chain.funds import token_units
from market.protocol.types import checksum_address
from nodes.commands.progress import waiting

DEFAULT_ETH = Decimal(1)


def whole_amount(text: str) -> Decimal:
    """A non-negative decimal amount (``1000``, ``2.5``); ArgumentTypeError otherwise."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _address(text: str) -> str:
    try:
        return str(checksum_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a 0x-prefixed 20-byte hex address: {text!r}"
        ) from None


def cmd_faucet(args: argparse.Namespace) -> int:
    deployment = Deployment.load(args.deployment or default_deployment_path())
    faucet = DevnetFaucet.connect(deployment)
    decimals, symbol = token_units(faucet.client)
    tokens = int(args.amount * 10**decimals)
    waiting(f"sending {args.amount} {symbol} and {args.ether} ETH to {args.address}",
            on="the transactions")  # fmt: skip
    faucet.give(args.address, tokens=tokens, eth_wei=int(args.ether * 10**18))
    print(f"sent {args.amount} {symbol} and {args.ether} ETH to {args.address}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gpumarket faucet`` on the CLI's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "faucet", help="TestUSD and gas for an address on a devnet (refused on other chains)"
    )
    parser.add_argument("address", type=_address, metavar="ADDRESS")
    parser.add_argument("amount", type=whole_amount, metavar="AMOUNT", help="whole TestUSD")
    parser.add_argument(
        "--eth",
        dest="ether",
        type=whole_amount,
        default=DEFAULT_ETH,
        help="ether for gas (default 1)",
    )
    parser.add_argument(
        "--deployment", type=Path, default=None, metavar="FILE",
        help="deployment file (default: $GPUMARKET_DEPLOYMENT or .gpumarket/deployment.json)",
    )  # fmt: skip
    parser.set_defaults(func=cmd_faucet)
    return parser


__all__ = ["add_parser", "cmd_faucet", "whole_amount"]
