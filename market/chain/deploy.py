"""Deploy the gpumarket contract set to any EVM JSON-RPC endpoint and record where it went.

``deploy(w3, deployer)`` deploys every contract and returns a :class:`Deployment` (what a deployment
file holds: chain id, RPC URL, addresses, deploy block) together with typed contract handles.
``Deployment.save`` / ``Deployment.load`` write and read the file the other commands use.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexAddress, HexStr
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.types import TxReceipt

from market.artifacts import load_artifact
from market.chain.tx import Transactor
from market.errors import DeploymentError, WrongChain

ZERO_ADDRESS = ChecksumAddress(HexAddress(HexStr("0x" + "00" * 20)))
DEFAULT_DEPLOYMENT_FILE = Path(".gpumarket") / "deployment.json"
DEPLOYMENT_FILE_ENV = "GPUMARKET_DEPLOYMENT"
FORMAT_VERSION = 1


def default_deployment_path() -> Path:
    """``$GPUMARKET_DEPLOYMENT`` or ``.gpumarket/deployment.json`` in the working directory."""
    return Path(os.environ.get(DEPLOYMENT_FILE_ENV, DEFAULT_DEPLOYMENT_FILE))


@dataclass(frozen=True)
class Deployment:
    """Where a contract set lives: enough for any client to connect to it."""

    chain_id: int
    rpc_url: str
    deploy_block: int
    contracts: dict[str, ChecksumAddress] = field(default_factory=dict)

    def address(self, name: str) -> ChecksumAddress:
        try:
            return self.contracts[name]
        except KeyError:
            raise DeploymentError(f"deployment has no contract {name!r}") from None

    def to_json(self) -> str:
        body = {
            "version": FORMAT_VERSION,
            "chainId": self.chain_id,
            "rpcUrl": self.rpc_url,
            "deployBlock": self.deploy_block,
            "contracts": dict(sorted(self.contracts.items())),
        }
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        try:
            raw = json.loads(text)
            if raw.get("version") != FORMAT_VERSION:
                raise DeploymentError(f"unsupported deployment file version {raw.get('version')!r}")
            contracts = {str(k): Web3.to_checksum_address(v) for k, v in raw["contracts"].items()}
            return cls(int(raw["chainId"]), str(raw["rpcUrl"]), int(raw["deployBlock"]), contracts)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DeploymentError(f"malformed deployment file: {exc}") from exc

    def save(self, path: Path) -> None:
        """Write atomically: readers never see half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | None = None) -> Deployment:
        path = path or default_deployment_path()
        if not path.is_file():
            raise DeploymentError(
                f"no deployment file at {path}: start a devnet with `gpumarket devnet up` "
                "or deploy with `gpumarket deploy`"
            )
        return cls.from_json(path.read_text(encoding="utf-8"))

    def check_chain(self, w3: Web3) -> None:
        """Raise WrongChain unless ``w3`` serves this deployment's chain."""
        actual = w3.eth.chain_id
        if actual != self.chain_id:
            raise WrongChain(self.chain_id, actual)


@dataclass(frozen=True)
class MarketParams:
    """Deployment-time parameters of the Market; none can be changed afterwards.

    ``challenge_window`` is how long a provider's posted receipt waits for the lab's dispute
    before it is paid, ``ruling_window`` how long a dispute waits for its arbiter's ruling.
    ``stake_ratio_bps`` is the stake each lease locks, in basis points of its escrow, and so the
    penalty of a proof of cheating: with audits that catch a cheat with probability ``p`` it
    deters when ``ratio >= (1 - p) / p`` (the default, one escrow, needs ``p >= 50%``;
    docs/decisions/0013-stake-and-disputes.md). ``dispute_bond_bps`` is a dispute's bond, in
    basis points of the disputed amount.
    """

    min_stake: int = 100 * 10**6
    unbonding_delay: int = 7 * 24 * 3600
    claim_window: int = 24 * 3600
    fee_bps: int = 0
    treasury: ChecksumAddress = ZERO_ADDRESS
    challenge_window: int = 24 * 3600
    ruling_window: int = 3 * 24 * 3600
    stake_ratio_bps: int = 10_000
    dispute_bond_bps: int = 1_000

    def as_tuple(self, token: ChecksumAddress) -> tuple[object, ...]:
        """The constructor's ``Params`` struct, in its field order."""
        return (
            token,
            self.min_stake,
            self.unbonding_delay,
            self.claim_window,
            self.challenge_window,
            self.ruling_window,
            self.stake_ratio_bps,
            self.dispute_bond_bps,
            self.fee_bps,
            self.treasury,
        )


@dataclass(frozen=True)
class Contracts:
    """Typed handles on a deployed contract set."""

    deployment: Deployment
    token: Contract
    market: Contract

    @classmethod
    def at(cls, w3: Web3, deployment: Deployment) -> Contracts:
        """Handles on the contracts a deployment file names; checks the chain id first."""
        deployment.check_chain(w3)

        def handle(name: str, artifact: str) -> Contract:
            return w3.eth.contract(
                address=deployment.address(name), abi=load_artifact(artifact).abi
            )

        return cls(
            deployment=deployment,
            token=handle("Token", "TestUSD"),
            market=handle("Market", "Market"),
        )


def deploy(
    w3: Web3,
    deployer: LocalAccount,
    *,
    rpc_url: str | None = None,
    token: ChecksumAddress | None = None,
    token_decimals: int = 6,
    params: MarketParams | None = None,
) -> Contracts:
    """Deploy the whole contract set from ``deployer`` and return typed handles.

    Works against any EVM JSON-RPC endpoint given a funded key. Without ``token`` a ``TestUSD``
    (devnet only: anyone may mint) is deployed as the settlement token; pass a real ERC-20's address
    elsewhere. The Market creates its MarketExtension in its constructor; providers register and
    stake in the Market itself.
    """
    params = params or MarketParams(min_stake=100 * 10**token_decimals)
    tx = Transactor(w3, deployer)
    first_block = w3.eth.block_number + 1
    addresses: dict[str, ChecksumAddress] = {}
    if token is None:
        test_usd = load_artifact("TestUSD")
        token = _address(tx.deploy(test_usd.abi, test_usd.bytecode, token_decimals))
        addresses["TestUSD"] = token
    addresses["Token"] = Web3.to_checksum_address(token)
    market = load_artifact("Market")
    market_address = _address(
        tx.deploy(
            market.abi,
            market.bytecode,
            params.as_tuple(token),
        )
    )
    addresses["Market"] = market_address
    deployment = Deployment(
        chain_id=tx.chain_id,
        rpc_url=rpc_url or str(getattr(w3.provider, "endpoint_uri", "")),
        deploy_block=first_block,
        contracts=addresses,
    )
    return Contracts.at(w3, deployment)


DEPLOY_HTTP_TIMEOUT_S = 30.0
"""Per-request timeout of :func:`deploy_over_http` (a deployment's transactions are large)."""


def deploy_over_http(
    rpc_url: str,
    deployer_key: str | bytes,
    *,
    timeout_s: float = DEPLOY_HTTP_TIMEOUT_S,
    params: MarketParams | None = None,
) -> Contracts:
    """Deploy the contract set to the JSON-RPC endpoint at ``rpc_url`` from ``deployer_key``'s
    account (``gpumarket deploy``); the deployment names ``rpc_url``."""
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
    return deploy(w3, Account.from_key(deployer_key), rpc_url=rpc_url, params=params)


def _address(receipt: TxReceipt) -> ChecksumAddress:
    value = receipt.get("contractAddress")
    if not isinstance(value, str):
        raise DeploymentError(f"deployment receipt carries no contract address: {value!r}")
    return Web3.to_checksum_address(value)


__all__ = [
    "DEFAULT_DEPLOYMENT_FILE",
    "DEPLOY_HTTP_TIMEOUT_S",
    "DEPLOYMENT_FILE_ENV",
    "Contracts",
    "Deployment",
    "MarketParams",
    "default_deployment_path",
    "deploy",
    "deploy_over_http",
]
