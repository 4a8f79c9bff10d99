"""Every error gpumarket raises derives from :class:`MarketError`.

The tree::

    MarketError
    ├── UsageError                a call broke its function's contract: a bug in the caller, not
    │   │                         a peer's bad message; fix the call
    │   ├── InvalidArgument       an argument outside the function's domain (also a ValueError)
    │   ├── WrongArgumentType     an argument of a type the function does not take (also a
    │   │                         TypeError)
    │   └── NoAccount             a read-only MarketClient was asked to act on-chain
    ├── ToolchainError            a pinned tool (node, solcjs, anvil) is missing or failed
    │   ├── CompilerError         solc reported errors
    │   └── BackendUnavailable    a compute backend asked for by name (torch, cupy) has no GPU here
    ├── ArtifactError             compiled contract artifacts do not fit the sources
    │   ├── ArtifactMissing       no artifact for a contract: run ``python -m market.build``
    │   └── ArtifactStale         sources changed since the artifacts were built
    ├── ProtocolError             a protocol message is invalid
    │   ├── InvalidField          a field breaks its type's rule (range, length, checksum)
    │   ├── InvalidAddress        a string is not a 0x-prefixed 20-byte hex address (also a
    │   │                         ValueError)
    │   ├── InvalidKey            key bytes are no usable key: length, range, all zero, a
    │   │                         low-order point (also a ValueError)
    │   ├── InvalidSignature      a signature is malformed, malleable or from the wrong signer
    │   ├── DecodeError           bytes on the wire are not a valid message
    │   │   ├── FrameTooLarge     over the size limit, refused before parsing
    │   │   └── UnknownMessageType
    │   ├── SealError             a sealed payload cannot be opened (market.sealing)
    │   │   ├── SealMalformed     not a sealed payload of a layout this node reads
    │   │   └── SealTampered      authentication failed: altered, wrong key, or other lease/purpose
    │   └── ReceiptError          a receipt breaks its lease's chain rules (market.receipts);
    │       │                     sign no voucher for it
    │       ├── ReceiptWrongLease         its leaseId is another lease's (replayed)
    │       ├── ReceiptSignatureInvalid   not signed by the lease's provider
    │       ├── ReceiptChainBroken        seq does not follow, or prevHash does not link
    │       ├── ReceiptPeriodInvalid      period empty, not contiguous or outside the lease
    │       ├── ReceiptUsageDecreased     gpuSecondsCumulative went down
    │       ├── ReceiptUsageImpossible    more GPU-seconds than gpus x elapsed lease time
    │       └── ReceiptOutputMismatch     outputs do not match the committed outputRoot
    ├── AuditError                a spot check of the work itself failed (market.receipts)
    │   ├── WorkMismatch          re-executed segments differ from the provider's commitments
    │   └── ChallengeFailed       a hardware challenge was answered wrongly or too late
    ├── OrderError                an order cannot enter or stay in a book (market.matching)
    │   ├── OrderExpired          its expiry has passed
    │   ├── OrderCancelled        cancelled by hash, or its nonce is below the signer's floor
    │   ├── OrderFilled           nothing of it remains to fill
    │   ├── DuplicateOrder        the book already holds it
    │   ├── ProviderNotEligible   the offer's provider is unregistered or under-staked
    │   ├── LabUnfunded           the bid's lab holds or allows the market less than it may cost
    │   ├── SignerAtCapacity      its signer already holds its share of a relay's book
    │   └── BookFull              a relay's book is full and nobody holds more than its signer
    ├── AmountError               a token amount or price a person wrote cannot be used
    │   │                         (market.units)
    │   ├── AmountUnreadable      not digits with an optional fraction and the token's symbol
    │   ├── AmountTooPrecise      more decimals than the token has
    │   ├── AmountNegative        below zero
    │   └── PriceTooSmall         a per-GPU-hour price under one base unit per GPU-second
    ├── (NodeError and the daemons' errors live in nodes/errors.py)
    ├── DevnetError               the local anvil devnet could not start or died
    ├── DeploymentError           a deployment file is missing, malformed or for another chain
    └── ChainError                talking to an EVM node went wrong
        ├── RpcUnavailable        the JSON-RPC endpoint does not answer
        ├── RpcConnectionError    one request got no answer (also a ConnectionError: retried
        │                         until the RPC deadline, then RpcUnavailable)
        ├── RpcRefused            the endpoint answered a request with an error
        ├── WrongChain            the endpoint serves another chain id than expected
        ├── EventMissing          a mined transaction lacks the event its call always emits
        ├── ChainTimeNotReached   the chain's clock did not reach a time before the deadline
        ├── NonceUsed             signed bytes whose nonce is already mined: sign anew
        ├── TransactionTimeout    no receipt before the deadline
        └── TransactionReverted   the transaction (or its gas estimate) reverted
            ├── ContractError     a contract custom error, decoded with its arguments; one
            │                     subclass per error (market.chain.contract_errors)
            ├── ContractPanic     Panic(uint256): overflow, assertion
            └── ContractRevertMessage  Error(string)

Errors carry the values that explain them as attributes, and their messages say what to do.

Four classes also derive from a builtin exception, because callers (ours and others') check
arguments and parse addresses and keys with ``except ValueError`` / ``except TypeError``, as
Python's own functions raise them: :class:`InvalidArgument`, :class:`InvalidAddress` and
:class:`InvalidKey` are ValueErrors, :class:`WrongArgumentType` a TypeError. Catching MarketError
catches them all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

BUILD_COMMAND = "python -m market.build"


class MarketError(Exception):
    """Root of every error raised by gpumarket."""


class UsageError(MarketError):
    """A call broke its function's contract: the caller has a bug to fix; nothing was done."""


class InvalidArgument(UsageError, ValueError):
    """``argument`` (its ``value``) is outside the function's domain; the message says the rule."""

    def __init__(self, argument: str, value: object, message: str) -> None:
        self.argument = argument
        self.value = value
        super().__init__(message)


class WrongArgumentType(UsageError, TypeError):
    """``argument`` is a ``type_name``, which the function does not take."""

    def __init__(self, argument: str, type_name: str, message: str) -> None:
        self.argument = argument
        self.type_name = type_name
        super().__init__(message)


class NoAccount(UsageError):
    """A MarketClient made without a key was asked to sign or send."""

    def __init__(self) -> None:
        super().__init__("this client has no account: pass a key to act on-chain")


class AmountError(MarketError):
    """A token amount or price a person wrote (``text``) cannot be used; the message says how to
    write it."""

    def __init__(self, text: str, message: str) -> None:
        self.text = text
        super().__init__(message)


class AmountUnreadable(AmountError):
    """``text`` is not an amount: ``reason`` says what is wrong."""

    def __init__(self, text: str, reason: str) -> None:
        self.reason = reason
        super().__init__(text, f"cannot read the amount {text!r}: {reason}")


class AmountTooPrecise(AmountError):
    """``text`` has more decimals than the token's ``decimals``."""

    def __init__(self, text: str, decimals: int, symbol: str) -> None:
        self.decimals = decimals
        self.symbol = symbol
        super().__init__(
            text, f"{text} has more decimals than {symbol} has ({decimals}): round it to "
            f"{decimals} decimals"
        )  # fmt: skip


class AmountNegative(AmountError):
    """``text`` is below zero: amounts and prices are never negative."""

    def __init__(self, text: str) -> None:
        super().__init__(text, f"{text} is negative: amounts and prices are at least 0")


class PriceTooSmall(AmountError):
    """A price of ``per_hour`` base units per GPU-hour is under one base unit per GPU-second."""

    def __init__(self, per_hour: int, seconds: int) -> None:
        self.per_hour = per_hour
        super().__init__(
            str(per_hour), f"{per_hour} base units per GPU-hour is under 1 per GPU-second: "
            f"orders price per second, so ask at least {seconds} base units per GPU-hour"
        )  # fmt: skip


class ToolchainError(MarketError):
    """A pinned external tool is missing or failed to run."""


class CompilerError(ToolchainError):
    """The Solidity compiler reported errors."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("solc failed:\n" + "\n".join(messages))


class BackendUnavailable(ToolchainError):
    """The compute backend ``backend`` was asked for by name, but it (or a GPU for it) is not
    available here; ask for ``auto`` or ``numpy`` instead, or install it."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        super().__init__(
            f"{backend} with a GPU is not available here; install it or use backend 'auto'"
        )


class ArtifactError(MarketError):
    """Compiled contract artifacts are missing or do not match their sources."""


class ArtifactMissing(ArtifactError):
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        super().__init__(f"no artifact for contract {name!r} at {path}; run `{BUILD_COMMAND}`")


class ArtifactStale(ArtifactError):
    def __init__(self, name: str, changed: list[str]) -> None:
        self.name = name
        self.changed = changed
        super().__init__(
            f"artifact {name!r} is stale: {', '.join(changed)} changed since it was built; "
            f"run `{BUILD_COMMAND}`"
        )


class ProtocolError(MarketError):
    """A protocol message (order, voucher, lease, frame) is invalid."""


class InvalidField(ProtocolError):
    def __init__(self, message_type: str, field: str, reason: str) -> None:
        self.message_type = message_type
        self.field = field
        self.reason = reason
        super().__init__(f"{message_type}.{field} {reason}")


class InvalidAddress(ProtocolError, ValueError):
    """``value`` is not a 0x-prefixed 20-byte hex address."""

    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(f"not a 0x-prefixed 20-byte hex address: {value!r}")


class InvalidKey(ProtocolError, ValueError):
    """Bytes given as a ``kind`` key (``secp256k1 private``, ``X25519 public``...) are none."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class InvalidSignature(ProtocolError):
    """``expected`` did not sign ``digest`` (``recovered`` is who did, or None if unrecoverable)."""

    def __init__(self, digest: bytes, expected: str, recovered: str | None, reason: str) -> None:
        self.digest = digest
        self.expected = expected
        self.recovered = recovered
        self.reason = reason
        super().__init__(f"signature over 0x{digest.hex()} is not {expected}'s: {reason}")


class DecodeError(ProtocolError):
    """Bytes received are not a valid protocol message; nothing was changed."""


class FrameTooLarge(DecodeError):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"frame of {size} bytes exceeds the {limit}-byte limit")


class UnknownMessageType(DecodeError):
    def __init__(self, type_name: object) -> None:
        self.type_name = type_name
        super().__init__(f"unknown message type {type_name!r}")


class SealError(ProtocolError):
    """A sealed payload cannot be opened; nothing of its plaintext is revealed."""


class SealMalformed(SealError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"not a sealed payload this node reads: {reason}")


class SealTampered(SealError):
    """The AEAD tag does not verify: the bytes were altered, or the key, lease or purpose differ."""

    def __init__(self) -> None:
        super().__init__(
            "sealed payload failed authentication: it was altered, sealed to another key, or "
            "bound to another lease or purpose; ask the sender to seal it again"
        )


class ReceiptError(ProtocolError):
    """Receipt ``seq`` breaks a rule of its lease's chain; sign no voucher for it or later ones."""

    def __init__(self, seq: int, message: str) -> None:
        self.seq = seq
        super().__init__(f"receipt {seq}: {message}")


class ReceiptWrongLease(ReceiptError):
    def __init__(self, seq: int, expected: bytes, actual: bytes) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            seq,
            f"is for lease 0x{actual.hex()}, not 0x{expected.hex()}; "
            "a receipt replayed from another lease pays for nothing here",
        )


class ReceiptSignatureInvalid(ReceiptError):
    """Not the signature of the lease's receipt key (the provider's own unless its offer named
    another; ``recovered`` is who signed, None if unrecoverable)."""

    def __init__(
        self, seq: int, digest: bytes, expected: str, recovered: str | None, reason: str
    ) -> None:
        self.digest = digest
        self.expected = expected
        self.recovered = recovered
        self.reason = reason
        super().__init__(
            seq,
            f"signature over 0x{digest.hex()} is not the lease's receipt key {expected}'s: "
            f"{reason}",
        )


class ReceiptChainBroken(ReceiptError):
    """``seq`` is not the one expected, or ``prev_hash`` is not the previous receipt's hash."""

    def __init__(
        self, seq: int, expected_seq: int, prev_hash: bytes, expected_prev_hash: bytes
    ) -> None:
        self.expected_seq = expected_seq
        self.prev_hash = prev_hash
        self.expected_prev_hash = expected_prev_hash
        why = (
            f"expected seq {expected_seq}; a receipt is missing, repeated or out of order"
            if seq != expected_seq
            else f"prevHash 0x{prev_hash.hex()} does not link to 0x{expected_prev_hash.hex()}"
        )
        super().__init__(seq, why)


class ReceiptPeriodInvalid(ReceiptError):
    """The period must start at ``expected_start`` (None: anywhere from the lease start), be
    non-empty and end by ``lease_end``."""

    def __init__(
        self,
        seq: int,
        period_start: int,
        period_end: int,
        expected_start: int | None,
        lease_end: int,
        reason: str,
    ) -> None:
        self.period_start = period_start
        self.period_end = period_end
        self.expected_start = expected_start
        self.lease_end = lease_end
        self.reason = reason
        super().__init__(seq, f"period [{period_start}, {period_end}] {reason}")


class ReceiptUsageDecreased(ReceiptError):
    def __init__(self, seq: int, previous: int, current: int) -> None:
        self.previous = previous
        self.current = current
        super().__init__(
            seq, f"gpuSecondsCumulative fell from {previous} to {current}; usage only grows"
        )


class ReceiptUsageImpossible(ReceiptError):
    """More GPU-seconds than ``gpus`` x ``elapsed`` (periodEnd - lease start): slashable."""

    def __init__(self, seq: int, gpu_seconds: int, gpus: int, elapsed: int) -> None:
        self.gpu_seconds = gpu_seconds
        self.gpus = gpus
        self.elapsed = elapsed
        self.limit = gpus * elapsed
        super().__init__(
            seq,
            f"claims {gpu_seconds} GPU-seconds, more than {gpus} GPUs x {elapsed} s = "
            f"{self.limit}; keep it as evidence of impossible usage",
        )


class ReceiptOutputMismatch(ReceiptError):
    """The outputs do not hash to ``output_root``; ``chunk_index`` names a chunk whose proof
    failed, or is None when the whole set was compared (``computed_root`` is its root)."""

    def __init__(
        self,
        seq: int,
        output_root: bytes,
        computed_root: bytes | None,
        chunk_index: int | None = None,
    ) -> None:
        self.output_root = output_root
        self.computed_root = computed_root
        self.chunk_index = chunk_index
        what = (
            f"output chunk {chunk_index} is not under"
            if chunk_index is not None
            else f"outputs have root 0x{(computed_root or bytes(32)).hex()}, not"
        )
        super().__init__(seq, f"{what} the committed outputRoot 0x{output_root.hex()}")


class AuditError(MarketError):
    """A spot check of the work failed: sign no more vouchers and record it against the provider."""


class WorkMismatch(AuditError):
    """Re-executing the ``sampled`` segments gave other outputs for the ``mismatched`` ones."""

    def __init__(
        self, receipt_hash: bytes, sampled: tuple[int, ...], mismatched: tuple[int, ...]
    ) -> None:
        self.receipt_hash = receipt_hash
        self.sampled = sampled
        self.mismatched = mismatched
        super().__init__(
            f"receipt 0x{receipt_hash.hex()}: {len(mismatched)} of {len(sampled)} re-executed "
            f"segments differ (first: {list(mismatched[:8])}); the work was not done as committed"
        )


class ChallengeFailed(AuditError):
    """A hardware challenge's answer was wrong (``correct`` False) or later than its deadline."""

    def __init__(
        self, seed: bytes, gpu_class: str, correct: bool, elapsed_s: float, deadline_s: float
    ) -> None:
        self.seed = seed
        self.gpu_class = gpu_class
        self.correct = correct
        self.elapsed_s = elapsed_s
        self.deadline_s = deadline_s
        why = (
            "the product is wrong"
            if not correct
            else f"took {elapsed_s:.3f} s, over the {deadline_s:.3f} s deadline"
        )
        super().__init__(
            f"challenge 0x{seed.hex()} for {gpu_class}: {why}; the GPUs are not what was offered"
        )


class OrderError(MarketError):
    """A signed order cannot enter an order book, or cannot stay in one; the book is unchanged."""

    def __init__(self, order_hash: bytes, message: str) -> None:
        self.order_hash = order_hash
        super().__init__(f"order 0x{order_hash.hex()}: {message}")


class OrderExpired(OrderError):
    def __init__(self, order_hash: bytes, expiry: int, now: int) -> None:
        self.expiry = expiry
        self.now = now
        super().__init__(order_hash, f"expired at {expiry} (now {now}); sign a fresh order")


class OrderCancelled(OrderError):
    """Cancelled by hash (``min_nonce`` is None) or by its signer raising the nonce floor."""

    def __init__(self, order_hash: bytes, nonce: int, min_nonce: int | None = None) -> None:
        self.nonce = nonce
        self.min_nonce = min_nonce
        why = (
            "cancelled by its signer"
            if min_nonce is None
            else f"nonce {nonce} is below its signer's floor {min_nonce}"
        )
        super().__init__(order_hash, why)


class OrderFilled(OrderError):
    def __init__(self, order_hash: bytes, size: int) -> None:
        self.size = size
        super().__init__(order_hash, f"all {size} GPUs are already filled")


class DuplicateOrder(OrderError):
    def __init__(self, order_hash: bytes) -> None:
        super().__init__(order_hash, "already in the book")


class ProviderNotEligible(OrderError):
    """The offer's provider is not registered (``free_stake`` None) or its free stake is low."""

    def __init__(
        self, order_hash: bytes, provider: str, free_stake: int | None, min_stake: int
    ) -> None:
        self.provider = provider
        self.free_stake = free_stake
        self.min_stake = min_stake
        why = (
            f"provider {provider} is not registered"
            if free_stake is None
            else f"provider {provider} has free stake {free_stake}, below the minimum {min_stake}"
        )
        super().__init__(order_hash, why)


class LabUnfunded(OrderError):
    """The bid could cost ``needed`` (its maximum price x GPUs x duration), more than its lab's
    token ``balance`` or its ``allowance`` to the Market: ``openLease`` would revert."""

    def __init__(
        self, order_hash: bytes, lab: str, needed: int, balance: int, allowance: int
    ) -> None:
        self.lab = lab
        self.needed = needed
        self.balance = balance
        self.allowance = allowance
        super().__init__(
            order_hash,
            f"lab {lab} may owe {needed} but holds {balance} and allows the market {allowance}; "
            "fund the lab and approve the market for at least the bid's cost",
        )


class SignerAtCapacity(OrderError):
    """The signer already holds ``held`` orders in the relay's book, its share ``share``."""

    def __init__(self, order_hash: bytes, signer: str, held: int, share: int) -> None:
        self.signer = signer
        self.held = held
        self.share = share
        super().__init__(
            order_hash,
            f"{signer} holds {held} orders in this book, its share is {share}; "
            "cancel or let some expire first",
        )


class BookFull(OrderError):
    """The relay's book holds ``capacity`` orders and no signer holds more than this one's."""

    def __init__(self, order_hash: bytes, capacity: int) -> None:
        self.capacity = capacity
        super().__init__(
            order_hash, f"the book is full ({capacity} orders); retry later or at another relay"
        )


class DevnetError(MarketError):
    """The local anvil devnet could not be started, or stopped answering."""


class DeploymentError(MarketError):
    """A deployment file is missing or malformed, or names another chain."""


class ChainError(MarketError):
    """Talking to an EVM JSON-RPC endpoint went wrong."""


class RpcUnavailable(ChainError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"JSON-RPC endpoint {url} is unavailable: {reason}")


class RpcConnectionError(ChainError, ConnectionError):
    """One request to ``url`` got no answer (refused, reset, timed out, cut short): ``reason``.
    A ``ConnectionError``, so ``market.chain.retry`` retries it like ``requests``' own."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url} did not answer: {reason}")


class RpcRefused(ChainError):
    """The endpoint answered ``what`` with ``error`` (the JSON-RPC error, or the whole answer
    when it refused a batch)."""

    def __init__(self, url: str, what: str, error: object) -> None:
        self.url = url
        self.what = what
        self.error = error
        super().__init__(f"{what} refused by {url}: {error}")


class EventMissing(ChainError):
    """``what`` was mined without ``event``, which the contract emits on every success: the
    deployment is not the market this client was built for."""

    def __init__(self, what: str, event: str, tx_hash: str | None = None) -> None:
        self.what = what
        self.event = event
        self.tx_hash = tx_hash
        super().__init__(
            f"{what} succeeded without a {event} event; check the deployment file names this "
            "market's contracts"
        )


class ChainTimeNotReached(ChainError):
    def __init__(self, timestamp: int, timeout_s: float) -> None:
        self.timestamp = timestamp
        self.timeout_s = timeout_s
        super().__init__(
            f"chain time did not reach {timestamp} within {timeout_s}s; is the chain mining?"
        )


class WrongChain(ChainError):
    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"expected chain id {expected}, the endpoint serves {actual}")


class NonceUsed(ChainError):
    """The node refused signed bytes because their nonce is already used (mined): they can never be
    mined. Read the nonce again (:meth:`Transactor.resync_nonce`) and sign anew."""

    def __init__(self, address: str, nonce: int) -> None:
        self.address = address
        self.nonce = nonce
        super().__init__(
            f"nonce {nonce} of {address} is already used, so this transaction can never be mined; "
            "resync the nonce and sign again"
        )


class TransactionTimeout(ChainError):
    def __init__(self, tx_hash: str, timeout_s: float) -> None:
        self.tx_hash = tx_hash
        self.timeout_s = timeout_s
        super().__init__(f"no receipt for {tx_hash} within {timeout_s}s; it may still be mined")


class TransactionReverted(ChainError):
    """A transaction or its gas estimate reverted; ``data`` is the raw revert data."""

    def __init__(self, what: str, data: bytes, tx_hash: str | None = None) -> None:
        self.what = what
        self.data = data
        self.tx_hash = tx_hash
        super().__init__(f"{what} reverted (data 0x{data.hex()})")


class ContractError(TransactionReverted):
    """A contract custom error with its decoded arguments.

    One subclass per error in the contracts' ABIs lives in ``market.chain.contract_errors``
    (generated by ``python -m market.build``); each has the error's parameters as attributes.
    """

    SIGNATURE: str = ""
    SELECTOR: bytes = b""
    PARAMS: tuple[tuple[str, str], ...] = ()

    def __init__(self, what: str, values: tuple[object, ...], tx_hash: str | None = None) -> None:
        self.values = values
        shown = ", ".join(
            f"{name}={_show(value)}" for (name, _), value in zip(self.PARAMS, values, strict=True)
        )
        self.what = what
        self.data = b""
        self.tx_hash = tx_hash
        Exception.__init__(self, f"{what} reverted: {type(self).__name__}({shown})")

    @classmethod
    def from_values(
        cls, values: Sequence[object], what: str, tx_hash: str | None = None
    ) -> ContractError:
        """Build from decoded ABI values in parameter order (as ``decode_revert`` does)."""
        exc = cls.__new__(cls)
        for (name, _), value in zip(cls.PARAMS, values, strict=True):
            setattr(exc, name, value)
        ContractError.__init__(exc, what, tuple(values), tx_hash)
        return exc


class ContractPanic(TransactionReverted):
    """A Solidity panic (``Panic(uint256)``): an assertion, overflow or bad index in a contract."""

    def __init__(self, what: str, code: int, tx_hash: str | None = None) -> None:
        self.code = code
        self.what = what
        self.data = b""
        self.tx_hash = tx_hash
        Exception.__init__(self, f"{what} reverted with panic 0x{code:02x}")


class ContractRevertMessage(TransactionReverted):
    """A revert with a reason string (``Error(string)``)."""

    def __init__(self, what: str, reason: str, tx_hash: str | None = None) -> None:
        self.reason = reason
        self.what = what
        self.data = b""
        self.tx_hash = tx_hash
        Exception.__init__(self, f"{what} reverted: {reason}")


def _show(value: object) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else repr(value)
