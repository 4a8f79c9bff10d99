"""The ``gpumarket`` command line.

gpumarket --version                                  the installed version
gpumarket devnet up [--port N] [--block-time S]      run anvil (a block every S seconds), deploy,
                    [--deployment FILE] [--json]     write the deployment file, print test keys
gpumarket keys new|import|list                       encrypted keystores (nodes/commands/keys.py)
gpumarket faucet ADDRESS AMOUNT                      TestUSD and gas on a devnet
gpumarket deploy --rpc-url URL [--key-env VAR]       deploy the contract set to any EVM chain
gpumarket demo [--providers N --labs M --jobs K]     the main job: a market round on a devnet
gpumarket relay --db PATH [--port N] [--peer URL]    a relay: order book, gossip, matcher
gpumarket relay --store postgresql://...             the same, its state in PostgreSQL
gpumarket relay --store URL --cluster NAME --nats URL --instance ID   one instance of a cluster
                [--matching continuous|auction]      (auction: a uniform-price round every
                [--auction-interval SECONDS]          --auction-interval seconds)
gpumarket relay --config FILE                        the same from a TOML file (relay/config.py)
gpumarket provider --config FILE [--check]           the provider agent (docs/guides.md)
gpumarket provider init [--keystore FILE]            a commented config for the running devnet
gpumarket lab --config FILE [--exit-when-done]       the lab client
gpumarket lab --config FILE --check | lab init       its checks; a config for the devnet
gpumarket status (--address ADDR | --key-env VAR)    an account's balances, stake, leases, claims
                 [--deployment FILE] [--json]        (read-only; bad input exits 2)
gpumarket price suggest|record|backtest ...          pricing help (nodes/pricing/cli.py)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from market.chain.client import MarketClient
from market.chain.deploy import Deployment, default_deployment_path, deploy_over_http
from market.errors import DeploymentError, MarketError, RpcUnavailable, WrongChain
from nodes import commands, demo, logs, status
from nodes.commands.devnet import describe
from nodes.commands.progress import waiting
from nodes.daemon.config import load_deployment
from nodes.daemon.keystore import decrypt_key, keystore_address
from nodes.daemon.preflight import report
from nodes.daemon.startup import ready_line
from nodes.lab import cli as lab_cli
from nodes.pricing import cli as price_cli
from nodes.relay import Relay, RelayConfig
from nodes.relay import run as run_relay
from nodes.relay.config import MATCHING_MODES, ClusterConfig
from nodes.relay.config import load_config as load_relay_config


def cmd_deploy(args: argparse.Namespace) -> int:
    key = os.environ.get(args.key_env)
    if not key:
        print(f"error: set {args.key_env} to the deployer's private key", file=sys.stderr)
        return 2
    waiting(f"deploying the contracts to {args.rpc_url}", on="the transactions")
    contracts = deploy_over_http(args.rpc_url, key)
    path: Path = args.deployment or default_deployment_path()
    contracts.deployment.save(path)
    print(describe(contracts))
    print(f"deployment file {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return demo.run(
        out=sys.stdout, providers=args.providers, labs=args.labs, jobs=args.jobs, keep=args.keep
    )


def cmd_relay(args: argparse.Namespace) -> int:
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
        cluster = None
        if args.cluster is not None:
            if args.nats is None or args.instance is None:
                print("error: --cluster needs --nats URL and --instance ID", file=sys.stderr)
                return 2
            cluster = ClusterConfig(
                nats_url=args.nats,
                name=args.cluster,
                instance=args.instance,
                lease_ttl_s=args.lease_ttl,
            )
        config = RelayConfig(
            db_path=args.db,
            store=args.store,
            host=args.host,
            port=args.port,
            peers=tuple(args.peer),
            matcher_key=key,
            relay_id=args.relay_id,
            confirmations=args.confirmations,
            matching=args.matching,
            auction_interval_s=args.auction_interval,
            cluster=cluster,
        )
    deployment = Deployment.load(args.deployment)  # after the options: their errors come first
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
    from nodes.provider.preflight import check_provider

    if args.config is None:
        print("error: give --config FILE (or `gpumarket provider init` to write one)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.check:
        return report(check_provider(args.config), sys.stdout)
    config = load_config(args.config)
    key = decrypt_key(config.key)
    deployment = load_deployment(config.chain)
    logs.configure()
    waiting(f"provider {keystore_address(config.key.keystore)}: starting",
            on="the chain (registration, stake and approval when new) and the relays")  # fmt: skip

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
        waiting(f"reading {address}'s standing", on="the chain (its leases since the deployment)")
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
    parser.add_argument("--version", action="version", version=f"gpumarket {version('gpumarket')}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.register(sub)

    dep = sub.add_parser("deploy", help="deploy the contract set to an EVM JSON-RPC endpoint")
    dep.add_argument("--rpc-url", required=True)
    dep.add_argument("--key-env", default="GPUMARKET_DEPLOYER_KEY", help="variable holding the key")
    dep.add_argument("--deployment", type=Path, default=None, help="deployment file to write")
    dep.set_defaults(func=cmd_deploy)

    dm = sub.add_parser("demo", help="the main job: a full market round on an embedded devnet")
    dm.add_argument("--providers", type=int, default=3, help="providers (1-6)")
    dm.add_argument("--labs", type=int, default=2, help="labs (1-3)")
    dm.add_argument("--jobs", type=int, default=2, help="bids, each a leased job, per lab")
    dm.add_argument(
        "--keep", action="store_true", help="keep the round's folder (configs, keystores, logs)"
    )
    dm.set_defaults(func=cmd_demo)

    rl = sub.add_parser("relay", help="run a relay: order book, gossip and matcher over HTTP")
    rl.add_argument("--deployment", type=Path, default=None, help="deployment file to use")
    rl.add_argument("--host", default="127.0.0.1")
    rl.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    source = rl.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", type=Path, help="SQLite file for the relay's state")
    source.add_argument(
        "--store",
        metavar="URL",
        help="the relay's state in PostgreSQL instead: postgresql://USER@HOST:PORT/DATABASE",
    )
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
    cl = rl.add_argument_group("cluster", "one of several instances serving one book (--store)")
    cl.add_argument("--cluster", metavar="NAME", default=None, help="the cluster's name")
    cl.add_argument("--nats", metavar="URL", default=None, help="nats://HOST:PORT, JetStream on")
    cl.add_argument("--instance", metavar="ID", default=None, help="this instance's unique id")
    cl.add_argument(
        "--lease-ttl",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="the matcher lease's lifetime without renewal (failover after this long)",
    )
    rl.set_defaults(func=cmd_relay)

    pv = sub.add_parser("provider", help="run the provider agent: offers, jobs, receipts, claims")
    pv.add_argument("--config", type=Path, default=None, help="the agent's TOML file")
    pv.add_argument(
        "--check",
        action="store_true",
        help="check config, keystore, chain, balance, allowance and stake; send nothing",
    )
    pv.set_defaults(func=cmd_provider)
    commands.add_init_parser(pv.add_subparsers(dest="provider_command"), "provider")

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
