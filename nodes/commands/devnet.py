"""``gpumarket devnet up``: anvil in the foreground, the contracts deployed, its keys printed.

    gpumarket devnet up [--port N] [--block-time SECONDS] [--deployment FILE] [--json]

A block is mined every ``--block-time`` seconds (default 1), with or without transactions, so
the daemons' clocks (leases, receipts, claims run on chain time) move as the wall clock does;
``--block-time 0`` mines only when a transaction arrives. The market is deployed with the demo's
short windows (:data:`nodes.localnet.PARAMS`: claims 20 s, challenges 10 s, unbonding 60 s), so a
paid lease closes and a stake comes back within the first hour, not a day later. Once ready it
prints the RPC URL, chain id, the deployment (file and addresses), the windows, the funded test
accounts with their private keys (anvil's well-known PUBLIC test keys) and the next commands of
docs/guides.md's first hour; with ``--json`` one JSON document instead (:class:`DevnetReady`).
Ctrl-C or SIGTERM stops the chain and removes the deployment file.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from market.chain.deploy import Contracts, default_deployment_path, deploy
from market.chain.devnet import Devnet
from market.errors import MarketError
from nodes.commands.progress import waiting
from nodes.localnet import PARAMS as DEVNET_PARAMS

DEFAULT_BLOCK_TIME_S = 1
BALANCE_ETH = 10_000
TEST_KEYS_WARNING = (
    "PUBLIC TEST KEYS: anvil's well-known dev accounts, known to everyone; use them on this "
    "devnet only, never on a real chain"
)


class TestAccount(msgspec.Struct, frozen=True):
    """One funded dev account: its address and (public, well-known) private key."""

    address: str
    private_key: str


class DevnetReady(msgspec.Struct, frozen=True, rename="camel"):
    """What ``devnet up --json`` prints once the devnet serves."""

    rpc_url: str
    chain_id: int
    block_time_s: float
    deployment_file: str
    deploy_block: int
    contracts: dict[str, str]
    accounts_balance_eth: int
    test_accounts: list[TestAccount]
    claim_window_s: int = DEVNET_PARAMS.claim_window
    challenge_window_s: int = DEVNET_PARAMS.challenge_window
    unbonding_delay_s: int = DEVNET_PARAMS.unbonding_delay
    warning: str = TEST_KEYS_WARNING


class _Stop(Exception):
    """Raised from the signal handler to leave the foreground wait the same way on both."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def describe(contracts: Contracts) -> str:
    """The deployment as aligned lines: chain id, RPC URL, deploy block, each contract."""
    d = contracts.deployment
    lines = [
        f"chain id      {d.chain_id}",
        f"rpc url       {d.rpc_url}",
        f"deploy block  {d.deploy_block}",
    ]
    lines += [f"{name:13} {addr}" for name, addr in sorted(d.contracts.items())]
    return "\n".join(lines)


def ready_report(dev: Devnet, contracts: Contracts, path: Path, block_time: float) -> DevnetReady:
    d = contracts.deployment
    return DevnetReady(
        rpc_url=dev.rpc_url,
        chain_id=d.chain_id,
        block_time_s=block_time,
        deployment_file=str(path.resolve()),
        deploy_block=d.deploy_block,
        contracts=dict(sorted(d.contracts.items())),
        accounts_balance_eth=BALANCE_ETH,
        test_accounts=[TestAccount(a.address, "0x" + a.key.hex()) for a in dev.accounts],
    )


def render_text(report: DevnetReady, contracts: Contracts) -> str:
    mining = (
        f"a block every {report.block_time_s:g} s, with or without transactions"
        if report.block_time_s
        else "a block per transaction only (--block-time 0): chain time stands still between"
    )
    lines = [
        describe(contracts),
        f"mining        {mining}",
        f"windows       claims {report.claim_window_s} s, challenges "
        f"{report.challenge_window_s} s, unbonding {report.unbonding_delay_s} s (short)",
        f"deployment    {report.deployment_file}",
    ]
    lines.append(f"\nfunded test accounts ({report.accounts_balance_eth} ETH each)")
    lines.append(f"  {TEST_KEYS_WARNING}")
    lines += [
        f"  [{i}] {a.address}  key {a.private_key}" for i, a in enumerate(report.test_accounts)
    ]
    lines += [
        "",
        "next (docs/guides.md, first hour), each daemon in a terminal of its own:",
        f"  GPUMARKET_MATCHER_KEY={report.test_accounts[1].private_key} gpumarket relay "
        "--db relay.sqlite --port 7000 --matcher-key-env GPUMARKET_MATCHER_KEY",
        "  export GPUMARKET_KEY_PASSWORD=...            # the password of your keystores",
        "  gpumarket keys new --out provider-key.json",
        "  gpumarket faucet ADDRESS 1000                # tokens and gas for the printed address",
        "  gpumarket provider init --keystore provider-key.json --out provider.toml",
        "  gpumarket provider --config provider.toml --check",
        "  gpumarket provider --config provider.toml",
        "  gpumarket keys new --out lab-key.json         # then: gpumarket faucet ADDRESS 100",
        "  gpumarket lab init --keystore lab-key.json --out lab.toml",
        "  gpumarket lab --config lab.toml --exit-when-done",
        "",
        "devnet ready; Ctrl-C stops it",
    ]
    return "\n".join(lines)


def cmd_devnet_up(args: argparse.Namespace) -> int:
    path: Path = args.deployment or default_deployment_path()
    block_time: float = args.block_time
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stop)
    # A signal may come at any moment from here on (while deploying or printing, too): it stops
    # the devnet the same way.
    try:
        waiting("starting anvil", on="its RPC endpoint")
        with Devnet.start(
            port=args.port,
            chain_id=args.chain_id,
            balance_eth=BALANCE_ETH,
            block_time=block_time or None,
        ) as dev:
            try:
                waiting(f"deploying the contracts to {dev.rpc_url}", on="the transactions")
                contracts = deploy(
                    dev.web3(), dev.accounts[0], rpc_url=dev.rpc_url, params=DEVNET_PARAMS
                )
                contracts.deployment.save(path)
                report = ready_report(dev, contracts, path, block_time)
                if args.json:
                    print(msgspec.json.encode(report).decode(), flush=True)
                else:
                    print(render_text(report, contracts), flush=True)
                _wait_forever(dev)
            finally:
                path.unlink(missing_ok=True)
    except _Stop:
        print("stopping devnet", flush=True)
    return 0


def _wait_forever(dev: Devnet) -> None:
    """Block until a signal arrives; report if anvil dies on its own."""
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes pause() when anvil exits
    while dev.alive:
        signal.pause()
    raise MarketError(f"anvil (pid {dev.pid}) exited on its own")


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gpumarket devnet up`` on the CLI's subparsers."""
    devnet = subparsers.add_parser("devnet", help="a local anvil chain with the contracts deployed")
    devnet_sub = devnet.add_subparsers(dest="devnet_command", required=True)
    up = devnet_sub.add_parser("up", help="run a devnet in the foreground until Ctrl-C")
    up.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    up.add_argument("--chain-id", type=int, default=31337)
    up.add_argument(
        "--block-time",
        type=_seconds,
        default=DEFAULT_BLOCK_TIME_S,
        metavar="SECONDS",
        help="mine a block this often, transactions or not (default 1; 0: only on a transaction)",
    )
    up.add_argument(
        "--deployment",
        type=Path,
        default=None,
        help="deployment file to write (default: $GPUMARKET_DEPLOYMENT or "
        ".gpumarket/deployment.json)",
    )
    up.add_argument("--json", action="store_true", help="print one JSON document once ready")
    up.set_defaults(func=cmd_devnet_up)
    parser: argparse.ArgumentParser = devnet
    return parser


__all__ = ["DevnetReady", "TestAccount", "add_parser", "cmd_devnet_up", "describe"]
