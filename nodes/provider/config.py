"""The provider agent's TOML config, validated into frozen dataclasses.

    config = load_config(Path("provider.toml"))
    key = decrypt_key(config.key)                    # bytes; the password comes from the env
    deployment = load_deployment(config.chain)

A complete file (relative paths are relative to the file's folder)::

    state = "provider.sqlite"              # default: state.sqlite

    [key]
    keystore = "provider-key.json"         # an eth-account keystore (Account.encrypt)
    password_env = "GPUMARKET_KEY_PASSWORD"

    [chain]                                # at least one of the two
    deployment = "deployment.json"         # default: $GPUMARKET_DEPLOYMENT or .gpumarket/...
    rpc_url = "http://127.0.0.1:8545"      # overrides the deployment file's
    confirmations = 0                      # act on events this deep: more where chains reorg

    [relays]
    urls = ["http://127.0.0.1:7000"]

    [inventory]
    detect = true                          # NVML when present, else the GPUs declared here
    bandwidth_gbps = 100                   # signed in every offer: interconnect per GPU
    attributes = { region = "eu-west", capabilities = ["ecc"] }   # names: VOCABULARY below
    [[inventory.gpus]]
    model = "H100-80GB"
    count = 2
    memory_gib = 80
    devices = [0, 1]                       # CUDA device indices, one per GPU
    bandwidth_gbps = 400                   # this group's, over the inventory's
    attributes = { interconnect = "nvlink", form_factor = "sxm" }  # added to the inventory's

    [pricing]
    policy = "utilisation"                 # "fixed", "utilisation" or "package.module:Class"
    params = { floor = 2, ceiling = 6 }

    [metering]
    interval_s = 60

    [jobs]
    max_wall_time_s = 86400
    max_memory_gib = 64                    # omit for no memory limit (address space, cgroup)
    sandbox = "bwrap"                      # every job under bubblewrap (default); "none" runs
                                           # jobs unconfined, with a warning at every start
    allow_network = false                  # serve specs that sign network = true
    max_processes = 1024                   # per job (pids cgroup)
    max_cpu_cores = 8                      # per job (cpu cgroup quota); omit for no limit
    max_disk_gib = 100                     # the job's folder; omit for no cap

    [agent]                                # the daemon (gpumarket provider); all optional
    host = "127.0.0.1"                     # where labs reach it: jobs, receipts, vouchers
    port = 7100                            # 0: a free port
    public_url = "https://gpu.example:7100"  # registered on-chain; default http://host:port
    stake = 200                            # tokens to stake at registration (whole units x 1e6);
                                           # each lease locks escrow x the market's stake ratio
                                           # of it, so offers sell only the GPUs it can back
    offer_ttl_s = 60                       # offers live this long; re-signed as GPUs free up
    min_duration_s = 10
    max_duration_s = 86400                 # the longest lease offered (sizes each GPU's lock)
    claim_interval_s = 5                   # batch claims of the best vouchers this often
    max_unpaid_periods = 3                 # stop work when this many receipts are unpaid
    final_voucher_wait_s = 30              # after the end, then the optimistic claim
    billing = ["rental"]                   # modes offered: "rental" (reserved time, default)
                                           # and/or "metered" (busy GPU time)
    max_lab_disputes_lost = 2              # give up leases of labs that lost more disputes
                                           # (omit to serve every lab)

Attributes are signed in the offers' ``features`` and checked by the contract against the bids'
requirements, so only names of :data:`market.matching.VOCABULARY` are accepted (interconnect,
network, region, tier, form_factor, capabilities, each with its listed values); a GPU group's
attributes replace the inventory's of the same name. Detected (NVML) groups take the inventory's
terms and those of a declared group of the same model.

Every problem is a :class:`~nodes.errors.ConfigError` naming the field (``jobs.max_wall_time_s``,
``inventory.gpus[1].devices``); keys the agent does not know are errors too, so a typo is not
silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from eth_account import Account

from market.chain.deploy import Deployment, default_deployment_path
from market.protocol.types import UINT32_MAX, Billing
from nodes.errors import ConfigError, KeystoreError
from nodes.provider.config_fields import Table


@dataclass(frozen=True, slots=True)
class KeyConfig:
    keystore: Path
    password_env: str


@dataclass(frozen=True, slots=True)
class ChainConfig:
    deployment: Path | None
    rpc_url: str | None
    confirmations: int = 0
    """Blocks an event's block must be under before the daemon acts on it (see [chain])."""


Attributes = Mapping[str, tuple[str, ...]]
"""Signed attributes by name, each with its values (``market.matching.encode_attributes``)."""
_NONE: Attributes = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class GpuDeclaration:
    model: str
    count: int
    memory_gib: int
    devices: tuple[int, ...]
    bandwidth_gbps: int | None = None
    """This group's bandwidth per GPU; None: the inventory's."""
    attributes: Attributes = field(default_factory=lambda: _NONE)
    """This group's attributes, over the inventory's."""


@dataclass(frozen=True, slots=True)
class InventoryConfig:
    detect: bool
    gpus: tuple[GpuDeclaration, ...]
    bandwidth_gbps: int = 0
    """Every group's bandwidth per GPU (Gbps) unless the group names its own."""
    attributes: Attributes = field(default_factory=lambda: _NONE)
    """Attributes every group's offers sign."""


@dataclass(frozen=True, slots=True)
class PricingConfig:
    policy: str
    params: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class MeteringConfig:
    interval_s: int


SandboxKind = Literal["bwrap", "none"]
SANDBOX_KINDS: tuple[SandboxKind, ...] = ("bwrap", "none")
DEFAULT_MAX_PROCESSES = 1024


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What every job may use, and how it is confined (``[jobs]``)."""

    wall_time_s: int
    memory_bytes: int | None
    sandbox: SandboxKind = "bwrap"
    allow_network: bool = False
    """Serve job specs that ask for the network (``network: true``); others are refused."""
    max_processes: int | None = DEFAULT_MAX_PROCESSES
    cpu_cores: float | None = None
    disk_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class AgentConfig:
    host: str = "127.0.0.1"
    port: int = 0
    public_url: str | None = None
    stake_units: int = 0  # whole tokens x 10**6 (0: the market's minimum stake)
    offer_ttl_s: int = 60
    min_duration_s: int = 10
    max_duration_s: int = 86_400
    claim_interval_s: int = 5
    max_unpaid_periods: int = 3
    final_voucher_wait_s: int = 30
    billing: tuple[Billing, ...] = (Billing.RENTAL,)
    """The billing modes its offers accept (``Offer.billing_modes``): a rental bills the GPU time
    reserved until the lease ends or the lab terminates it, metered the busy GPU time only."""
    max_lab_disputes_lost: int | None = None
    """Refuse labs that lost more disputes than this (None: serve every lab)."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    path: Path
    state: Path
    key: KeyConfig
    chain: ChainConfig
    relays: tuple[str, ...]
    inventory: InventoryConfig
    pricing: PricingConfig
    metering: MeteringConfig
    jobs: JobLimits
    agent: AgentConfig = AgentConfig()


_SECTIONS = (
    "state", "key", "chain", "relays", "inventory", "pricing", "metering", "jobs", "agent",
)  # fmt: skip


def load_config(path: Path) -> ProviderConfig:
    """Read and validate the config at ``path``; raises ConfigError naming the bad field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", str(exc)) from exc
    root = Table(str(path), "", raw, base=path.parent)
    root.expect(_SECTIONS)
    return ProviderConfig(
        path=path,
        state=root.path("state", default="state.sqlite"),
        key=_key(root.table("key")),
        chain=chain_config(root.table("chain", required=False)),
        relays=_relays(root.table("relays", required=False)),
        inventory=_inventory(root.table("inventory")),
        pricing=_pricing(root.table("pricing")),
        metering=_metering(root.table("metering", required=False)),
        jobs=_jobs(root.table("jobs", required=False)),
        agent=_agent(root.table("agent", required=False)),
    )


def _key(t: Table) -> KeyConfig:
    t.expect(("keystore", "password_env"))
    return KeyConfig(t.path("keystore"), t.text("password_env", "GPUMARKET_KEY_PASSWORD"))


def chain_config(t: Table) -> ChainConfig:
    """The ``[chain]`` table, as the provider and the lab read it."""
    t.expect(("deployment", "rpc_url", "confirmations"))
    deployment = t.path("deployment", default=None)
    rpc_url = t.url("rpc_url", default=None)
    confirmations = t.integer("confirmations", 0, minimum=0)
    if deployment is None and rpc_url is None and not t.present:
        return ChainConfig(None, None)
    if deployment is None and rpc_url is None and t.present and confirmations == 0:
        raise t.error("", "give deployment, rpc_url or both")
    return ChainConfig(deployment, rpc_url, confirmations)


def _relays(t: Table) -> tuple[str, ...]:
    t.expect(("urls",))
    return t.url_list("urls")


def _inventory(t: Table) -> InventoryConfig:
    t.expect(("detect", "gpus", "bandwidth_gbps", "attributes"))
    detect = t.flag("detect", False)
    gpus = tuple(_gpu(g) for g in t.tables("gpus"))
    if not gpus and not detect:
        raise t.error("gpus", "declare at least one GPU group, or set detect = true")
    seen: set[int] = set()
    for i, g in enumerate(gpus):
        if seen & set(g.devices):
            raise t.error(f"gpus[{i}].devices", f"{sorted(seen & set(g.devices))} also declared")
        seen |= set(g.devices)
    bandwidth = _bandwidth(t, 0)
    return InventoryConfig(detect, gpus, bandwidth, MappingProxyType(t.attributes("attributes")))


def _gpu(t: Table) -> GpuDeclaration:
    t.expect(("model", "count", "memory_gib", "devices", "bandwidth_gbps", "attributes"))
    model = t.gpu_model("model")
    count = t.integer("count", minimum=1)
    memory = t.integer("memory_gib", minimum=1)
    devices = t.int_list("devices", default=tuple(range(count)))
    if len(devices) != count:
        raise t.error("devices", f"{len(devices)} device indices for count = {count}")
    if len(set(devices)) != len(devices):
        raise t.error("devices", "a device index repeats")
    bandwidth = _bandwidth(t, 0) if "bandwidth_gbps" in t.raw else None
    attributes = MappingProxyType(t.attributes("attributes"))
    return GpuDeclaration(model, count, memory, devices, bandwidth, attributes)


def _bandwidth(t: Table, default: int) -> int:
    """``bandwidth_gbps``: a uint32, as offers sign it."""
    value = t.integer("bandwidth_gbps", default, minimum=0)
    if value > UINT32_MAX:
        raise t.error("bandwidth_gbps", f"must be at most {UINT32_MAX}, got {value}")
    return value


def _pricing(t: Table) -> PricingConfig:
    t.expect(("policy", "params"))
    policy = t.text("policy")
    params = t.mapping("params")
    return PricingConfig(policy, MappingProxyType(dict(params)))


def _metering(t: Table) -> MeteringConfig:
    t.expect(("interval_s",))
    return MeteringConfig(t.integer("interval_s", 60))


def _jobs(t: Table) -> JobLimits:
    t.expect(
        ("max_wall_time_s", "max_memory_gib", "sandbox", "allow_network", "max_processes",
         "max_cpu_cores", "max_disk_gib")
    )  # fmt: skip
    wall = t.integer("max_wall_time_s", 86_400, minimum=1)
    gib = t.number("max_memory_gib", default=None)
    sandbox: SandboxKind = (
        "none" if t.choice("sandbox", SANDBOX_KINDS, "bwrap") == "none" else "bwrap"
    )
    disk = t.number("max_disk_gib", default=None)
    return JobLimits(
        wall,
        None if gib is None else int(gib * 2**30),
        sandbox=sandbox,
        allow_network=t.flag("allow_network", False),
        max_processes=t.integer("max_processes", DEFAULT_MAX_PROCESSES, minimum=1),
        cpu_cores=t.number("max_cpu_cores", default=None),
        disk_bytes=None if disk is None else int(disk * 2**30),
    )


def _agent(t: Table) -> AgentConfig:
    d = AgentConfig()
    t.expect(
        ("host", "port", "public_url", "stake", "offer_ttl_s", "min_duration_s",
         "max_duration_s", "claim_interval_s", "max_unpaid_periods", "final_voucher_wait_s",
         "billing", "max_lab_disputes_lost")
    )  # fmt: skip
    port = t.integer("port", d.port, minimum=0)
    if port > 65535:
        raise t.error("port", f"{port} is not a TCP port")
    min_duration = t.integer("min_duration_s", d.min_duration_s)
    max_duration = t.integer("max_duration_s", d.max_duration_s)
    if max_duration < min_duration:
        raise t.error("max_duration_s", f"below min_duration_s ({min_duration})")
    stake = t.number("stake", default=None)
    return AgentConfig(
        host=t.text("host", d.host),
        port=port,
        public_url=t.url("public_url", default=None),
        stake_units=0 if stake is None else int(stake * 10**6),
        offer_ttl_s=t.integer("offer_ttl_s", d.offer_ttl_s),
        min_duration_s=min_duration,
        max_duration_s=max_duration,
        claim_interval_s=t.integer("claim_interval_s", d.claim_interval_s),
        max_unpaid_periods=t.integer("max_unpaid_periods", d.max_unpaid_periods),
        final_voucher_wait_s=t.integer("final_voucher_wait_s", d.final_voucher_wait_s, minimum=0),
        billing=billing_config(t, "billing", d.billing),
        max_lab_disputes_lost=(
            t.integer("max_lab_disputes_lost", minimum=0)
            if "max_lab_disputes_lost" in t.raw
            else d.max_lab_disputes_lost
        ),
    )


def billing_names() -> tuple[str, ...]:
    """The billing modes as configs spell them: ``rental``, ``metered``."""
    return tuple(b.name.lower() for b in Billing)


def billing_config(t: Table, field: str, default: tuple[Billing, ...]) -> tuple[Billing, ...]:
    """A list of billing modes by name (``["rental", "metered"]``), in the order given."""
    names = t.choices(field, billing_names(), tuple(b.name.lower() for b in default))
    return tuple(Billing[n.upper()] for n in names)


def decrypt_key(key: KeyConfig, environ: Mapping[str, str] = os.environ) -> bytes:
    """The private key in ``key.keystore``, decrypted with the password in ``key.password_env``."""
    password = environ.get(key.password_env)
    if password is None:
        raise KeystoreError(
            str(key.keystore), f"set the password in the environment variable {key.password_env}"
        )
    try:
        keyfile = json.loads(key.keystore.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeystoreError(str(key.keystore), f"cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeystoreError(str(key.keystore), f"not JSON: {exc}") from exc
    try:
        return bytes(Account.decrypt(keyfile, password))
    except ValueError as exc:
        raise KeystoreError(str(key.keystore), f"cannot decrypt ({exc}); wrong password?") from exc
    except (KeyError, TypeError) as exc:
        raise KeystoreError(str(key.keystore), f"not an eth-account keystore: {exc!r}") from exc


def load_deployment(chain: ChainConfig) -> Deployment:
    """The deployment file named by the config (or the default one), with ``rpc_url`` applied."""
    deployment = Deployment.load(chain.deployment or default_deployment_path())
    if chain.rpc_url is not None:
        deployment = dataclasses.replace(deployment, rpc_url=chain.rpc_url)
    return deployment


__all__ = [
    "AgentConfig",
    "ChainConfig",
    "GpuDeclaration",
    "InventoryConfig",
    "JobLimits",
    "KeyConfig",
    "MeteringConfig",
    "PricingConfig",
    "ProviderConfig",
    "SandboxKind",
    "billing_config",
    "billing_names",
    "chain_config",
    "decrypt_key",
    "load_config",
    "load_deployment",
]
