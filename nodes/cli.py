"""The ``gpumarket`` command line.

gpumarket devnet up [--port N] [--deployment FILE]   run anvil, deploy, write the deployment file
gpumarket deploy --rpc-url URL [--key-env VAR]       deploy the contract set to any EVM chain
gpumarket demo [--providers N --labs M --jobs K]     the main job: a market round on a devnet
gpumarket relay --db PATH [--port N] [--peer URL]    a relay: order book, gossip, matcher
                [--matching continuous|auction]      (auction: a uniform-price round every
                [--auction-interval SECONDS]          --auction-interval seconds)
gpumarket relay --config FILE                        the same from a TOML file (relay/config.py)
gpumarket provider --config FILE                     the provider agent (docs/guides.md)
gpumarket lab --config FILE [--exit-when-done]       the lab client
gpumarket status (--address ADDR | --key-env VAR)    an account's balances, stake, leases, claims
                 [--deployment FILE] [--json]        (read-only; bad input exits 2)
gpumarket price suggest|record|backtest ...          pricing help (nodes/pricing/cli.py)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from market.chain.client import MarketClient
from market.chain.deploy import (
    Contracts,
    Deployment,
    default_deployment_path,
    deploy,
    deploy_over_http,
)
from market.chain.devnet import Devnet
from market.errors import DeploymentError, MarketError, RpcUnavailable, WrongChain
from nodes import demo, logs, status
from nodes.daemon.config import load_deployment
from nodes.daemon.keystore import decrypt_key
from nodes.daemon.startup import ready_line
from nodes.lab import cli as lab_cli
from nodes.pricing import cli as price_cli
from nodes.relay import Relay, RelayConfig
from nodes.relay import run as run_relay
from nodes.relay.config import MATCHING_MODES
from nodes.relay.config import load_config as load_relay_config


class _Stop(Exception):
    """Raised from the SIGTERM handler to leave the foreground loop the same way Ctrl-C does."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def describe(contracts: Contracts) -> str:
    d = contracts.deployment
    lines = [
        f"chain id      {d.chain_id}",
        f"rpc url       {d.rpc_url}",
        f"deploy block  {d.deploy_block}",
    ]
    lines += [f"{name:13} {addr}" for name, addr in sorted(d.contracts.items())]
    return "\n".join(lines)


def cmd_devnet_up(args: argparse.Namespace) -> int:
    path: Path = args.deployment or default_deployment_path()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stop)
    # A signal may come at any moment from here on (while deploying or printing, too): it stops
    # the devnet the same way.
    try:
        with Devnet.start(port=args.port, chain_id=args.chain_id) as dev:
            try:
                contracts = deploy(dev.web3(), dev.accounts[0], rpc_url=dev.rpc_url)
                contracts.deployment.save(path)
                print(describe(contracts))
                print(
                    "accounts (funded with 10000 ETH each; keys are anvil's well-known test keys):"
                )
                for i, acct in enumerate(dev.accounts):
                    print(f"  [{i}] {acct.address}")
                print(f"deployment file {path}")
                print("devnet ready; Ctrl-C stops it", flush=True)
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


def cmd_deploy(args: argparse.Namespace) -> int:
    key = os.environ.get(args.key_env)
    if not key:
        print(f"error: set {args.key_env} to the deployer's private key", file=sys.stderr)
        return 2
    contracts = deploy_over_http(args.rpc_url, key)
    path: Path = args.deployment or default_deployment_path()
    contracts.deployment.save(path)
    print(describe(contracts))
    print(f"deployment file {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return demo.run(out=sys.stdout, providers=args.providers, labs=args.labs, jobs=args.jobs)


def cmd_relay(args: argparse.Namespace) -> int:
    deployment = Deployment.load(args.deployment)
    key = None
    if args.matcher_key_env is not None:
        key = os.environ.get(args.matcher_key_env)
        if not key:
            print(
                f"error: set {args.matcher_key_env} to the matcher's private key", file=sys.stderr
            )
            return 2
    if args.config is not None:
        config = load_relay_config(args.config, matcher_key=key)
    else:
        config = RelayConfig(
            db_path=args.db,
            host=args.host,
            port=args.port,
            peers=tuple(args.peer),
            matcher_key=key,
            relay_id=args.relay_id,
            confirmations=args.confirmations,
            matching=args.matching,
            auction_interval_s=args.auction_interval,
        )
    logs.configure()

    def ready(relay: Relay) -> None:
        print(ready_line("relay", url=relay.url, relay=relay.relay_id), flush=True)

    try:
        run_relay(config, deployment, on_ready=ready)
    except OSError as exc:  # the port is taken, the database directory is not writable, ...
        print(f"error: the relay could not start: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_provider(args: argparse.Namespace) -> int:
    from nodes.provider.agent import ProviderAgent, run_agent
    from nodes.provider.config import load_config

    config = load_config(args.config)
    key = decrypt_key(config.key)
    deployment = load_deployment(config.chain)
    logs.configure()

    def ready(agent: ProviderAgent) -> None:
        print(ready_line("provider", url=agent.url, address=agent.address), flush=True)

    try:
        run_agent(config, key, deployment, on_ready=ready)
    except OSError as exc:  # the port is taken, the state directory is not writable, ...
        print(f"error: the provider agent could not start: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        address = _status_address(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        client = MarketClient.connect(Deployment.load(args.deployment))
        result = status.collect_status(client, address)
    except (DeploymentError, RpcUnavailable, WrongChain) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(status.render_json(result) if args.json else status.render_table(result))
    return 0


def _status_address(args: argparse.Namespace) -> str:
    """The account ``status`` shows: ``--address``, or the address of the key in ``--key-env``."""
    if args.address is not None:
        return status.parse_address(args.address)
    key = os.environ.get(args.key_env)
    if not key:
        raise ValueError(f"set {args.key_env} to the account's private key")
    return status.address_of_key(key, args.key_env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpumarket", description="A permissionless GPU compute market."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    devnet = sub.add_parser("devnet", help="a local anvil chain with the contracts deployed")
    devnet_sub = devnet.add_subparsers(dest="devnet_command", required=True)
    up = devnet_sub.add_parser("up", help="run a devnet in the foreground until Ctrl-C")
    up.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    up.add_argument("--chain-id", type=int, default=31337)
    up.add_argument("--deployment", type=Path, default=None, help="deployment file to write")
    up.set_defaults(func=cmd_devnet_up)

    dep = sub.add_parser("deploy", help="deploy the contract set to an EVM JSON-RPC endpoint")
    dep.add_argument("--rpc-url", required=True)
    dep.add_argument("--key-env", default="GPUMARKET_DEPLOYER_KEY", help="variable holding the key")
    dep.add_argument("--deployment", type=Path, default=None, help="deployment file to write")
    dep.set_defaults(func=cmd_deploy)

    dm = sub.add_parser("demo", help="the main job: a full market round on an embedded devnet")
    dm.add_argument("--providers", type=int, default=3, help="providers (1-6)")
    dm.add_argument("--labs", type=int, default=2, help="labs (1-3)")
    dm.add_argument("--jobs", type=int, default=2, help="bids, each a leased job, per lab")
    dm.set_defaults(func=cmd_demo)

    rl = sub.add_parser("relay", help="run a relay: order book, gossip and matcher over HTTP")
    rl.add_argument("--deployment", type=Path, default=None, help="deployment file to use")
    rl.add_argument("--host", default="127.0.0.1")
    rl.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    source = rl.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", type=Path, help="SQLite file for the relay's state")
    source.add_argument(
        "--config",
        type=Path,
        help="the relay's TOML file (nodes/relay/config.py) instead of the options here, but "
        "--matcher-key-env and --deployment",
    )
    rl.add_argument("--peer", action="append", default=[], help="a peer relay's URL (repeatable)")
    rl.add_argument(
        "--matcher-key-env", default=None, help="variable holding the key that opens leases"
    )
    rl.add_argument(
        "--matching",
        choices=MATCHING_MODES,
        default="continuous",
        help="continuous: match orders as they arrive; auction: clear at one uniform price "
        "every --auction-interval seconds",
    )
    rl.add_argument(
        "--auction-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between call auctions (with --matching auction)",
    )
    rl.add_argument("--relay-id", default=None, help="default: a random id kept in the database")
    rl.add_argument(
        "--confirmations",
        type=int,
        default=0,
        help="act on chain events this many blocks deep (0: devnet; more where chains reorg)",
    )
    rl.set_defaults(func=cmd_relay)

    pv = sub.add_parser("provider", help="run the provider agent: offers, jobs, receipts, claims")
    pv.add_argument("--config", type=Path, required=True, help="the agent's TOML file")
    pv.set_defaults(func=cmd_provider)

    lab_cli.add_parser(sub)

    st = sub.add_parser("status", help="an account's balances, stake, leases and pending claims")
    st.add_argument(
        "--deployment", type=Path, default=None, metavar="FILE", help="deployment file to use"
    )
    who = st.add_mutually_exclusive_group(required=True)
    who.add_argument("--address", metavar="ADDR", help="the account to show (provider or lab)")
    who.add_argument("--key-env", metavar="VAR", help="variable holding the account's key")
    st.add_argument(
        "--json", action="store_true", help="print the JSON document (nodes/status/__init__.py)"
    )
    st.set_defaults(func=cmd_status)

    price_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except MarketError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
