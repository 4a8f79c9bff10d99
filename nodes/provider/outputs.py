"""A period's output on the provider's disk: a byte range of the job's output file.

The job appends to its output file; each receipt commits what was appended during its period,
all of it. Up to :data:`INLINE_OUTPUT` bytes travel inline in the ``ReceiptBatch`` (sealed, cut
into :data:`~nodes.provider.metering.CHUNK_SIZE` chunks); more is *streamed*: the receipt's
``outputRoot`` commits :data:`STREAM_CHUNK`-byte chunks of the file's range, whose hashes (32
bytes a chunk, not the bytes) are stored with the receipt, and the lab fetches the chunks with
their proofs (``POST /v1/outputs``). The bytes stay in the file, which the job wrote anyway:
a 256 MiB output costs 8 KiB of database.

    stream = StreamedOutput.of_file(path, start=offset, size=appended, chunk_size=STREAM_CHUNK)
    root = stream.tree().root                  # the receipt's outputRoot
    data = stream.read_chunk(path, 3)          # chunk 3, checked against its stored hash
                                               # (OutputUnavailable when it changed on disk)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from market.receipts.merkle import MerkleTree, chunk_hash
from nodes.errors import OutputUnavailable

INLINE_OUTPUT: Final = 1024 * 1024
"""A period with at most this much output sends it inline; more is streamed."""
STREAM_CHUNK: Final = 1024 * 1024
"""Bytes of a streamed output chunk (the last one of a period may be shorter)."""


@dataclass(frozen=True, slots=True)
class StreamedOutput:
    """``size`` bytes of the output file from ``start``, in ``chunk_size`` chunks with
    ``hashes`` (keccak256 of each, in order)."""

    start: int
    size: int
    chunk_size: int
    hashes: tuple[bytes, ...]

    @classmethod
    def of_file(cls, path: Path, *, start: int, size: int, chunk_size: int) -> StreamedOutput:
        """Hash the range chunk by chunk (one chunk in memory at a time)."""
        if size <= 0 or chunk_size <= 0:
            raise ValueError(
                f"a streamed output needs bytes and a chunk size: {size}, {chunk_size}"
            )
        hashes: list[bytes] = []
        with path.open("rb") as f:
            f.seek(start)
            left = size
            while left > 0:
                data = f.read(min(chunk_size, left))
                if not data:
                    raise OutputUnavailable(str(path), f"ends {left} bytes before {start + size}")
                hashes.append(chunk_hash(data))
                left -= len(data)
        return cls(start, size, chunk_size, tuple(hashes))

    @classmethod
    def of_row(cls, start: int, size: int, chunk_size: int, hashes: bytes) -> StreamedOutput:
        return cls(
            start, size, chunk_size, tuple(hashes[i : i + 32] for i in range(0, len(hashes), 32))
        )

    @property
    def count(self) -> int:
        return len(self.hashes)

    def packed_hashes(self) -> bytes:
        return b"".join(self.hashes)

    def tree(self) -> MerkleTree:
        return MerkleTree(self.hashes)

    def read_chunk(self, path: Path, index: int) -> bytes:
        """Chunk ``index`` from the file; OutputUnavailable when the file no longer holds it."""
        if not 0 <= index < self.count:
            raise IndexError(f"chunk {index} is not in a stream of {self.count}")
        offset = index * self.chunk_size
        length = min(self.chunk_size, self.size - offset)
        try:
            with path.open("rb") as f:
                f.seek(self.start + offset)
                data = f.read(length)
        except OSError as exc:
            raise OutputUnavailable(str(path), f"cannot read output chunk {index}: {exc}") from exc
        if chunk_hash(data) != self.hashes[index]:
            raise OutputUnavailable(str(path), f"output chunk {index} changed since its receipt")
        return data


__all__ = ["INLINE_OUTPUT", "STREAM_CHUNK", "StreamedOutput"]
