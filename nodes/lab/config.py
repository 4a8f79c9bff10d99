"""The lab client's TOML config, validated into frozen dataclasses.

    config = load_config(Path("lab.toml"))
    key = decrypt_key(config.key)                    # bytes; the password comes from the env
    deployment = load_deployment(config.chain)

A complete file (relative paths are relative to the file's folder)::

    state = "lab.sqlite"                   # default: state.sqlite

    [key]
    keystore = "lab-key.json"              # an eth-account keystore (Account.encrypt)
    password_env = "GPUMARKET_KEY_PASSWORD"
    voucher_keystore = "voucher-key.json"  # optional: a separate key signs the vouchers (the
                                           # bids name it); same password. Default: the lab's
    wallet = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # optional: act for this contract
                                           # wallet, the keystore's key being its owner

    [chain]                                # at least one of the two
    deployment = "deployment.json"
    rpc_url = "http://127.0.0.1:8545"

    [relays]
    urls = ["http://127.0.0.1:7000"]       # at least one: bids go there

    [lab]
    poll_interval_s = 1.0                  # how often it asks providers and the chain
    host = "127.0.0.1"                     # the /metrics endpoint
    port = 0                               # 0: a free port
    allowance = "5000"                     # tokens to approve the market; default: the
                                           # bids' escrow
    bid_ttl_s = 3600                       # a bid's validity in chain seconds
    audit_samples = 44                     # per period: matmul products checked (Freivalds),
                                           # training segments re-executed

    [challenge]                            # the timed hardware challenge (all optional)
    enabled = true                         # at each lease's start, then at random times
    n = 4096                               # size of the product (at most 16384)
    rows = 16                              # rows of the committed product opened and checked
    mean_interval_s = 600.0                # mean of the exponential wait between challenges
    allowance_s = 0.5                      # added to the deadline, with the measured round trip
                                           # and host work (deriving matrices, hashing rows)
    classes = { "X1-80GB" = "H100" }       # GPU class of a model; default: the model's prefix
                                           # (H100-80GB -> H100) when it is a known class
    default_class = "cpu-test"             # the class of any other model (default: none, and
                                           # such leases are not challenged)

    [[jobs]]
    model = "H100-80GB"
    gpus = 1
    max_price_per_gpu_hour = "10.80"       # tokens per GPU-hour, the most the bid pays
    duration = 600
    billing = "rental"                     # "rental" (default): pay for the GPU time reserved
                                           # until the end or the lab's termination; "metered":
                                           # pay for busy GPU time only
    min_memory_gib = 80                    # what an offer must have: signed in the bid,
    min_bandwidth_gbps = 400               # checked by the contract against every offer
    accept = { region = ["eu-west", "uk"], interconnect = "nvlink" }  # one of these each
    require = { capabilities = ["ecc"] }   # every one of these
    all_or_none = true                     # all GPUs at once (one transaction), or none
    network = false                        # true: the job may reach the network (signed in its
                                           # spec; only providers that allow it can fill the bid)
    kind = "matmul"                        # n, seed, rounds
    n = 128
    seed = 7
    rounds = 16

    [[jobs]]
    model = "H100-80GB"
    gpus = 1
    max_price_per_gpu_hour = "10.80"
    duration = 600
    kind = "train"                         # seed, segments, steps, width: a training run
    seed = 7                               # checkpointed per segment, segments re-executed
    segments = 100
    steps = 200
    width = 32

    [[jobs]]
    model = "H100-80GB"
    gpus = 1
    max_price_per_gpu_hour = "10.80"
    duration = 60
    kind = "command"
    argv = ["python", "-c", "print('hello')"]

Prices are in tokens per GPU-hour and amounts in tokens, as strings for exactness; the lab
converts them to base units once it has read the token's decimals from the chain, a price
rounded down to whole base units per GPU-second (:mod:`market.units`), so a bid never signs more
than written. The retired keys ``max_price_per_gpu_second`` and ``fund`` (base units) are refused
with the new key and the conversion.

A job's requirements (all optional) become signed fields of its bid (``Lab.bid(...,
requirements=...)``); attribute names and values are those of :data:`market.matching.VOCABULARY`
(an unknown one is refused), as the providers' offers sign them.

With ``[key] wallet`` the lab is that contract wallet (a multisig, a smart account: ERC-1271
``isValidSignature`` accepting the owner key's signatures, ERC-4337 ``SimpleAccount``'s
``execute(address,uint256,bytes)`` making calls for it): bids name ``lab = wallet`` and are signed
by the keystore's key, every transaction (the allowance, terminations, proofs, disputes, closes,
withdrawals) is that key's call to the wallet's ``execute``, so escrow comes from the wallet and
refunds go back to it (:mod:`market.chain.wallet`). Vouchers are plain ECDSA by the voucher
keystore's key, else the owner key, which the bids name as their ``voucher_signer``. The wallet
approves the market rather than signing a permit (a contract cannot sign EIP-2612 permits).

Every lease ends when its job is done: the lab terminates it once the output is verified (or the
job failed or was stopped), so a rental stops costing at once.

Every problem is a :class:`~nodes.errors.ConfigError` naming the field (``jobs[1].argv``);
unknown keys are errors too. The state file and the key, chain and relays tables are every
daemon's (:mod:`nodes.daemon.config`), read the same way; each table is a msgspec struct.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import msgspec
from eth_typing import ChecksumAddress
from msgspec import Meta

from market.matching import NO_REQUIREMENTS, Constraint, Requirements
from market.protocol.types import UINT32_MAX, Billing
from market.receipts import DEFAULT_SAMPLES
from market.receipts.challenge import GPU_CLASSES
from market.units import Token
from nodes.daemon.amounts import PerGpuHour, Tokens, refuse_retired
from nodes.daemon.config import (
    DaemonConfig,
    HttpListen,
    KeyConfig,
    NonEmpty,
    Table,
    load_deployment,
)
from nodes.daemon.config import load_config as load_daemon_config
from nodes.daemon.keystore import decrypt_key
from nodes.daemon.values import Address, Attributes, GpuModel, Invalid
from nodes.jobs.spec import (
    MAX_ARG_LEN,
    MAX_ARGS,
    MAX_N,
    MAX_ROUNDS,
    MAX_SEGMENTS,
    MAX_STEPS,
    MAX_WIDTH,
    CommandParams,
    MatmulParams,
    Params,
    TrainParams,
)
from nodes.wire import MAX_CHALLENGE_N, MAX_CHALLENGE_ROWS

JobParams = Params
Positive = Annotated[int, Meta(ge=1)]
PositiveNumber = Annotated[float, Meta(gt=0)]
Uint32 = Annotated[int, Meta(ge=0, le=UINT32_MAX)]
Seed = Annotated[int, Meta(ge=0, le=2**63 - 1)]


@dataclass(frozen=True, slots=True)
class JobConfig:
    """One job to lease: what to bid for and what to run."""

    model: str
    gpus: int
    max_price_per_gpu_second: int
    """Base units per GPU-second, as the bid signs it (the config's per-hour price converted)."""
    duration: int
    params: JobParams
    billing: Billing = Billing.RENTAL
    """The billing its bid asks for (a signed term the offer must accept)."""
    requirements: Requirements = NO_REQUIREMENTS
    """What an offer must have (memory, bandwidth, attributes) and all-or-none."""

    network: bool = False
    """The job asks for the network (signed in its spec); its bid then requires an offer whose
    provider lets jobs reach it (the ``job-network`` capability), so no other can fill it."""

    @property
    def bid_requirements(self) -> Requirements:
        """The requirements its bid signs: :attr:`requirements` with :attr:`billing`, and the
        ``job-network`` capability for a job that asks for the network."""
        reqs = replace(self.requirements, billing=self.billing)
        if self.network:
            needed = Constraint("capabilities", "has", "job-network")
            reqs = replace(reqs, constraints=(*reqs.constraints, needed))
        return reqs

    @property
    def max_escrow(self) -> int:
        """The most a lease filling the whole bid can pull into escrow."""
        return self.max_price_per_gpu_second * self.gpus * self.duration


class Argv(tuple[str, ...]):
    """A command's argv: 1 to MAX_ARGS non-empty strings without NUL."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Self:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_ARGS:
            raise Invalid(f"must be a list of 1 to {MAX_ARGS} strings")
        for i, arg in enumerate(value):
            if not isinstance(arg, str) or not 0 < len(arg) <= MAX_ARG_LEN or "\0" in arg:
                raise Invalid(f"must be a non-empty string of at most {MAX_ARG_LEN}", f"[{i}]")
        return cls(value)


class JobTable(Table, frozen=True, kw_only=True, tag_field="kind"):
    """``[[jobs]]`` as written: the bid's terms, then the kind's parameters."""

    model: GpuModel
    gpus: Positive
    max_price_per_gpu_hour: PerGpuHour | None = None
    """Tokens per GPU-hour: the most the bid pays (required)."""
    duration: Positive
    billing: Literal["rental", "metered"] = "rental"
    min_memory_gib: Uint32 = 0
    min_bandwidth_gbps: Uint32 = 0
    accept: Attributes = msgspec.field(default_factory=Attributes)
    require: Attributes = msgspec.field(default_factory=Attributes)
    all_or_none: bool = False
    network: bool = False
    max_price_per_gpu_second: Any = None
    """Retired (base units per GPU-second): refused, naming ``max_price_per_gpu_hour``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        refuse_retired("JobTable", "max_price_per_gpu_second", self.max_price_per_gpu_second,
                       "max_price_per_gpu_hour", price=True)  # fmt: skip
        if self.max_price_per_gpu_hour is None:
            raise Invalid("missing: the most the bid pays, in tokens per GPU-hour (\"2.50\")",
                          "max_price_per_gpu_hour", "JobTable")  # fmt: skip
        if self.max_price_per_gpu_hour == 0:
            raise Invalid("must be more than 0 tokens per GPU-hour", "max_price_per_gpu_hour",
                          "JobTable")  # fmt: skip

    def params(self) -> JobParams:
        raise NotImplementedError

    def job(self, token: Token) -> JobConfig:
        """The job this table declares, its requirements as its bid will sign them: ``accept``
        gives each attribute's acceptable values, ``require`` values an offer must all have."""
        constraints = [Constraint(a, "in", v) for a, v in self.accept.items()]
        constraints += [Constraint(a, "has", v) for a, vs in self.require.items() for v in vs]
        if self.min_bandwidth_gbps:
            constraints.append(Constraint("bandwidth_gbps", "ge", self.min_bandwidth_gbps))
        requirements = Requirements(self.min_memory_gib, tuple(constraints), self.all_or_none)
        assert self.max_price_per_gpu_hour is not None  # __post_init__ requires it
        price = self.max_price_per_gpu_hour.per_second(token)
        return JobConfig(
            self.model, self.gpus, price, self.duration, self.params(),
            Billing[self.billing.upper()], requirements, self.network,
        )  # fmt: skip


class MatmulJob(JobTable, frozen=True, tag="matmul"):
    n: Annotated[int, Meta(ge=1, le=MAX_N)]
    seed: Seed
    rounds: Annotated[int, Meta(ge=1, le=MAX_ROUNDS)]

    def params(self) -> JobParams:
        return MatmulParams(self.n, self.seed, self.rounds)


class TrainJob(JobTable, frozen=True, tag="train"):
    """A training run checkpointed per segment, segments re-executed."""

    seed: Seed
    segments: Annotated[int, Meta(ge=1, le=MAX_SEGMENTS)]
    steps: Annotated[int, Meta(ge=1, le=MAX_STEPS)]
    width: Annotated[int, Meta(ge=1, le=MAX_WIDTH)]

    def params(self) -> JobParams:
        return TrainParams(self.seed, self.segments, self.steps, self.width)


class CommandJob(JobTable, frozen=True, tag="command"):
    argv: Argv

    def params(self) -> JobParams:
        return CommandParams(tuple(self.argv))


class LabSettings(HttpListen, frozen=True):
    """``[lab]``: the daemon itself (all optional): where ``/metrics`` listens, then its pace."""

    poll_interval_s: PositiveNumber = 1.0
    allowance: Tokens | None = None
    """Tokens to approve the market for; None: what the bids may escrow."""
    bid_ttl_s: Positive = 3600
    audit_samples: Positive = DEFAULT_SAMPLES
    fund: Any = None
    """Retired (base units): refused, naming ``allowance``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        refuse_retired("LabSettings", "fund", self.fund, "allowance", price=False)

    def allowance_units(self, token: Token) -> int | None:
        """:attr:`allowance` in base units (None: the bids' escrow)."""
        return None if self.allowance is None else self.allowance.units(token)


class GpuClasses(tuple[tuple[str, str], ...]):
    """Model -> GPU class (``{ "X1-80GB" = "H100" }``), each class one of
    :data:`market.receipts.challenge.GPU_CLASSES`."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Self:
        if not isinstance(value, dict):
            raise Invalid("must be a table of model = GPU class")
        for model, gpu_class in value.items():
            if gpu_class not in GPU_CLASSES:
                raise Invalid(f"unknown GPU class {gpu_class!r}; known: "
                              f"{', '.join(sorted(GPU_CLASSES))}", f".{model}")  # fmt: skip
        return cls((str(m), str(c)) for m, c in value.items())


class ChallengeSettings(Table, frozen=True):
    """``[challenge]``: the lab's hardware challenge of its leases (:mod:`nodes.lab.challenges`)."""

    enabled: bool = True
    n: Annotated[int, Meta(ge=1, le=MAX_CHALLENGE_N)] = 4096
    rows: Annotated[int, Meta(ge=1, le=MAX_CHALLENGE_ROWS)] = 16
    mean_interval_s: PositiveNumber = 600.0
    allowance_s: Annotated[float, Meta(ge=0)] = 0.5
    classes: GpuClasses = GpuClasses()
    """Model -> GPU class (:data:`market.receipts.challenge.GPU_CLASSES`) beyond the prefix."""
    default_class: NonEmpty | None = None
    """The class of a model no other rule names; None: such leases are not challenged."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.default_class is not None and self.default_class not in GPU_CLASSES:
            raise Invalid(f"unknown GPU class {self.default_class!r}; known: "
                          f"{', '.join(sorted(GPU_CLASSES))}", "default_class",
                          "ChallengeSettings")  # fmt: skip

    def gpu_class(self, model: str) -> str | None:
        """The class a lease of ``model`` is challenged as; None when unknown (not challenged)."""
        named = dict(self.classes).get(model)
        if named is not None:
            return named
        prefix = model.split("-", 1)[0]
        return prefix if prefix in GPU_CLASSES else self.default_class


class LabKeyConfig(KeyConfig, frozen=True):
    """``[key]`` of a lab: a daemon's key, and optionally a voucher key and a contract wallet."""

    voucher_keystore: Path | None = None
    wallet: Address | None = None


class LabConfig(DaemonConfig, frozen=True, kw_only=True):
    """The lab client's whole config file."""

    key: LabKeyConfig
    lab: LabSettings = msgspec.field(default_factory=LabSettings)
    challenge: ChallengeSettings = msgspec.field(default_factory=ChallengeSettings)
    job_tables: tuple[MatmulJob | TrainJob | CommandJob, ...] = msgspec.field(
        name="jobs", default=()
    )

    _OWNER: ClassVar[str] = "LabConfig"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.relays:
            raise Invalid("name at least one relay: the lab's bids go there", "relays.urls",
                          self._OWNER)  # fmt: skip
        if not self.job_tables:
            raise Invalid("declare at least one job ([[jobs]])", "jobs", self._OWNER)

    def jobs(self, token: Token) -> tuple[JobConfig, ...]:
        """The jobs to lease, in the file's order, their prices in ``token``'s base units."""
        return tuple(t.job(token) for t in self.job_tables)

    @property
    def voucher_key(self) -> KeyConfig | None:
        """A keystore whose key signs the vouchers instead of the lab's (its bids name it as
        their ``voucher_signer``); its password is read from ``key.password_env`` too."""
        path = self.key.voucher_keystore
        return None if path is None else KeyConfig(path, self.key.password_env)

    @property
    def wallet(self) -> ChecksumAddress | None:
        """The contract wallet the lab acts for, ``key`` being its owner (``[key] wallet``);
        None: the lab is ``key``'s own account."""
        return None if self.key.wallet is None else self.key.wallet.checksummed


def load_config(path: Path) -> LabConfig:
    """Read and validate the config at ``path``; raises ConfigError naming the bad field."""
    return load_daemon_config(path, LabConfig)


__all__ = [
    "ChallengeSettings",
    "CommandJob",
    "JobConfig",
    "JobParams",
    "JobTable",
    "LabConfig",
    "LabKeyConfig",
    "LabSettings",
    "MatmulJob",
    "TrainJob",
    "decrypt_key",
    "load_config",
    "load_deployment",
]
