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

    [pricing]                              # prices in tokens per GPU-hour
    policy = "utilisation"                 # "fixed", "utilisation" or "package.module:Class"
    params = { floor_per_gpu_hour = "1.50", ceiling_per_gpu_hour = "4.00" }
    # fixed: params = { price_per_gpu_hour = "2.50" } and/or
    #        params = { prices_per_gpu_hour = { "H100-80GB" = "2.50" } }  (only these models)
    # module:Class: params go to the class as written; its price() answers base units per
    # GPU-second, the wire's unit (nodes.provider.pricing)

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
    stake = "200"                          # tokens to stake at registration (default: the
                                           # market's minimum); each lease locks escrow x the
                                           # market's stake ratio of it, so offers sell only
                                           # the GPUs it can back
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

Amounts are in tokens and prices in tokens per GPU-hour, as strings for exactness (``"2.50"``);
the agent converts them to base units once it has read the token's decimals from the chain, a
per-hour price rounded down to whole base units per GPU-second (:mod:`market.units`). The keys
they replace (``price_per_gpu_second``, ``prices``, ``floor``, ``ceiling``: base units per
GPU-second) are refused with the new key and the conversion.

Every problem is a :class:`~nodes.errors.ConfigError` naming the field (``jobs.max_wall_time_s``,
``inventory.gpus[1].devices``); keys the agent does not know are errors too, so a typo is not
silently ignored. The tables are msgspec structs (:mod:`nodes.daemon.config`): the key, chain and
relays tables, the state file and the keystore are every daemon's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from market.protocol.types import UINT32_MAX, Billing
from nodes.daemon.amounts import PerGpuHour, Tokens, refuse_retired
from nodes.daemon.config import (
    ChainConfig,
    DaemonConfig,
    HttpListen,
    KeyConfig,
    NonEmpty,
    Table,
    load_deployment,
)
from nodes.daemon.config import load_config as load_daemon_config
from nodes.daemon.keystore import decrypt_key
from nodes.daemon.values import (
    Attributes,
    BillingModes,
    GiBytes,
    GpuModel,
    Invalid,
    Url,
    billing_names,
)

Positive = Annotated[int, Meta(ge=1)]
Bandwidth = Annotated[int, Meta(ge=0, le=UINT32_MAX)]
"""Gbps per GPU, a uint32 as offers sign it."""
PositiveNumber = Annotated[float, Meta(gt=0)]


class GpuDeclaration(Table, frozen=True):
    """``[[inventory.gpus]]``: a group of GPUs of one model."""

    model: GpuModel
    count: Positive
    memory_gib: Positive
    devices: tuple[int, ...] = ()
    """One CUDA device index per GPU; default ``0 .. count-1``."""
    bandwidth_gbps: Bandwidth | None = None
    """This group's bandwidth per GPU; None: the inventory's."""
    attributes: Attributes = msgspec.field(default_factory=Attributes)
    """This group's attributes, over the inventory's."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.devices:
            msgspec.structs.force_setattr(self, "devices", tuple(range(self.count)))
        elif any(type(d) is not int or d < 0 for d in self.devices):
            raise Invalid("must be a list of non-negative integers", "devices", "GpuDeclaration")
        if len(self.devices) != self.count:
            raise Invalid(f"{len(self.devices)} device indices for count = {self.count}",
                          "devices", "GpuDeclaration")  # fmt: skip
        if len(set(self.devices)) != len(self.devices):
            raise Invalid("a device index repeats", "devices", "GpuDeclaration")


class InventoryConfig(Table, frozen=True):
    """``[inventory]``: the GPUs to offer, detected (NVML) or declared."""

    detect: bool = False
    gpus: tuple[GpuDeclaration, ...] = ()
    bandwidth_gbps: Bandwidth = 0
    """Every group's bandwidth per GPU (Gbps) unless the group names its own."""
    attributes: Attributes = msgspec.field(default_factory=Attributes)
    """Attributes every group's offers sign."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gpus and not self.detect:
            raise Invalid("declare at least one GPU group, or set detect = true", "gpus",
                          "InventoryConfig")  # fmt: skip
        seen: set[int] = set()
        for i, g in enumerate(self.gpus):
            if seen & set(g.devices):
                raise Invalid(f"{sorted(seen & set(g.devices))} also declared",
                              f"gpus[{i}].devices", "InventoryConfig")  # fmt: skip
            seen |= set(g.devices)


PRICE_KEYS: dict[str, tuple[str, ...]] = {
    "fixed": ("price_per_gpu_hour", "prices_per_gpu_hour"),
    "utilisation": ("floor_per_gpu_hour", "ceiling_per_gpu_hour", "exponent"),
}
"""The built-in policies' parameters, prices in tokens per GPU-hour."""
RETIRED_PRICE_KEYS = {
    "price_per_gpu_second": "price_per_gpu_hour",
    "prices": "prices_per_gpu_hour",
    "floor": "floor_per_gpu_hour",
    "ceiling": "ceiling_per_gpu_hour",
}


class PricingConfig(Table, frozen=True):
    """``[pricing]``: the policy that prices offers, and its parameters. A built-in policy's
    prices are checked here (tokens per GPU-hour, a retired per-second key refused) and converted
    by :func:`nodes.provider.pricing.load_policy` once the token is known."""

    policy: NonEmpty
    params: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.policy not in PRICE_KEYS:
            return
        for old, new in RETIRED_PRICE_KEYS.items():
            value = self.params.get(old)
            refuse_retired("PricingConfig", f"params.{old}", value, new, price=True)
        for name, value in self.params.items():
            if name not in PRICE_KEYS[self.policy]:
                raise Invalid(f"unknown parameter of {self.policy}; expected one of "
                              f"{list(PRICE_KEYS[self.policy])}", f"params.{name}",
                              "PricingConfig")  # fmt: skip
            for where, price in _prices(name, value):
                try:
                    PerGpuHour.parse(price)
                except Invalid as exc:
                    raise Invalid(exc.reason, f"params.{where}", "PricingConfig") from exc

    def hourly(self, name: str) -> PerGpuHour | None:
        """The built-in policy's parameter ``name`` as a per-GPU-hour price (None: not set)."""
        value = self.params.get(name)
        return None if value is None else PerGpuHour.parse(value)


def _prices(name: str, value: object) -> list[tuple[str, object]]:
    if name == "exponent":
        return []
    if name == "prices_per_gpu_hour":
        if not isinstance(value, dict):
            raise Invalid("must be a table of model = price per GPU-hour",
                          f"params.{name}", "PricingConfig")  # fmt: skip
        return [(f"{name}.{model}", price) for model, price in value.items()]
    return [(name, value)]


class MeteringConfig(Table, frozen=True):
    """``[metering]``: how often a receipt is signed."""

    interval_s: Positive = 60


SandboxKind = Literal["bwrap", "none"]
SANDBOX_KINDS: tuple[SandboxKind, ...] = ("bwrap", "none")
DEFAULT_MAX_PROCESSES = 1024


class JobLimits(Table, frozen=True):
    """``[jobs]``: what every job may use, and how it is confined."""

    wall_time_s: Positive = msgspec.field(name="max_wall_time_s", default=86_400)
    memory_bytes: GiBytes | None = msgspec.field(name="max_memory_gib", default=None)
    sandbox: SandboxKind = "bwrap"
    allow_network: bool = False
    """Serve job specs that ask for the network (``network: true``); others are refused."""
    max_processes: Positive | None = DEFAULT_MAX_PROCESSES
    cpu_cores: PositiveNumber | None = msgspec.field(name="max_cpu_cores", default=None)
    disk_bytes: GiBytes | None = msgspec.field(name="max_disk_gib", default=None)


class AgentConfig(HttpListen, frozen=True):
    """``[agent]``: the daemon itself (all optional): where it listens, then its terms."""

    public_url: Url | None = None
    stake: Tokens | None = None
    """Tokens to stake at registration (None or 0: the market's minimum stake)."""
    offer_ttl_s: Positive = 60
    min_duration_s: Positive = 10
    max_duration_s: Positive = 86_400
    claim_interval_s: Positive = 5
    max_unpaid_periods: Positive = 3
    final_voucher_wait_s: Annotated[int, Meta(ge=0)] = 30
    billing: BillingModes = BillingModes((Billing.RENTAL,))
    """The billing modes its offers accept (``Offer.billing_modes``): a rental bills the GPU time
    reserved until the lease ends or the lab terminates it, metered the busy GPU time only."""
    max_lab_disputes_lost: Annotated[int, Meta(ge=0)] | None = None
    """Refuse labs that lost more disputes than this (None: serve every lab)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_duration_s < self.min_duration_s:
            raise Invalid(f"below min_duration_s ({self.min_duration_s})", "max_duration_s",
                          "AgentConfig")  # fmt: skip


class ProviderConfig(DaemonConfig, frozen=True, kw_only=True):
    """The provider agent's whole config file."""

    inventory: InventoryConfig
    pricing: PricingConfig
    metering: MeteringConfig = msgspec.field(default_factory=MeteringConfig)
    jobs: JobLimits = msgspec.field(default_factory=JobLimits)
    agent: AgentConfig = msgspec.field(default_factory=AgentConfig)


def load_config(path: Path) -> ProviderConfig:
    """Read and validate the config at ``path``; raises ConfigError naming the bad field."""
    return load_daemon_config(path, ProviderConfig)


__all__ = [
    "PRICE_KEYS",
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
    "billing_names",
    "decrypt_key",
    "load_config",
    "load_deployment",
]
