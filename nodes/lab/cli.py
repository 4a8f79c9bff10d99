"""``gpumarket lab --config FILE [--exit-when-done]``: the lab client in the foreground.

``gpumarket lab --config FILE --check`` checks the config, keystores, chain, gas, tokens and
allowance for the jobs, one line each, sending nothing (exit 1 on a failure);
``gpumarket lab init`` writes a commented config for the running devnet
(:mod:`nodes.commands.init`).

Prints ``lab ready address=0x... metrics=http://...`` on stdout once started (the lab's account:
its key's, or the contract wallet of its ``[key] wallet``); its progress events (``lease_opened``,
``receipt_verified``, ``voucher_sent``, ``lease_closed``, ``refund_withdrawn``, ...) are log lines
on stderr, once each (``GPUMARKET_LOG_FORMAT=json`` for JSON lines). SIGTERM or SIGINT stops it
after the tick in progress. With ``--exit-when-done`` it exits 0 once every job is settled: its
bid can no longer fill, its leases are closed, and the lab's credit is withdrawn.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from nodes import logs
from nodes.commands.init import add_init_parser
from nodes.commands.progress import waiting
from nodes.daemon.config import load_deployment
from nodes.daemon.keystore import decrypt_key
from nodes.daemon.preflight import report
from nodes.daemon.startup import stop_signals
from nodes.lab.agent import LabAgent
from nodes.lab.config import load_config
from nodes.lab.preflight import check_lab


async def serve(agent: LabAgent, *, exit_when_done: bool) -> int:
    """Start ``agent``, run it until done or signalled, and stop it gracefully."""
    with stop_signals(agent.request_stop):
        await agent.start()
        waiting("lab: bids posted", on="a match (lease_opened), then the leases' settlement")
        try:
            return await agent.run(exit_when_done=exit_when_done)
        finally:
            await agent.stop()


def cmd_lab(args: argparse.Namespace) -> int:
    if args.config is None:
        print("error: give --config FILE (or `gpumarket lab init` to write one)", file=sys.stderr)
        return 2
    if args.check:
        return report(check_lab(args.config), sys.stdout)
    config = load_config(args.config)
    key = decrypt_key(config.key)
    voucher_key = None if config.voucher_key is None else decrypt_key(config.voucher_key)
    deployment = load_deployment(config.chain)
    logs.configure()
    agent = LabAgent(config, deployment, key, voucher_key=voucher_key, out=sys.stdout)
    return asyncio.run(serve(agent, exit_when_done=args.exit_when_done))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gpumarket lab`` on the CLI's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "lab", help="run the lab client: bid, verify receipts, pay, settle"
    )
    parser.add_argument("--config", type=Path, default=None, help="the lab's TOML config")
    parser.add_argument(
        "--check",
        action="store_true",
        help="check config, keystores, chain, gas, tokens and allowance; send nothing",
    )
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="exit 0 once every job's leases are closed and the credit withdrawn",
    )
    parser.set_defaults(func=cmd_lab)
    add_init_parser(parser.add_subparsers(dest="lab_command"), "lab")
    return parser


__all__ = ["add_parser", "cmd_lab", "serve"]
