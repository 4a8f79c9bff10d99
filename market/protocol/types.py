"""The protocol's messages as frozen, validated dataclasses.

Every field is checked on construction against its Solidity type (``uint32``, ``uint64``,
``uint256``, ``address``, ``bytes32``), so an object that exists can always be hashed, signed,
encoded and sent to the contract. A bad field raises :class:`~market.errors.InvalidField` naming
the message type, the field and the rule it broke.

Python names are snake_case; the EIP-712 and msgpack names are the contract's camelCase names,
listed in each class's ``FIELDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from typing import Any, ClassVar, Generic, NewType, TypeVar

from eth_abi.abi import encode as abi_encode
from eth_typing import ChecksumAddress, HexAddress, HexStr

from market.errors import InvalidAddress, InvalidField
from market.protocol.keccak import keccak

TokenAmount = NewType("TokenAmount", int)
"""An amount in the settlement token's smallest unit."""
LeaseId = NewType("LeaseId", bytes)
"""keccak256 of the ABI-encoded lease terms (32 bytes)."""
OrderHash = NewType("OrderHash", bytes)
"""The EIP-712 digest of an offer or bid (32 bytes)."""
ReceiptHash = NewType("ReceiptHash", bytes)
"""The EIP-712 digest of a receipt (32 bytes): the next receipt's ``prevHash`` and a voucher's
``receiptHash``."""

UINT8_MAX = 2**8 - 1
UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
UINT128_MAX = 2**128 - 1
UINT256_MAX = 2**256 - 1
BPS = 10_000
"""Basis points in a whole: ``min_charge_bps`` and the market's ratios are out of it."""
ZERO_HASH = bytes(32)
ZERO_ADDRESS = ChecksumAddress(HexAddress(HexStr("0x" + "00" * 20)))
"""In an order's or a lease's ``receipt_signer``/``voucher_signer``: the signer's own key."""
_UINT_MAX = {
    "uint8": UINT8_MAX,
    "uint16": UINT16_MAX,
    "uint32": UINT32_MAX,
    "uint64": UINT64_MAX,
    "uint128": UINT128_MAX,
    "uint256": UINT256_MAX,
}


def gpu_model_to_bytes32(model: str) -> bytes:
    """Encode a GPU model name as the contract's ``bytes32``: ASCII, left-aligned, zero-padded."""
    raw = model.encode("ascii")
    return raw.ljust(32, b"\0")


def gpu_model_from_bytes32(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("ascii")


class Billing(IntEnum):
    """How a lease bills, a term both orders sign (the contract's ``Billing``).

    ``RENTAL`` (the default) pays for the GPU time reserved to the lab until the lease ends or the
    lab terminates; its receipts attest that the GPUs were held and reachable. ``METERED`` pays
    for busy GPU time only. An offer lists the modes it accepts as a bit set
    (:func:`billing_modes`); a bid names one.
    """

    RENTAL = 0
    METERED = 1


def billing_modes(*modes: Billing) -> int:
    """An offer's ``billing_modes`` bit set: bit ``m`` for each accepted mode ``m``."""
    return sum(1 << int(m) for m in set(modes))


RENTAL_ONLY = billing_modes(Billing.RENTAL)
ALL_BILLING_MODES = billing_modes(*Billing)


def _check_uint(msg: str, name: str, value: object, solidity_type: str) -> None:
    if type(value) is not int and not isinstance(value, IntEnum):  # bool is refused
        raise InvalidField(
            msg, name, f"must be an int ({solidity_type}), got {type(value).__name__}"
        )
    if not 0 <= value <= _UINT_MAX[solidity_type]:
        raise InvalidField(msg, name, f"{value} is out of range for {solidity_type}")


def _check_bool(msg: str, name: str, value: object) -> None:
    if type(value) is not bool:
        raise InvalidField(msg, name, f"must be a bool, got {type(value).__name__}")


def _check_billing(msg: object, name: str) -> None:
    value = getattr(msg, name)
    if type(value) is not Billing:
        try:
            object.__setattr__(msg, name, Billing(value))
        except ValueError as exc:
            raise InvalidField(
                type(msg).__name__, name, f"{value} is not a billing mode ({list(Billing)})"
            ) from exc


def _check_bytes32(msg: str, name: str, value: object) -> None:
    if type(value) is not bytes or len(value) != 32:
        raise InvalidField(msg, name, "must be 32 bytes")


@lru_cache(maxsize=1 << 16)
def checksum_address(value: str) -> ChecksumAddress:
    """The EIP-55 form of a 0x-prefixed 20-byte hex address (cached: the same signers recur in
    every batch of orders). Raises InvalidAddress (a ValueError) when ``value`` is not one."""
    if len(value) != 42 or not value.startswith(("0x", "0X")):
        raise InvalidAddress(value)
    try:
        lower = bytes.fromhex(value[2:]).hex()
    except ValueError as exc:  # a non-hex digit
        raise InvalidAddress(value) from exc
    nibbles = keccak(lower.encode()).hex()[:40]
    cased = (c.upper() if int(d, 16) >= 8 else c for c, d in zip(lower, nibbles, strict=True))
    return ChecksumAddress(HexAddress(HexStr("0x" + "".join(cased))))


def _check_address(obj: object, msg: str, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
        raise InvalidField(msg, name, f"must be a 0x-prefixed 20-byte hex address, got {value!r}")
    try:
        checksummed = checksum_address(value)
    except ValueError as exc:
        raise InvalidField(msg, name, f"is not a hex address: {value!r}") from exc
    if value != checksummed:
        if value not in (value.lower(), "0x" + value[2:].upper()):
            raise InvalidField(msg, name, f"has a wrong EIP-55 checksum: {value!r}")
        object.__setattr__(obj, name, checksummed)


def _check_gpu_model(msg: str, name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidField(msg, name, "must be a non-empty string")
    if not value.isascii() or not value.isprintable() or len(value) > 32:
        raise InvalidField(msg, name, f"must be at most 32 printable ASCII characters: {value!r}")


@dataclass(frozen=True, slots=True)
class Offer:
    """A provider's offer of up to ``gpu_count`` GPUs of one model; may be filled in parts.

    Everything a bid may require of it is signed here: ``memory_gib`` and ``bandwidth_gbps`` per
    GPU, the other attributes as ``features`` bits (:mod:`market.matching.features`), the billing
    modes it accepts, and ``receipt_signer``, the ECDSA key that signs its leases' receipts (zero:
    the provider's own key; a contract provider must name one). ``arbiter`` may rule on its
    leases' disputed claims (a bid must name the same; zero: none, and an unresolved dispute pays
    the provider); ``min_charge_bps`` of each fill's escrow is paid to the provider whatever the
    lab uses (what filling an offer and walking away costs).
    """

    provider: ChecksumAddress
    gpu_model: str
    gpu_count: int
    memory_gib: int
    price_per_gpu_second: int
    min_duration: int
    max_duration: int
    expiry: int
    nonce: int
    bandwidth_gbps: int = 0
    features: int = 0
    billing_modes: int = RENTAL_ONLY
    receipt_signer: ChecksumAddress = ZERO_ADDRESS
    arbiter: ChecksumAddress = ZERO_ADDRESS
    min_charge_bps: int = 0

    TYPE_NAME: ClassVar[str] = "Offer"
    # (python attribute, EIP-712/msgpack name, Solidity type), in the struct's order.
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("provider", "provider", "address"),
        ("gpu_model", "gpuModel", "bytes32"),
        ("gpu_count", "gpuCount", "uint32"),
        ("memory_gib", "memoryGiB", "uint32"),
        ("bandwidth_gbps", "bandwidthGbps", "uint32"),
        ("features", "features", "uint256"),
        ("billing_modes", "billingModes", "uint8"),
        ("price_per_gpu_second", "pricePerGpuSecond", "uint256"),
        ("min_duration", "minDuration", "uint64"),
        ("max_duration", "maxDuration", "uint64"),
        ("expiry", "expiry", "uint64"),
        ("nonce", "nonce", "uint256"),
        ("receipt_signer", "receiptSigner", "address"),
        ("arbiter", "arbiter", "address"),
        ("min_charge_bps", "minChargeBps", "uint16"),
    )

    def __post_init__(self) -> None:
        _validate(self)
        self._check_rules()

    def _check_rules(self) -> None:
        """The rules that tie fields together or narrow a type, beyond each field's own type."""
        if self.min_duration > self.max_duration:
            raise InvalidField("Offer", "min_duration", "must not exceed max_duration")
        if self.min_charge_bps > BPS:
            raise InvalidField(
                "Offer", "min_charge_bps", f"must be at most {BPS} (the whole escrow)"
            )

    @property
    def receipt_key(self) -> ChecksumAddress:
        """The address whose ECDSA signatures its leases' receipts carry."""
        return self.provider if self.receipt_signer == ZERO_ADDRESS else self.receipt_signer

    def accepts(self, billing: Billing) -> bool:
        """Whether the offer accepts leases billed ``billing``."""
        return bool(self.billing_modes >> int(billing) & 1)


@dataclass(frozen=True, slots=True)
class Bid:
    """A lab's bid for ``gpu_count`` GPUs for ``duration`` seconds; several offers may fill it.

    Its requirements are signed terms the contract checks against each offer that fills it:
    ``min_memory_gib``, ``min_bandwidth_gbps``, ``required_features`` (every bit in the offer's
    features) and ``accepted_features`` (per non-zero 16-bit lane, one of its bits in the offer's);
    build them with :class:`market.matching.Requirements`. ``all_or_none``: all ``gpu_count``
    GPUs open in one transaction, across providers, or none. ``voucher_signer`` is the ECDSA key
    that signs its leases' vouchers (zero: the lab's own; a contract lab must name one).
    ``arbiter`` must be the offer's; ``max_min_charge_bps`` is the highest minimum charge (in basis
    points of the escrow) it accepts from an offer.
    """

    lab: ChecksumAddress
    gpu_model: str
    gpu_count: int
    max_price_per_gpu_second: int
    duration: int
    expiry: int
    nonce: int
    job_spec_hash: bytes = ZERO_HASH
    min_memory_gib: int = 0
    min_bandwidth_gbps: int = 0
    required_features: int = 0
    accepted_features: int = 0
    billing: Billing = Billing.RENTAL
    all_or_none: bool = False
    voucher_signer: ChecksumAddress = ZERO_ADDRESS
    arbiter: ChecksumAddress = ZERO_ADDRESS
    max_min_charge_bps: int = 0

    TYPE_NAME: ClassVar[str] = "Bid"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("lab", "lab", "address"),
        ("gpu_model", "gpuModel", "bytes32"),
        ("gpu_count", "gpuCount", "uint32"),
        ("min_memory_gib", "minMemoryGiB", "uint32"),
        ("min_bandwidth_gbps", "minBandwidthGbps", "uint32"),
        ("required_features", "requiredFeatures", "uint256"),
        ("accepted_features", "acceptedFeatures", "uint256"),
        ("billing", "billing", "uint8"),
        ("all_or_none", "allOrNone", "bool"),
        ("max_price_per_gpu_second", "maxPricePerGpuSecond", "uint256"),
        ("duration", "duration", "uint64"),
        ("expiry", "expiry", "uint64"),
        ("nonce", "nonce", "uint256"),
        ("job_spec_hash", "jobSpecHash", "bytes32"),
        ("voucher_signer", "voucherSigner", "address"),
        ("arbiter", "arbiter", "address"),
        ("max_min_charge_bps", "maxMinChargeBps", "uint16"),
    )

    def __post_init__(self) -> None:
        _validate(self)
        self._check_rules()

    def _check_rules(self) -> None:
        """The rules that tie fields together or narrow a type, beyond each field's own type."""
        _check_billing(self, "billing")

    @property
    def voucher_key(self) -> ChecksumAddress:
        """The address whose ECDSA signatures its leases' vouchers carry."""
        return self.lab if self.voucher_signer == ZERO_ADDRESS else self.voucher_signer


@dataclass(frozen=True, slots=True)
class Voucher:
    """The lab's acceptance of ``cumulative_amount`` owed for a lease and of one receipt."""

    lease_id: bytes
    cumulative_amount: int
    receipt_hash: bytes = ZERO_HASH

    TYPE_NAME: ClassVar[str] = "Voucher"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("lease_id", "leaseId", "bytes32"),
        ("cumulative_amount", "cumulativeAmount", "uint256"),
        ("receipt_hash", "receiptHash", "bytes32"),
    )

    def __post_init__(self) -> None:
        _validate(self)

    def _check_rules(self) -> None:
        """Nothing beyond each field's own type."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A provider's signed account of one metering period of a lease, linked to the one before.

    Its EIP-712 type string, which the contract must use verbatim::

        Receipt(bytes32 leaseId,uint64 seq,bytes32 prevHash,uint64 periodStart,uint64 periodEnd,
        uint64 gpuSecondsCumulative,bytes32 outputRoot,bytes32 metricsHash,bytes32 attestationHash)

    (one line, no spaces after the commas), under the same ``gpumarket`` domain as orders and
    vouchers. A receipt's hash is its EIP-712 digest: the next receipt's ``prev_hash`` and the
    ``receipt_hash`` of the voucher that pays for it. ``prev_hash`` is zero for ``seq`` 0;
    ``output_root`` is the Merkle root of the period's output chunks (market.receipts.merkle), zero
    when the period produced none; ``attestation_hash`` is zero when there is no attestation.

    Only the field types are checked here; the chain's rules (links, periods, usage bounds) are
    market.receipts.verify's, so that a provider's malformed receipt can still be held as evidence.
    """

    lease_id: bytes
    seq: int
    prev_hash: bytes
    period_start: int
    period_end: int
    gpu_seconds_cumulative: int
    output_root: bytes
    metrics_hash: bytes
    attestation_hash: bytes = ZERO_HASH

    TYPE_NAME: ClassVar[str] = "Receipt"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("lease_id", "leaseId", "bytes32"),
        ("seq", "seq", "uint64"),
        ("prev_hash", "prevHash", "bytes32"),
        ("period_start", "periodStart", "uint64"),
        ("period_end", "periodEnd", "uint64"),
        ("gpu_seconds_cumulative", "gpuSecondsCumulative", "uint64"),
        ("output_root", "outputRoot", "bytes32"),
        ("metrics_hash", "metricsHash", "bytes32"),
        ("attestation_hash", "attestationHash", "bytes32"),
    )

    def __post_init__(self) -> None:
        _validate(self)

    def _check_rules(self) -> None:
        """Nothing beyond each field's own type: the chain's rules are market.receipts'."""


@dataclass(frozen=True, slots=True)
class Lease:
    """The terms of a lease, fixed when it opened. Its id is the keccak256 of their ABI encoding.

    Receipts are signed by :attr:`receipt_key` and vouchers by :attr:`voucher_key`, keys the
    orders named (zero: the provider's and the lab's own).
    """

    provider: ChecksumAddress
    lab: ChecksumAddress
    gpus: int
    price_per_gpu_second: int
    start: int
    duration: int
    salt: bytes
    billing: Billing = Billing.RENTAL
    receipt_signer: ChecksumAddress = ZERO_ADDRESS
    voucher_signer: ChecksumAddress = ZERO_ADDRESS
    arbiter: ChecksumAddress = ZERO_ADDRESS
    min_charge: int = 0

    TYPE_NAME: ClassVar[str] = "Lease"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("provider", "provider", "address"),
        ("lab", "lab", "address"),
        ("gpus", "gpus", "uint32"),
        ("price_per_gpu_second", "pricePerGpuSecond", "uint256"),
        ("start", "start", "uint64"),
        ("duration", "duration", "uint64"),
        ("salt", "salt", "bytes32"),
        ("billing", "billing", "uint8"),
        ("receipt_signer", "receiptSigner", "address"),
        ("voucher_signer", "voucherSigner", "address"),
        ("arbiter", "arbiter", "address"),
        ("min_charge", "minCharge", "uint256"),
    )
    ABI_TYPE: ClassVar[str] = (
        "(address,address,uint32,uint256,uint64,uint64,bytes32,uint8,address,address,address,uint256)"
    )

    def __post_init__(self) -> None:
        _validate(self)
        self._check_rules()

    def _check_rules(self) -> None:
        """The rules that tie fields together or narrow a type, beyond each field's own type."""
        _check_billing(self, "billing")

    @property
    def receipt_key(self) -> ChecksumAddress:
        """The address whose ECDSA signatures the lease's receipts must carry."""
        return self.provider if self.receipt_signer == ZERO_ADDRESS else self.receipt_signer

    @property
    def voucher_key(self) -> ChecksumAddress:
        """The address whose ECDSA signatures the lease's vouchers must carry."""
        return self.lab if self.voucher_signer == ZERO_ADDRESS else self.voucher_signer

    @property
    def escrow(self) -> TokenAmount:
        """What the lab paid into escrow: price x GPUs x duration."""
        return TokenAmount(self.price_per_gpu_second * self.gpus * self.duration)

    @property
    def end(self) -> int:
        """The scheduled end (a termination may bring it forward; see LeaseState.end)."""
        return self.start + self.duration

    def as_tuple(self) -> tuple[object, ...]:
        """The terms in ABI order, as the contract's ``Lease`` struct."""
        return tuple(
            int(v) if isinstance(v, IntEnum) else v
            for v in (getattr(self, attr) for attr, _, _ in self.FIELDS)
        )

    @property
    def id(self) -> LeaseId:
        return _lease_id(self.as_tuple())


@lru_cache(maxsize=1 << 16)
def _lease_id(terms: tuple[object, ...]) -> LeaseId:
    """A lease's id from its terms, remembered: a daemon asks for the same leases' ids on every
    tick and lookup, and each is an ABI encoding and a keccak256 (about 0.3 ms)."""
    return LeaseId(keccak(abi_encode([Lease.ABI_TYPE], [terms])))


class LeaseStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    TERMINATED = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class LeaseState:
    """The mutable part of a lease, as stored on-chain."""

    paid: int
    end: int
    status: LeaseStatus
    slashed: bool = False  # a proof of cheating slashed the provider (the lease is closed too)
    disputed: bool = False  # the lab disputed the pending claim; it awaits a ruling or deadline
    stake_released: bool = False  # the provider's stake lock for the lease went back to it


@dataclass(frozen=True, slots=True)
class OrderState:
    """How much of an order is filled and whether it was cancelled by hash."""

    filled: int
    cancelled: bool


M = TypeVar("M", Offer, Bid, Voucher, Receipt)


@dataclass(frozen=True, slots=True)
class Signed(Generic[M]):
    """A message with its signature, in any form the Market contract accepts: the signer's ECDSA
    signature, 65 bytes ``r || s || v`` (v in {27, 28}) or EIP-2098's compact 64 ``r || vs``, or,
    for a contract signer, whatever bytes its ERC-1271 ``isValidSignature`` accepts (from 1 to
    ``MAX_SIGNATURE_LENGTH`` bytes). Which one it is, and whether it is valid, is for
    ``market.protocol.signing`` to say; this only bounds the length."""

    message: M
    signature: bytes = field(repr=False)

    MAX_SIGNATURE_LENGTH: ClassVar[int] = 4096
    """The longest signature accepted: room for a multisig's signatures or a smart wallet's
    WebAuthn assertion, while bounding what one order costs to store, relay and check."""

    def __post_init__(self) -> None:
        if type(self.signature) is not bytes:
            raise InvalidField(type(self.message).__name__, "signature", "must be bytes")
        if not 0 < len(self.signature) <= self.MAX_SIGNATURE_LENGTH:
            raise InvalidField(
                type(self.message).__name__,
                "signature",
                f"is {len(self.signature)} bytes; it must be 1 to "
                f"{self.MAX_SIGNATURE_LENGTH} (ECDSA: 65, or 64 in EIP-2098 form)",
            )


Message = Offer | Bid | Voucher | Lease | Receipt


def _validate(msg: Message) -> None:
    name = msg.TYPE_NAME
    for attr, _, solidity_type in msg.FIELDS:
        value = getattr(msg, attr)
        if solidity_type == "address":
            _check_address(msg, name, attr)
        elif attr == "gpu_model":
            _check_gpu_model(name, attr, value)
        elif solidity_type == "bytes32":
            _check_bytes32(name, attr, value)
        elif solidity_type == "bool":
            _check_bool(name, attr, value)
        else:
            _check_uint(name, attr, value, solidity_type)


_MESSAGE = TypeVar("_MESSAGE", bound="Offer | Bid | Voucher | Lease | Receipt")
_NARROW_UINTS: dict[type, tuple[tuple[str, str, int], ...]] = {
    cls: tuple(
        (attr, t, _UINT_MAX[t]) for attr, _, t in cls.FIELDS if t in _UINT_MAX and t != "uint256"
    )
    for cls in (Offer, Bid, Voucher, Lease, Receipt)
}
"""Per message class, its ints narrower than 256 bits, with their Solidity types and maxima."""
_set = object.__setattr__


def unsafe_from_codec(cls: type[_MESSAGE], values: dict[str, Any]) -> _MESSAGE:
    """A ``cls`` built from ``values`` that market.protocol.codec has ALREADY type-checked, with
    only the checks the codec's types do not make. For the codec alone: anything else builds
    messages with ``cls(...)``, which checks every field.

    The codec's Struct has proved that every field is present with its wire type: an address is
    the EIP-55 string made from 20 bytes, a ``bytes32`` is 32 bytes, a ``uint256`` is an int made
    from 32 bytes (so within range), a bool is a bool, a narrower uint is an int (not a bool),
    the GPU model a str. What is left is checked here with the errors ``__post_init__`` raises:
    the GPU model's name, the narrower uints' ranges (in ``FIELDS`` order, which puts the model
    first), then the class's own rules."""
    obj = object.__new__(cls)
    for attr, value in values.items():
        _set(obj, attr, value)
    name = cls.TYPE_NAME
    if "gpu_model" in values:
        _check_gpu_model(name, "gpu_model", values["gpu_model"])
    for attr, solidity_type, maximum in _NARROW_UINTS[cls]:
        value = values[attr]
        if not 0 <= value <= maximum:
            _check_uint(name, attr, value, solidity_type)  # raises InvalidField
    obj._check_rules()
    return obj


__all__ = [
    "ALL_BILLING_MODES",
    "RENTAL_ONLY",
    "UINT8_MAX",
    "UINT32_MAX",
    "UINT64_MAX",
    "UINT128_MAX",
    "UINT256_MAX",
    "ZERO_ADDRESS",
    "ZERO_HASH",
    "Bid",
    "Billing",
    "Lease",
    "LeaseId",
    "LeaseState",
    "LeaseStatus",
    "Message",
    "Offer",
    "OrderHash",
    "OrderState",
    "Receipt",
    "ReceiptHash",
    "Signed",
    "TokenAmount",
    "Voucher",
    "billing_modes",
    "checksum_address",
    "gpu_model_from_bytes32",
    "gpu_model_to_bytes32",
]
