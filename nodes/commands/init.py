"""``gpumarket provider init`` and ``gpumarket lab init``: a commented config for the devnet.

    gpumarket provider init [--keystore FILE] [--out provider.toml] [--relay URL] [--model M]
    gpumarket lab init [--keystore FILE] [--out lab.toml] [--relay URL] [--model M]

The file names the running chain as the deployment file says it (``gpumarket devnet up`` writes
it: ``$GPUMARKET_DEPLOYMENT`` or ``.gpumarket/deployment.json``, or ``--deployment``): its RPC URL
and the file itself, by absolute path. The keystore is the one given, or a new one created next
to the config (as ``gpumarket keys new`` does). Every key carries a comment with its meaning and
unit; the file loads with the daemon's own loader unchanged. An existing file is never
overwritten.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eth_account import Account

from market.chain.client import MarketClient
from market.chain.deploy import Deployment, default_deployment_path
from market.chain.funds import token_units
from nodes.commands.keys import PASSWORD_ENV, read_password
from nodes.daemon.keystore import keystore_address, write_keystore
from nodes.errors import ConfigError

Role = Literal["provider", "lab"]
DEFAULT_RELAY = "http://127.0.0.1:7000"
DEFAULT_MODEL = "H100-80GB"
PROVIDER_PRICE = "1.80"
"""Tokens per GPU-hour a new provider asks (500 base units per GPU-second of a 6-decimal token)."""
LAB_MAX_PRICE = "2.88"
"""Tokens per GPU-hour a new lab's job pays at most (800 base units per GPU-second, 6 decimals)."""


@dataclass(frozen=True, slots=True)
class InitSettings:
    """What a template is filled with."""

    deployment_file: Path
    rpc_url: str
    chain_id: int
    keystore: str
    password_env: str
    relay: str
    model: str
    stake_tokens: int
    token_decimals: int


def _s(text: str | Path) -> str:
    return json.dumps(str(text))  # a JSON string is a TOML basic string


def _header(role: Role, s: InitSettings) -> str:
    return (
        f"# gpumarket {role}: written by `gpumarket {role} init` for the chain {s.chain_id} at "
        f"{s.rpc_url}.\n"
        f"# Check it with `gpumarket {role} --config FILE --check`; every key is described in "
        f"nodes/{role}/config.py.\n"
        "# Relative paths are relative to this file's folder.\n\n"
        f'state = "{role}-state/state.sqlite"  # the daemon\'s SQLite state (made at first start)\n'
        "\n[key]\n"
        f"keystore = {_s(s.keystore)}  # the encrypted key it signs with (gpumarket keys new)\n"
        f"password_env = {_s(s.password_env)}  # environment variable holding its password\n"
        "\n[chain]\n"
        f"deployment = {_s(s.deployment_file)}  # contract addresses (gpumarket devnet up)\n"
        f"rpc_url = {_s(s.rpc_url)}  # the chain's JSON-RPC endpoint\n"
        "confirmations = 0  # blocks an event must be under before acting on it (0 on a devnet)\n"
        "\n[relays]\n"
        f"urls = [{_s(s.relay)}]  # relays to send orders to (gpumarket relay ... --port 7000)\n"
    )


def provider_template(s: InitSettings) -> str:
    return _header("provider", s) + (
        "\n[inventory]\n"
        "detect = false  # true: probe the GPUs with NVML (pip install gpumarket[gpu])\n"
        "[[inventory.gpus]]\n"
        f"model = {_s(s.model)}  # the market's model name (docs/guides.md lists them)\n"
        "count = 1  # GPUs of this model to offer\n"
        "memory_gib = 80  # memory per GPU, GiB\n"
        "\n[pricing]\n"
        'policy = "fixed"  # one price whatever the demand ("utilisation": floor to ceiling)\n'
        f'params = {{ price_per_gpu_hour = "{PROVIDER_PRICE}" }}  # tokens per GPU-hour\n'
        "\n[metering]\n"
        "interval_s = 10  # seconds of work per signed receipt (and per payment)\n"
        "\n[jobs]\n"
        "max_wall_time_s = 86400  # the longest a job may run, seconds\n"
        'sandbox = "bwrap"  # run every job under bubblewrap ("none": unconfined)\n'
        "\n[agent]\n"
        'host = "127.0.0.1"  # where labs reach the agent\n'
        "port = 7100  # its port (0: a free one)\n"
        f'stake = "{s.stake_tokens}"  # tokens staked at registration; at least the '
        "market's minimum\n"
        "offer_ttl_s = 60  # seconds an offer lives before it is signed anew\n"
        "min_duration_s = 10  # the shortest lease offered, seconds\n"
        "max_duration_s = 3600  # the longest lease offered, seconds\n"
        "claim_interval_s = 5  # seconds between batched claims of vouchers\n"
        'billing = ["rental"]  # "rental" (reserved time) and/or "metered" (busy GPU time)\n'
    )


def lab_template(s: InitSettings) -> str:
    return _header("lab", s) + (
        "\n[lab]\n"
        "poll_interval_s = 1.0  # seconds between looks at the chain and the providers\n"
        "bid_ttl_s = 3600  # a bid's validity, chain seconds\n"
        "\n[challenge]  # the timed hardware challenge at each lease's start\n"
        "# A devnet's providers declare GPUs they run on a CPU: hold every model to the\n"
        "# cpu-test class here. On a real market, delete this table.\n"
        "n = 128  # size of the challenge product\n"
        "rows = 8  # rows of it opened and checked\n"
        'default_class = "cpu-test"  # the GPU class of any model\n'
        f'classes = {{ {_s(s.model)} = "cpu-test" }}  # GPU class by model\n'
        "allowance_s = 3.0  # seconds added to the challenge's deadline\n"
        "\n[[jobs]]  # one bid, one leased job; repeat the table for more\n"
        f"model = {_s(s.model)}  # the GPU model to rent (docs/guides.md lists them)\n"
        "gpus = 1  # GPUs at once\n"
        f'max_price_per_gpu_hour = "{LAB_MAX_PRICE}"  # tokens per GPU-hour at most\n'
        "duration = 60  # seconds of lease\n"
        'billing = "rental"  # pay for the time reserved ("metered": busy GPU time only)\n'
        'kind = "command"  # a command, checked by running it again\n'
        'argv = ["python3", "-c", "print(\'hello from the market\')"]  # what it runs\n'
    )


def settings(args: argparse.Namespace, role: Role, out: Path) -> InitSettings:
    """Read the devnet's deployment and chain; the keystore given, or a new one made."""
    path = (args.deployment or default_deployment_path()).resolve()
    deployment = Deployment.load(path)
    client = MarketClient.connect(deployment)
    min_stake = client.min_stake()
    decimals, _ = token_units(client)
    if args.keystore is not None:
        keystore_address(args.keystore)  # it is one: a typo fails here, not at start
        keystore = str(args.keystore.resolve())
    else:
        new = out.parent / f"{role}-key.json"
        password = read_password(args.password_env, confirm=True)
        address = write_keystore(new, bytes(Account.create().key), password)
        print(f"new key  {address}\nkeystore {new}")
        keystore = new.name
    stake_tokens = max(1000, -(-min_stake // 10**decimals))
    return InitSettings(
        deployment_file=path,
        rpc_url=deployment.rpc_url,
        chain_id=deployment.chain_id,
        keystore=keystore,
        password_env=args.password_env,
        relay=args.relay,
        model=args.model,
        stake_tokens=stake_tokens,
        token_decimals=decimals,
    )


def cmd_init(args: argparse.Namespace) -> int:
    role: Role = args.init_role
    out: Path = args.out or Path(f"{role}.toml")
    if out.exists():
        raise ConfigError(str(out), "", "exists already: init never overwrites; choose --out")
    text = (provider_template if role == "provider" else lab_template)(settings(args, role, out))
    with out.open("x", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {out}: check it with `gpumarket {role} --config {out} --check`")
    return 0


def add_init_parser(subparsers: Any, role: Role) -> argparse.ArgumentParser:
    """Register ``gpumarket <role> init`` on the role's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "init", help=f"write a commented {role} config for the running devnet"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"file to write ({role}.toml)")
    parser.add_argument(
        "--keystore", type=Path, default=None,
        help=f"the {role}'s keystore (default: a new {role}-key.json next to the config)",
    )  # fmt: skip
    parser.add_argument(
        "--password-env", default=PASSWORD_ENV, metavar="VAR",
        help=f"variable holding the keystore's password (default {PASSWORD_ENV})",
    )  # fmt: skip
    parser.add_argument(
        "--deployment", type=Path, default=None, metavar="FILE",
        help="deployment file (default: $GPUMARKET_DEPLOYMENT or .gpumarket/deployment.json)",
    )  # fmt: skip
    parser.add_argument("--relay", default=DEFAULT_RELAY, help=f"relay URL ({DEFAULT_RELAY})")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"GPU model ({DEFAULT_MODEL})")
    parser.set_defaults(func=cmd_init, init_role=role)
    return parser


__all__ = ["InitSettings", "add_init_parser", "cmd_init", "lab_template", "provider_template"]
