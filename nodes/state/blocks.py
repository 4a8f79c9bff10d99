"""The hashes of the last blocks a daemon applied, kept beside its event cursor in one value.

``market.chain.forks`` compares them with the chain's to notice a reorganisation deeper than the
daemon's ``confirmations``. The window is a handful of (number, hash) pairs packed in a blob (8
bytes of number, 32 of hash each), so the provider's and the lab's stores keep it in their
key-value tables without a migration.
"""

from __future__ import annotations

from collections.abc import Mapping

from market.chain.forks import WINDOW
from market.errors import InvalidArgument
from nodes.errors import StoreError

_ENTRY = 8 + 32


def pack(blocks: Mapping[int, bytes]) -> bytes:
    return b"".join(n.to_bytes(8, "big") + blocks[n] for n in sorted(blocks))


def unpack(raw: bytes | None, where: str = "state") -> dict[int, bytes]:
    """The window ``pack`` wrote (empty for None); StoreError naming ``where`` if malformed."""
    if raw is None:
        return {}
    if len(raw) % _ENTRY:
        raise StoreError(where, f"applied blocks: {len(raw)} bytes is not a whole window")
    entries = (raw[i : i + _ENTRY] for i in range(0, len(raw), _ENTRY))
    return {int.from_bytes(e[:8], "big"): bytes(e[8:]) for e in entries}


def remember(
    blocks: Mapping[int, bytes], number: int, block_hash: bytes, window: int = WINDOW
) -> dict[int, bytes]:
    """``blocks`` with ``number`` applied, keeping the blocks of the last ``window`` numbers."""
    if len(block_hash) != 32:
        raise InvalidArgument(
            "block_hash", block_hash, f"a block hash is 32 bytes, not {len(block_hash)}"
        )
    kept = {n: h for n, h in blocks.items() if number - window < n < number}
    kept[number] = block_hash
    return kept


def before(blocks: Mapping[int, bytes], fork: int) -> dict[int, bytes]:
    """The blocks a reorganisation from ``fork`` on left in place."""
    return {n: h for n, h in blocks.items() if n < fork}


__all__ = ["before", "pack", "remember", "unpack"]
