"""Outputs of any size, through the daemons as processes (relay, provider agent, lab client, anvil
a block a second): a command job writes 256 MiB, its periods commit all of it by Merkle root in
1 MiB chunks, and the lab fetches, proves, stores, checks and pays for every chunk. A SIGKILL of
the lab, or of the provider, in the middle of the transfer is survived: the lab resumes from the
last chunk it stored, fetching no verified chunk again, and nothing is paid twice."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import urllib.request
from collections.abc import Iterator

import pytest

from market.protocol import codec
from market.protocol.types import Lease, LeaseStatus, Receipt, Signed
from market.receipts import ReceiptVerifier
from market.roles import Lab
from nodes.localnet import Daemon, LocalMarket, command_job
from nodes.provider.outputs import STREAM_CHUNK
from nodes.wire import MAX_OUTPUT_CHUNKS
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
MIB = 2**20
TOTAL_MIB = 256
# 256 MiB, each MiB distinct (its number in its first 4 bytes), written in about a second.
BIG = (
    "import sys\nw = sys.stdout.buffer.write\nb = bytes(range(256)) * 4096\n"
    f"for i in range({TOTAL_MIB}): w(i.to_bytes(4, 'big') + b[4:])\n"
)
LEASE_S = 60
ROUND_S = 240


def _expected_digest() -> bytes:
    h = hashlib.sha256()
    b = bytes(range(256)) * 4096
    for i in range(TOTAL_MIB):
        h.update(i.to_bytes(4, "big") + b[4:])
    return h.digest()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    from market.chain.devnet import Devnet

    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("streamed"))
        try:
            yield market
        finally:
            market.stop_all()


def _db(net: LocalMarket, daemon: Daemon) -> sqlite3.Connection:
    return sqlite3.connect(net.folder / daemon.name / "state.sqlite", timeout=10)


def _streams(net: LocalMarket, lab: Daemon) -> list[tuple[int, int, int, int]]:
    """The lab's streamed periods: (seq, chunks, chunks stored, bytes stored)."""
    with _db(net, lab) as db:
        try:
            rows = db.execute(
                "SELECT seq, chunks, next_chunk, size FROM lab_streams ORDER BY seq"
            ).fetchall()
        except sqlite3.OperationalError:  # the lab has not created its tables yet
            return []
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in rows]


def _mid_transfer(net: LocalMarket, lab: Daemon) -> bool:
    return any(0 < stored < chunks for _, chunks, stored, _ in _streams(net, lab))


def _job_finished(net: LocalMarket, provider: Daemon) -> bool:
    """The provider's job exited by itself (a provider killed before would kill it with it)."""
    with _db(net, provider) as db:
        try:
            rows = db.execute("SELECT state FROM jobs").fetchall()
        except sqlite3.OperationalError:
            return False
    return [r[0] for r in rows] == ["finished"]


def _events(daemon: Daemon, event: str) -> list[dict[str, str]]:
    lines = daemon.log.read_text(encoding="utf-8").splitlines()
    return [dict(re.findall(r"(\w+)=(\S+)", line)) for line in lines if f" {event} " in line]


def _timeouts(lab: Daemon) -> int:
    """Answers the lab gave up waiting for."""
    lines = lab.log.read_text(encoding="utf-8").splitlines()
    return sum(" provider_unavailable " in line and "TimeoutError" in line for line in lines)


def _served(provider: Daemon) -> int:
    """Output chunks the provider sent since it (re)started."""
    with urllib.request.urlopen(provider.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.search(r"^gpumarket_provider_output_chunks_total(?:\{\})? (\S+)$", text, re.M)
    return 0 if found is None else int(float(found.group(1)))


def _start(net: LocalMarket, i: int) -> tuple[Daemon, Daemon, Daemon]:
    model = f"S{i}-80GB"
    relay = net.start_relay(f"srelay{i}")
    provider = net.start_provider(i, [relay.url], model=model, price=400)
    job = command_job(model, ["python", "-c", BIG], duration=LEASE_S)
    lab = net.start_lab(i, [relay.url], [job])
    return relay, provider, lab


def _finish(net: LocalMarket, i: int, lab: Daemon) -> None:
    """The lab's round ends; every byte arrived, proved and checked; each receipt paid once."""
    assert lab.wait(ROUND_S) == 0, lab.log.read_text(encoding="utf-8")[-3000:]
    streams = _streams(net, lab)
    assert streams
    assert all(stored == chunks for _, chunks, stored, _ in streams)
    assert sum(size for *_, size in streams) == TOTAL_MIB * MIB  # all of it was streamed
    digest = hashlib.sha256()
    lab_outputs = net.folder / lab.name / "outputs"
    (folder,) = list(lab_outputs.iterdir())
    for seq, *_ in streams:
        digest.update((folder / f"{seq}.out").read_bytes())
    assert digest.digest() == _expected_digest()
    reader = Lab.connect(net.contracts.deployment, "0x" + net.lab_account(i).key.hex())
    opened = [e.args["lease"] for e in reader.client.events() if e.name == "LeaseOpened"]
    (lease,) = [x for x in opened if x.lab == reader.address]
    assert isinstance(lease, Lease)
    state = reader.client.lease_state(lease.id)
    assert state.status is LeaseStatus.CLOSED
    claimed = [e.args for e in reader.client.events() if e.name == "Claimed"]
    paid = sum(a["amount"] for a in claimed if a["lease_id"] == lease.id)
    assert paid == state.paid  # each claim paid the increase once: nothing twice
    with sqlite3.connect(net.folder / f"provider{i}" / "state.sqlite") as db:
        rows = db.execute(
            "SELECT signed FROM receipts WHERE lease_id = ? ORDER BY seq", (lease.id,)
        ).fetchall()
    receipts = [codec.decode_as(row[0], Signed[Receipt]) for row in rows]
    verifier = ReceiptVerifier(reader.client.domain, lease)
    for signed in receipts:
        verifier.accept(signed)
    with _db(net, lab) as db:
        accepted = db.execute("SELECT COUNT(*) FROM lab_receipts").fetchone()[0]
    assert accepted == len(receipts)  # the lab verified and paid every receipt
    owed = lease.price_per_gpu_second * receipts[-1].message.gpu_seconds_cumulative
    assert paid == owed


def _resumed_without_refetching(lab: Daemon) -> dict[int, int]:
    """Each period the lab resumed, from which chunk; the rest of it fetched exactly once."""
    resumed = {int(e["seq"]): int(e["chunk"]) for e in _events(lab, "output_resumed")}
    received = {int(e["seq"]): e for e in _events(lab, "output_received")}
    for seq, chunk in resumed.items():
        assert int(received[seq]["fetched"]) == int(received[seq]["bytes"]) - chunk * STREAM_CHUNK
    return resumed


def test_lab_sigkilled_mid_transfer_resumes_from_its_last_chunk_and_pays_once(
    net: LocalMarket,
) -> None:
    relay, provider, lab = _start(net, 0)
    wait_until(lambda: _mid_transfer(net, lab), 120, "the lab to be mid-transfer")
    lab.kill()
    stored = {seq: n for seq, _, n, _ in _streams(net, lab)}
    net.restart(lab)
    _finish(net, 0, lab)
    resumed = _resumed_without_refetching(lab)
    assert resumed
    assert all(resumed[seq] == stored[seq] > 0 for seq in resumed)
    total_chunks = sum(chunks for _, chunks, _, _ in _streams(net, lab))
    # At most the one answer in flight at the kill was lost and sent again (and any the lab gave
    # up waiting for on a loaded machine).
    timeouts = _timeouts(lab)
    served = _served(provider)
    assert total_chunks <= served <= total_chunks + MAX_OUTPUT_CHUNKS * (1 + timeouts), served
    for d in (provider, relay):
        assert d.terminate() == 0


def test_provider_sigkilled_mid_transfer_serves_the_rest_from_its_files(
    net: LocalMarket,
) -> None:
    relay, provider, lab = _start(net, 1)
    wait_until(
        lambda: _job_finished(net, provider) and _mid_transfer(net, lab),
        120,
        "the job to be done and the lab mid-transfer",
    )
    provider.kill()
    # The lab lives on: it may still store an answer that arrived just before the kill.
    stored = {seq: n for seq, _, n, _ in _streams(net, lab)}
    net.restart(provider)
    _finish(net, 1, lab)
    resumed = _resumed_without_refetching(lab)
    assert resumed
    assert all(resumed[seq] >= stored[seq] > 0 for seq in resumed)
    # The restarted provider sent the chunks the lab had not stored, and no others but those of
    # an answer the lab gave up waiting for (a timeout on a loaded machine: asked again).
    left = sum(
        chunks - resumed.get(seq, stored.get(seq, 0)) for seq, chunks, _, _ in _streams(net, lab)
    )
    timeouts = _timeouts(lab)
    served = _served(provider)
    assert left <= served <= left + MAX_OUTPUT_CHUNKS * timeouts, (served, left, timeouts)
    for d in (provider, relay):
        assert d.terminate() == 0
