"""A lease's output on the lab's disk, and a streamed period's chunks as they arrive.

A period's output arrives inline in the ``ReceiptBatch`` (small; stored in the receipt's row) or
streamed: ``POST /v1/outputs`` answers its chunks in order, each sealed to the lab for its lease,
seq and index (:func:`~market.sealing.chunk_associated_data`) with its Merkle proof under the
receipt's ``outputRoot``. :func:`open_chunks` opens and proves an answer's chunks before a byte
of them is written; :class:`PeriodFile` appends them to ``<outputs>/<lease>/<seq>.out`` and
syncs, after which the lab records the progress (:meth:`~nodes.lab.store.LabStore.advance_stream`)
— so after a crash the file is cut back to the recorded size and the fetch resumes from the next
chunk, never fetching a verified chunk again.

:class:`LeaseOutput` reads the output accepted so far, inline and streamed, as one stream (what
an output check resumes from after a restart) without loading it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from market.protocol.types import Receipt
from market.receipts.verify import check_chunk
from market.sealing import chunk_associated_data, open_sealed
from nodes.wire import OutputChunk

FEED_BYTES: Final = 4 * 1024 * 1024
"""A streamed period is fed to the output check in pieces of at most this many bytes."""


def open_chunks(
    private_key: bytes, receipt: Receipt, first: int, chunks: Sequence[OutputChunk]
) -> list[bytes]:
    """The plaintexts of chunks ``first``, ``first + 1``, ... of ``receipt``'s output, each
    opened for its own place (SealTampered for a chunk sealed for another lease, seq or index)
    and proved under the receipt's ``outputRoot`` (ReceiptOutputMismatch naming the chunk)."""
    out: list[bytes] = []
    for i, chunk in enumerate(chunks):
        index = first + i
        aad = chunk_associated_data(receipt.lease_id, receipt.seq, index)
        data = open_sealed(private_key, chunk.sealed, aad)
        check_chunk(receipt, index, data, chunk.proof)
        out.append(data)
    return out


def period_path(folder: Path, lease_id: bytes, seq: int) -> Path:
    """Where streamed period ``seq`` of the lease is stored."""
    return folder / lease_id.hex() / f"{seq}.out"


class PeriodFile:
    """A streamed period's file, cut back to ``size`` (the bytes recorded as verified)."""

    def __init__(self, path: Path, size: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with path.open("ab") as f:  # create it; then cut what a crash left past ``size``
            f.truncate(size)
        self.size = size

    def append(self, chunks: Sequence[bytes]) -> int:
        """Write and sync ``chunks``; returns the new size (record it only after this)."""
        with self.path.open("ab") as f:
            for data in chunks:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.size += sum(len(c) for c in chunks)
        return self.size

    def pieces(self, start: int, piece: int = FEED_BYTES) -> Iterator[bytes]:
        """The file from byte ``start`` on, ``piece`` bytes at a time."""
        with self.path.open("rb") as f:
            f.seek(start)
            while data := f.read(piece):
                yield data


@dataclass(frozen=True, slots=True)
class _Part:
    inline: bytes
    path: Path | None
    size: int


class LeaseOutput:
    """The output accepted for a lease, in seq order, read on demand (inline parts from the
    store, streamed ones from their files)."""

    def __init__(
        self, folder: Path, lease_id: bytes, parts: Sequence[tuple[int, bytes, int | None]]
    ):
        self._parts = [
            _Part(data, None, len(data))
            if size is None
            else _Part(b"", period_path(folder, lease_id, seq), size)
            for seq, data, size in parts
        ]
        self.size = sum(p.size for p in self._parts)

    def tail(self, n: int) -> bytes:
        """The last ``n`` bytes (fewer when there are fewer)."""
        out: list[bytes] = []
        left = n
        for part in reversed(self._parts):
            if left <= 0:
                break
            take = min(left, part.size)
            if part.path is None:
                out.append(part.inline[part.size - take :])
            else:
                with part.path.open("rb") as f:
                    f.seek(part.size - take)
                    out.append(f.read(take))
            left -= take
        return b"".join(reversed(out))


__all__ = ["FEED_BYTES", "LeaseOutput", "PeriodFile", "open_chunks", "period_path"]
