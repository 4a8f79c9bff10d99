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
    fund = 5000000                         # allowance to approve; default: the bids' escrow
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
    max_price_per_gpu_second = 3
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
    max_price_per_gpu_second = 3
    duration = 600
    kind = "train"                         # seed, segments, steps, width: a training run
    seed = 7                               # checkpointed per segment, segments re-executed
    segments = 100
    steps = 200
    width = 32

    [[jobs]]
    model = "H100-80GB"
    gpus = 1
    max_price_per_gpu_second = 3
    duration = 60
    kind = "command"
    argv = ["python", "-c", "print('hello')"]

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
unknown keys are errors too. The key and chain tables are the provider's (:mod:`nodes.provider
.config`), read the same way.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from eth_typing import ChecksumAddress

from market.matching import NO_REQUIREMENTS, Constraint, Requirements
from market.protocol.types import UINT32_MAX, Billing, checksum_address
from market.receipts import DEFAULT_SAMPLES
from market.receipts.challenge import GPU_CLASSES
from nodes.errors import ConfigError
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
from nodes.provider.config import (
    ChainConfig,
    KeyConfig,
    billing_names,
    chain_config,
    decrypt_key,
    load_deployment,
)
from nodes.provider.config_fields import REQUIRED, Table
from nodes.wire import MAX_CHALLENGE_N, MAX_CHALLENGE_ROWS

JobParams = Params


@dataclass(frozen=True, slots=True)
class JobConfig:
    """One job to lease: what to bid for and what to run."""

    model: str
    gpus: int
    max_price_per_gpu_second: int
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


@dataclass(frozen=True, slots=True)
class LabSettings:
    poll_interval_s: float
    host: str
    port: int
    fund: int | None
    bid_ttl_s: int
    audit_samples: int


@dataclass(frozen=True, slots=True)
class ChallengeSettings:
    """The lab's hardware challenge of its leases (:mod:`nodes.lab.challenges`)."""

    enabled: bool = True
    n: int = 4096
    rows: int = 16
    mean_interval_s: float = 600.0
    allowance_s: float = 0.5
    classes: tuple[tuple[str, str], ...] = ()
    """Model -> GPU class (:data:`market.receipts.challenge.GPU_CLASSES`) beyond the prefix."""
    default_class: str | None = None
    """The class of a model no other rule names; None: such leases are not challenged."""

    def gpu_class(self, model: str) -> str | None:
        """The class a lease of ``model`` is challenged as; None when unknown (not challenged)."""
        named = dict(self.classes).get(model)
        if named is not None:
            return named
        prefix = model.split("-", 1)[0]
        return prefix if prefix in GPU_CLASSES else self.default_class


@dataclass(frozen=True, slots=True)
class LabConfig:
    path: Path
    state: Path
    key: KeyConfig
    chain: ChainConfig
    relays: tuple[str, ...]
    lab: LabSettings
    jobs: tuple[JobConfig, ...]
    voucher_key: KeyConfig | None = None
    """A keystore whose key signs the vouchers instead of the lab's (its bids name it as their
    ``voucher_signer``); its password is read from ``key.password_env`` too."""
    wallet: ChecksumAddress | None = None
    """The contract wallet the lab acts for, ``key`` being its owner (``[key] wallet``); None:
    the lab is ``key``'s own account."""
    challenge: ChallengeSettings = ChallengeSettings()


_SECTIONS = ("state", "key", "chain", "relays", "lab", "challenge", "jobs")
_JOB_COMMON = (
    "model", "gpus", "max_price_per_gpu_second", "duration", "billing", "kind",
    "min_memory_gib", "min_bandwidth_gbps", "accept", "require", "all_or_none", "network",
)  # fmt: skip


def load_config(path: Path) -> LabConfig:
    """Read and validate the config at ``path``; raises ConfigError naming the bad field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", str(exc)) from exc
    root = Table(str(path), "", raw, base=path.parent)
    root.expect(_SECTIONS)
    jobs = tuple(_job(t) for t in root.tables("jobs"))
    if not jobs:
        raise root.error("jobs", "declare at least one job ([[jobs]])")
    key, voucher_key, wallet = _key(root.table("key"))
    return LabConfig(
        path=path,
        state=root.path("state", default="state.sqlite"),
        key=key,
        chain=chain_config(root.table("chain", required=False)),
        relays=_relays(root.table("relays")),
        lab=_lab(root.table("lab", required=False)),
        jobs=jobs,
        voucher_key=voucher_key,
        wallet=wallet,
        challenge=_challenge(root.table("challenge", required=False)),
    )


def _key(t: Table) -> tuple[KeyConfig, KeyConfig | None, ChecksumAddress | None]:
    t.expect(("keystore", "password_env", "voucher_keystore", "wallet"))
    password_env = t.text("password_env", "GPUMARKET_KEY_PASSWORD")
    voucher = t.path("voucher_keystore", default=None)
    return (
        KeyConfig(t.path("keystore"), password_env),
        None if voucher is None else KeyConfig(voucher, password_env),
        _address(t, "wallet") if "wallet" in t.raw else None,
    )


def _address(t: Table, field: str) -> ChecksumAddress:
    """A 0x-prefixed 20-byte hex address: all lower or upper case, or with a right EIP-55
    checksum (a mixed case that is not one is a typo)."""
    value = t.raw[field]
    if not isinstance(value, str):
        raise t.error(field, f"must be a 0x-prefixed hex address string, got {value!r}")
    try:
        address = checksum_address(value)
    except ValueError as exc:
        raise t.error(field, f"must be a 0x-prefixed 20-byte hex address, got {value!r}") from exc
    if value[2:] not in (address[2:], value[2:].lower(), value[2:].upper()):
        raise t.error(field, f"has a wrong EIP-55 checksum: {value!r}; the checksum is {address}")
    if int(address, 16) == 0:
        raise t.error(field, "must not be the zero address")
    return address


def _relays(t: Table) -> tuple[str, ...]:
    t.expect(("urls",))
    urls = t.url_list("urls")
    if not urls:
        raise t.error("urls", "name at least one relay: the lab's bids go there")
    return urls


def _lab(t: Table) -> LabSettings:
    t.expect(("poll_interval_s", "host", "port", "fund", "bid_ttl_s", "audit_samples"))
    port = t.integer("port", 0, minimum=0)
    if port > 65535:
        raise t.error("port", f"must be at most 65535, got {port}")
    fund = t.integer("fund", minimum=0) if "fund" in t.raw else None
    return LabSettings(
        poll_interval_s=t.number("poll_interval_s", 1.0),
        host=t.text("host", "127.0.0.1"),
        port=port,
        fund=fund,
        bid_ttl_s=t.integer("bid_ttl_s", 3600, minimum=1),
        audit_samples=t.integer("audit_samples", DEFAULT_SAMPLES, minimum=1),
    )


def _challenge(t: Table) -> ChallengeSettings:
    t.expect(("enabled", "n", "rows", "mean_interval_s", "allowance_s", "classes", "default_class"))
    d = ChallengeSettings()
    n = t.integer("n", d.n)
    if n > MAX_CHALLENGE_N:
        raise t.error("n", f"must be at most {MAX_CHALLENGE_N}, got {n}")
    rows = t.integer("rows", d.rows)
    if rows > MAX_CHALLENGE_ROWS:
        raise t.error("rows", f"must be at most {MAX_CHALLENGE_ROWS}, got {rows}")
    interval = t.number("mean_interval_s", d.mean_interval_s)
    allowance = t.number("allowance_s", d.allowance_s)
    if interval <= 0:
        raise t.error("mean_interval_s", f"must be positive, got {interval}")
    if allowance < 0:
        raise t.error("allowance_s", f"must not be negative, got {allowance}")
    default_class = t.text("default_class") if "default_class" in t.raw else None
    if default_class is not None and default_class not in GPU_CLASSES:
        raise t.error("default_class", f"unknown GPU class {default_class!r}; known: "
                      f"{', '.join(sorted(GPU_CLASSES))}")  # fmt: skip
    classes = []
    for model, cls in t.mapping("classes").items():
        if cls not in GPU_CLASSES:
            raise t.error(f"classes.{model}", f"unknown GPU class {cls!r}; known: "
                          f"{', '.join(sorted(GPU_CLASSES))}")  # fmt: skip
        classes.append((model, str(cls)))
    return ChallengeSettings(t.flag("enabled", d.enabled), n, rows, interval, allowance,
                             tuple(classes), default_class)  # fmt: skip


def _job(t: Table) -> JobConfig:
    kind = t.text("kind")
    if kind == "matmul":
        t.expect((*_JOB_COMMON, "n", "seed", "rounds"))
        params: JobParams = MatmulParams(
            _bounded(t, "n", 1, MAX_N), _bounded(t, "seed", 0, 2**63 - 1),
            _bounded(t, "rounds", 1, MAX_ROUNDS),
        )  # fmt: skip
    elif kind == "train":
        t.expect((*_JOB_COMMON, "seed", "segments", "steps", "width"))
        params = TrainParams(
            _bounded(t, "seed", 0, 2**63 - 1), _bounded(t, "segments", 1, MAX_SEGMENTS),
            _bounded(t, "steps", 1, MAX_STEPS), _bounded(t, "width", 1, MAX_WIDTH),
        )  # fmt: skip
    elif kind == "command":
        t.expect((*_JOB_COMMON, "argv"))
        params = CommandParams(_argv(t))
    else:
        raise t.error("kind", f'must be "matmul", "train" or "command", got {kind!r}')
    return JobConfig(
        model=t.gpu_model("model"),
        gpus=t.integer("gpus", minimum=1),
        max_price_per_gpu_second=t.integer("max_price_per_gpu_second", minimum=1),
        duration=t.integer("duration", minimum=1),
        params=params,
        billing=Billing[t.choice("billing", billing_names(), "rental").upper()],
        requirements=_requirements(t),
        network=t.flag("network", False),
    )


def _requirements(t: Table) -> Requirements:
    """A job's requirements of the offers that fill it, as its bid will sign them: ``accept``
    gives each attribute's acceptable values, ``require`` values an offer must all have."""
    memory, bandwidth = (
        _bounded(t, f, 0, UINT32_MAX, 0) for f in ("min_memory_gib", "min_bandwidth_gbps")
    )
    constraints = [Constraint(a, "in", v) for a, v in t.attributes("accept").items()]
    constraints += [
        Constraint(a, "has", v) for a, vs in t.attributes("require").items() for v in vs
    ]
    if bandwidth:
        constraints.append(Constraint("bandwidth_gbps", "ge", bandwidth))
    return Requirements(memory, tuple(constraints), t.flag("all_or_none", False))


def _bounded(t: Table, field: str, low: int, high: int, default: int | None = None) -> int:
    value = t.integer(field, REQUIRED if default is None else default, minimum=low)
    if value > high:
        raise t.error(field, f"must be at most {high}, got {value}")
    return value


def _argv(t: Table) -> tuple[str, ...]:
    value = t.raw.get("argv")
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ARGS:
        raise t.error("argv", f"must be a list of 1 to {MAX_ARGS} strings")
    for i, arg in enumerate(value):
        if not isinstance(arg, str) or not 0 < len(arg) <= MAX_ARG_LEN or "\0" in arg:
            raise t.error(f"argv[{i}]", f"must be a non-empty string of at most {MAX_ARG_LEN}")
    return tuple(value)


__all__ = [
    "ChallengeSettings",
    "JobConfig",
    "JobParams",
    "LabConfig",
    "LabSettings",
    "decrypt_key",
    "load_config",
    "load_deployment",
]
