"""Every error gpumarket raises derives from :class:`MarketError`.

The tree::

    MarketError
    ├── ToolchainError            a pinned tool (node, solcjs, anvil) is missing or failed
    │   └── CompilerError         solc reported errors
    ├── ArtifactError             compiled contract artifacts do not fit the sources
    │   ├── ArtifactMissing       no artifact for a contract: run ``python -m market.build``
    │   └── ArtifactStale         sources changed since the artifacts were built
    ├── ProtocolError             a protocol message is invalid
    │   ├── InvalidField          a field breaks its type's rule (range, length, checksum)
    │   ├── InvalidSignature      a signature is malformed, malleable or from the wrong signer
    │   └── DecodeError           bytes on the wire are not a valid message
    │       ├── FrameTooLarge     over the size limit, refused before parsing
    │       └── UnknownMessageType
    ├── DevnetError               the local anvil devnet could not start or died
    ├── DeploymentError           a deployment file is missing, malformed or for another chain
    └── ChainError                talking to an EVM node went wrong
        ├── RpcUnavailable        the JSON-RPC endpoint does not answer
        ├── WrongChain            the endpoint serves another chain id than expected
        ├── TransactionTimeout    no receipt before the deadline
        └── TransactionReverted   the transaction (or its gas estimate) reverted
            ├── ContractError     a contract custom error, decoded with its arguments; one
            │                     subclass per error (market.chain.contract_errors)
            ├── ContractPanic     Panic(uint256): overflow, assertion
            └── ContractRevertMessage  Error(string)

Errors carry the values that explain them as attributes, and their messages say what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

BUILD_COMMAND = "python -m market.build"


class MarketError(Exception):
    """Root of every error raised by gpumarket."""


class ToolchainError(MarketError):
    """A pinned external tool is missing or failed to run."""


class CompilerError(ToolchainError):
    """The Solidity compiler reported errors."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("solc failed:\n" + "\n".join(messages))


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


class WrongChain(ChainError):
    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"expected chain id {expected}, the endpoint serves {actual}")


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
