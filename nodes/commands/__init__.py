"""The first hour's commands of ``gpumarket`` (docs/guides.md), one module each:

* :mod:`~nodes.commands.devnet`: ``devnet up``, a chain that moves, its keys and deployment;
* :mod:`~nodes.commands.keys`: ``keys new|import|list``, encrypted keystores;
* :mod:`~nodes.commands.faucet`: ``faucet ADDRESS AMOUNT``, tokens and gas on a devnet;
* :mod:`~nodes.commands.init`: ``provider init`` and ``lab init``, a commented config;
* :mod:`~nodes.commands.market`: ``models``, ``book``, ``offers``, ``bids``, ``explain``, ``lease``,
  ``cancel``: the market as a relay and the chain show it.

``nodes.cli`` registers them (:func:`register`); ``--check`` lives beside each daemon
(``nodes/provider/preflight.py``, ``nodes/lab/preflight.py``).
"""

from __future__ import annotations

from typing import Any

from nodes.commands import devnet, faucet, keys, market
from nodes.commands.init import add_init_parser


def register(subparsers: Any) -> None:
    """Add ``devnet``, ``keys``, ``faucet`` and the market's commands to the CLI's subparsers."""
    devnet.add_parser(subparsers)
    keys.add_parser(subparsers)
    faucet.add_parser(subparsers)
    market.add_parsers(subparsers)


__all__ = ["add_init_parser", "register"]
