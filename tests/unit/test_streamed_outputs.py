"""Streamed outputs: the provider commits a file range by its chunk hashes and serves chunks
from the file; the lab opens and proves each chunk for its own place before storing it, keeps
its progress across a crash and reads the accepted output back from disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from market.errors import ReceiptOutputMismatch, SealTampered
from market.protocol.eip712 import order_hash
from market.protocol.types import Bid, Lease, Receipt
from market.receipts import ReceiptChain, ReceiptVerifier, output_root
from market.receipts.merkle import MerkleTree, chunk
from market.sealing import chunk_associated_data, generate_keypair, seal
from nodes.errors import OutputUnavailable
from nodes.jobs.spec import CommandParams, JobSpec
from nodes.lab.checks import BytesOutput, CommandCheck, OutputCheckFailed
from nodes.lab.outputs import LeaseOutput, PeriodFile, open_chunks, period_path
from nodes.lab.provider_client import MAX_BATCH_SIZE
from nodes.lab.store import LAB_MIGRATIONS, LabStore
from nodes.logs import get_logger
from nodes.provider import Meter
from nodes.provider.outputs import STREAM_CHUNK, StreamedOutput
from nodes.provider.service import ProviderService, Refused
from nodes.provider.store import AgentStore
from nodes.provider.work import ProviderMetrics
from nodes.state import Records, StateDB
from nodes.wire import ErrorCode, OutputChunk, OutputQuery, encode
from tests.unit.order_factory import DOMAIN, LAB_KEYS, PROVIDER_KEYS

pytestmark = pytest.mark.unit

PROVIDER, LAB = PROVIDER_KEYS[0], LAB_KEYS[0]
LEASE = Lease(PROVIDER.address, LAB.address, 2, 7, 1_000, 3_600, b"\x05" * 32)
KEYS = generate_keypair()
SIZE = 64  # a small chunk size, so that a few hundred bytes make many chunks
DATA = bytes((i * 7 + i // 256) % 256 for i in range(10 * SIZE + 17))  # 11 chunks, last short


@pytest.fixture
def output_file(tmp_path: Path) -> Path:
    path = tmp_path / "stdout"
    path.write_bytes(b"x" * 100 + DATA + b"later")  # the range starts at 100 and stops early
    return path


def _stream(path: Path) -> StreamedOutput:
    return StreamedOutput.of_file(path, start=100, size=len(DATA), chunk_size=SIZE)


def _receipt(root: bytes, seq: int = 0) -> Receipt:
    chain = ReceiptChain(PROVIDER, DOMAIN, LEASE)
    signed = chain.append(1_060, 120, output_root=root)
    for _ in range(seq):
        signed = chain.append(signed.message.period_end + 60, 120, output_root=root)
    return signed.message


def _served(receipt: Receipt, chunks: list[bytes], tree: MerkleTree) -> list[OutputChunk]:
    """What an honest provider answers: each chunk sealed for its place, with its proof."""
    return [
        OutputChunk(
            seal(KEYS.public, data, chunk_associated_data(receipt.lease_id, receipt.seq, i)),
            tuple(tree.proof(i)),
        )
        for i, data in enumerate(chunks)
    ]


# --- the provider's side -----------------------------------------------------------------------


def test_a_streamed_range_commits_the_same_root_as_its_chunks_in_memory(output_file: Path) -> None:
    stream = _stream(output_file)
    assert stream.count == 11
    assert stream.tree().root == output_root(chunk(DATA, SIZE))
    assert [stream.read_chunk(output_file, i) for i in range(11)] == chunk(DATA, SIZE)
    again = StreamedOutput.of_row(100, len(DATA), SIZE, stream.packed_hashes())
    assert again == stream


def test_a_chunk_changed_on_disk_since_its_receipt_is_not_served(output_file: Path) -> None:
    stream = _stream(output_file)
    raw = bytearray(output_file.read_bytes())
    raw[100 + 3 * SIZE] ^= 1
    output_file.write_bytes(bytes(raw))
    with pytest.raises(OutputUnavailable, match="chunk 3 changed since its receipt"):
        stream.read_chunk(output_file, 3)
    assert stream.read_chunk(output_file, 2) == DATA[2 * SIZE : 3 * SIZE]


def test_a_range_past_the_end_of_the_file_is_refused(output_file: Path) -> None:
    with pytest.raises(OutputUnavailable, match="ends 1 bytes before"):
        StreamedOutput.of_file(output_file, start=100, size=len(DATA) + 6, chunk_size=SIZE)


def test_a_streamed_period_signs_its_root_and_states_its_size(
    tmp_path: Path, output_file: Path
) -> None:
    db = StateDB.open(tmp_path / "state.sqlite")
    try:
        meter = Meter.resume(Records(db, DOMAIN), PROVIDER, DOMAIN, LEASE)
        with pytest.raises(ValueError, match="inline or streamed"):
            meter.close_period(1_060, 1.0, b"inline", streamed=_stream(output_file))
        period = meter.close_period(1_060, 1.0, streamed=_stream(output_file))
    finally:
        db.close()
    assert period.receipt.message.output_root == output_root(chunk(DATA, SIZE))
    assert msgpack.unpackb(period.metrics)["outputBytes"] == len(DATA)
    ReceiptVerifier(DOMAIN, LEASE).accept(period.receipt, chunk(DATA, SIZE))


# --- the lab's side: each chunk opened and proved for its own place ----------------------------


def test_honest_chunks_open_and_prove_from_any_starting_index() -> None:
    chunks = chunk(DATA, SIZE)
    tree = MerkleTree.of_chunks(chunks)
    receipt = _receipt(tree.root)
    served = _served(receipt, chunks, tree)
    assert open_chunks(KEYS.private, receipt, 0, served[:4]) == chunks[:4]
    assert open_chunks(KEYS.private, receipt, 4, served[4:]) == chunks[4:]


def test_a_chunk_answered_at_another_index_does_not_open() -> None:
    chunks = chunk(DATA, SIZE)
    tree = MerkleTree.of_chunks(chunks)
    receipt = _receipt(tree.root)
    served = _served(receipt, chunks, tree)
    with pytest.raises(SealTampered):
        open_chunks(KEYS.private, receipt, 0, [served[1], served[0]])  # swapped
    with pytest.raises(SealTampered):
        open_chunks(KEYS.private, receipt, 3, served[2:3])  # replayed at the next index


def test_a_chunk_of_another_period_does_not_open() -> None:
    chunks = chunk(DATA, SIZE)
    tree = MerkleTree.of_chunks(chunks)
    other = _served(_receipt(tree.root, seq=1), chunks, tree)
    with pytest.raises(SealTampered):
        open_chunks(KEYS.private, _receipt(tree.root), 0, other[:1])


def test_a_tampered_ciphertext_does_not_open() -> None:
    chunks = chunk(DATA, SIZE)
    tree = MerkleTree.of_chunks(chunks)
    receipt = _receipt(tree.root)
    served = _served(receipt, chunks, tree)
    bad = bytearray(served[2].sealed)
    bad[-20] ^= 1
    with pytest.raises(SealTampered):
        open_chunks(KEYS.private, receipt, 2, [OutputChunk(bytes(bad), served[2].proof)])


def test_wrong_bytes_sealed_for_the_right_place_fail_their_proof_naming_the_chunk() -> None:
    chunks = chunk(DATA, SIZE)
    tree = MerkleTree.of_chunks(chunks)
    receipt = _receipt(tree.root)
    # The provider seals chunk 6's bytes as chunk 5 (the seal is fine: it seals what it likes).
    forged = OutputChunk(
        seal(KEYS.public, chunks[6], chunk_associated_data(receipt.lease_id, 0, 5)),
        tuple(tree.proof(6)),
    )
    with pytest.raises(ReceiptOutputMismatch) as caught:
        open_chunks(KEYS.private, receipt, 5, [forged])
    assert caught.value.chunk_index == 5


# --- the lab's side: on disk, resumable ------------------------------------------------------


def test_a_period_file_is_cut_back_to_the_recorded_size_after_a_crash(tmp_path: Path) -> None:
    path = period_path(tmp_path, LEASE.id, 3)
    file = PeriodFile(path, 0)
    assert file.append([b"abc", b"def"]) == 6
    with path.open("ab") as f:
        f.write(b"half a chunk")  # written, but the crash came before its progress was recorded
    resumed = PeriodFile(path, 6)
    assert path.read_bytes() == b"abcdef"
    assert resumed.append([b"gh"]) == 8
    assert list(resumed.pieces(2, piece=4)) == [b"cdef", b"gh"]


def test_lease_output_reads_inline_and_streamed_parts_as_one_stream(tmp_path: Path) -> None:
    PeriodFile(period_path(tmp_path, LEASE.id, 1), 0).append([b"0123456789"])
    output = LeaseOutput(tmp_path, LEASE.id, [(0, b"abc", None), (1, b"", 10), (2, b"xy", None)])
    assert output.size == 15
    assert output.tail(4) == b"89xy"
    assert output.tail(13) == b"c0123456789xy"
    assert output.tail(99) == b"abc0123456789xy"


def test_a_command_check_compares_pieces_with_the_rerun_by_range(tmp_path: Path) -> None:
    class Rerun:  # a finished rerun that wrote DATA
        done = True
        cut = False

        def read(self, start: int, n: int) -> bytes:
            return DATA[start : start + n]

        def size(self) -> int:
            return len(DATA)

    check = CommandCheck(Rerun())  # type: ignore[arg-type]
    check.resume(BytesOutput(DATA[:100]))
    for start in range(100, len(DATA), 64):
        check.feed(0, b"", DATA[start : start + 64])
    assert check.complete
    wrong = CommandCheck(Rerun())  # type: ignore[arg-type]
    with pytest.raises(OutputCheckFailed, match="output at byte 5 differs from the rerun"):
        wrong.feed(0, b"", DATA[:5] + b"!" + DATA[6:40])


@pytest.fixture
def lab_store(tmp_path: Path) -> Iterator[LabStore]:
    db = StateDB.open(tmp_path / "lab.sqlite", migrations=LAB_MIGRATIONS)
    store = LabStore(db, DOMAIN)
    spec = JobSpec(KEYS.public, CommandParams(("python", "-c", "print(1)")))
    bid = LAB.sign(DOMAIN, Bid(LAB.address, "H100-80GB", 2, 9, 3_600, 10_000, 1, spec.hash))
    store.save_job(0, spec, bid, order_hash(DOMAIN, bid.message))
    store.save_lease(LEASE, 0, b"\x01" * 32)
    yield store
    db.close()


def test_stream_progress_only_moves_forward_and_counts_in_the_output(lab_store: LabStore) -> None:
    chain = ReceiptChain(PROVIDER, DOMAIN, LEASE)
    r0 = chain.append(1_060, 120)
    r1 = chain.append(1_120, 240, output_root=b"\x09" * 32)
    lab_store.accept_receipt(r0, b"inline")
    started = lab_store.begin_stream(r1, 4)
    assert (started.chunks, started.next_chunk, started.size, started.complete) == (4, 0, 0, False)
    lab_store.advance_stream(LEASE.id, 1, 3, 300)
    lab_store.advance_stream(LEASE.id, 1, 2, 200)  # a stale advance changes nothing
    fork = ReceiptChain(PROVIDER, DOMAIN, LEASE, head=r0).append(1_120, 230)
    again = lab_store.begin_stream(fork, 5)  # the one begun stands: the caller compares them
    assert (again.signed, again.chunks, again.next_chunk, again.size) == (r1, 4, 3, 300)
    lab_store.advance_stream(LEASE.id, 1, 4, 350)
    assert lab_store.output_size(LEASE.id) == 6  # not yet accepted: only the inline period
    lab_store.accept_receipt(r1, b"")
    assert lab_store.output_parts(LEASE.id) == [(0, b"inline", None), (1, b"", 350)]
    assert lab_store.output_size(LEASE.id) == 356


# --- the provider's endpoint -------------------------------------------------------------------


def test_the_provider_answers_chunks_with_proofs_under_the_frame_limit(tmp_path: Path) -> None:
    store = AgentStore.open(tmp_path / "provider.sqlite")
    spec = JobSpec(KEYS.public, CommandParams(("python", "-c", "print(1)")))
    store.add_lease(LEASE.id, b"\x01" * 32, "H100-80GB", 2, LEASE.end)
    store.set_spec(LEASE.id, spec.encode())
    out = tmp_path / "jobs" / LEASE.id.hex() / "stdout"
    out.parent.mkdir(parents=True)
    big = b"".join(bytes([i]) * STREAM_CHUNK for i in range(8)) + b"tail!"
    out.write_bytes(big)
    stream = StreamedOutput.of_file(out, start=0, size=len(big), chunk_size=STREAM_CHUNK)
    receipt = _receipt(stream.tree().root)
    with store.db.transaction() as conn:
        AgentStore.save_period(conn, LEASE.id, 0, b"", b"", len(big), stream)
    service = ProviderService(
        DOMAIN, store, Records(store.db, DOMAIN), generate_keypair().private, pool=None,  # type: ignore[arg-type]
        log=get_logger("test"), metrics=ProviderMetrics(), workdir=tmp_path / "jobs",
    )  # fmt: skip
    try:
        assert store.periods(LEASE.id, 0, 8)[0][3] == 9  # the batch says: 9 chunks, streamed
        first = service._chunks(OutputQuery(LEASE.id, 0, 0, 16))
        assert (first.total, len(first.chunks)) == (9, 5)  # cut under MAX_ANSWER, not at 16
        assert len(encode(first)) < MAX_BATCH_SIZE
        rest = service._chunks(OutputQuery(LEASE.id, 0, 5, 16))
        assert len(rest.chunks) == 4
        got = open_chunks(KEYS.private, receipt, 0, first.chunks)
        got += open_chunks(KEYS.private, receipt, 5, rest.chunks)
        assert b"".join(got) == big
        with pytest.raises(Refused) as refused:
            service._chunks(OutputQuery(LEASE.id, 1, 0, 16))
        assert refused.value.code is ErrorCode.UNKNOWN_PERIOD
    finally:
        store.db.close()
