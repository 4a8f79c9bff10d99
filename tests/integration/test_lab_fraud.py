"""A lab client (`gpumarket lab`, a real process) against a cheating provider: the provider is
registered and staked on-chain, offers through a real relay, and answers the lab's HTTP calls
from this test with a receipt it signed claiming more GPU-seconds than the lease's GPUs could
have run. The lab refuses it, stops paying, terminates, proves the impossible usage on-chain and
is credited the provider's slashed stake with its unused escrow; it withdraws both and exits 0.
Another provider streams a period's output with two chunks swapped: the lab refuses the first
chunk by its proof (a typed error naming it), stores nothing of it, pays nothing, terminates."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator

import msgpack
import pytest
from aiohttp import web

from market.chain.devnet import Devnet
from market.matching import Submission
from market.protocol.eip712 import Domain
from market.protocol.keccak import keccak
from market.protocol.types import ZERO_HASH, Lease, Receipt, Signed
from market.receipts.merkle import MerkleTree
from market.roles import Provider
from market.sealing import (
    Purpose,
    associated_data,
    chunk_associated_data,
    generate_keypair,
    open_sealed,
    seal,
)
from nodes.jobs import JobSpec
from nodes.localnet import LocalMarket, command_job
from nodes.wire import (
    JobAccepted,
    JobState,
    OutputChunk,
    OutputChunks,
    OutputQuery,
    PeriodReport,
    ReceiptBatch,
    ReceiptsQuery,
    RelayClient,
    SubmitJob,
    SubmitVoucher,
    VoucherAccepted,
    decode_as,
    encode,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
MODEL = "F0-80GB"


class CheatingProvider:
    """A provider endpoint that signs one receipt reporting impossible usage."""

    def __init__(self, provider: Provider, domain: Domain) -> None:
        self.provider = provider
        self.domain = domain
        self.keys = generate_keypair()
        self.lab_keys: dict[bytes, bytes] = {}
        self.vouchers_received = 0
        self.chunks_sent = 0
        self.leases: dict[bytes, Lease] = {}
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.post("/v1/jobs", self.jobs),
                web.post("/v1/receipts", self.receipts),
                web.post("/v1/vouchers", self.vouchers),
                web.post("/v1/outputs", self.outputs),
            ]
        )
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def stop(self) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def jobs(self, request: web.Request) -> web.Response:
        job = decode_as(await request.read(), SubmitJob)
        aad = associated_data(job.lease_id, Purpose.JOB_SPEC)
        spec = JobSpec.decode(open_sealed(self.keys.private, job.sealed_spec, aad))
        self.lab_keys[job.lease_id] = spec.lab_key
        events = self.provider.client.events()
        self.leases[job.lease_id] = next(
            e.args["lease"] for e in events
            if e.name == "LeaseOpened" and e.args["lease_id"] == job.lease_id
        )  # fmt: skip
        return web.Response(body=encode(JobAccepted(job.lease_id, JobState.RUNNING)))

    async def receipts(self, request: web.Request) -> web.Response:
        query = decode_as(await request.read(), ReceiptsQuery)
        lease = self.leases[query.lease_id]
        metrics: bytes = msgpack.packb({"busyMs": 1000})
        inflated = Receipt(
            lease_id=lease.id,
            seq=0,
            prev_hash=ZERO_HASH,
            period_start=lease.start,
            period_end=lease.start + 1,
            gpu_seconds_cumulative=lease.gpus * 1000,  # 1 s of the lease's GPUs: at most gpus
            output_root=ZERO_HASH,
            metrics_hash=keccak(metrics),
        )
        signed = self.provider.key.sign(self.domain, inflated)
        output = seal(
            self.lab_keys[lease.id],
            msgpack.packb([], use_bin_type=True),
            associated_data(lease.id, Purpose.JOB_OUTPUT),
        )
        periods = (PeriodReport(signed, output, metrics),) if query.from_seq == 0 else ()
        return web.Response(body=encode(ReceiptBatch(lease.id, periods, JobState.RUNNING)))

    async def vouchers(self, request: web.Request) -> web.Response:
        v = decode_as(await request.read(), SubmitVoucher).voucher.message
        self.vouchers_received += 1
        return web.Response(body=encode(VoucherAccepted(v.lease_id, v.cumulative_amount, True)))

    async def outputs(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound()


class SwappingProvider(CheatingProvider):
    """A provider that commits a period's two output chunks honestly, then streams them
    swapped (each sealed for the index it is sent at, with the other's proof)."""

    CHUNKS = (b"A" * 1000, b"B" * 1000)

    def _receipt(self, lease: Lease) -> tuple[Signed[Receipt], bytes]:
        metrics: bytes = msgpack.packb({"busyMs": 1000, "outputBytes": 2000})
        receipt = Receipt(
            lease_id=lease.id,
            seq=0,
            prev_hash=ZERO_HASH,
            period_start=lease.start,
            period_end=lease.start + 1,
            gpu_seconds_cumulative=lease.gpus,  # honest usage: only the output is swapped
            output_root=MerkleTree.of_chunks(self.CHUNKS).root,
            metrics_hash=keccak(metrics),
        )
        return self.provider.key.sign(self.domain, receipt), metrics

    async def receipts(self, request: web.Request) -> web.Response:
        query = decode_as(await request.read(), ReceiptsQuery)
        lease = self.leases[query.lease_id]
        signed, metrics = self._receipt(lease)
        periods = (PeriodReport(signed, b"", metrics, 2),) if query.from_seq == 0 else ()
        return web.Response(body=encode(ReceiptBatch(lease.id, periods, JobState.RUNNING)))

    async def outputs(self, request: web.Request) -> web.Response:
        query = decode_as(await request.read(), OutputQuery)
        tree = MerkleTree.of_chunks(self.CHUNKS)
        key = self.lab_keys[query.lease_id]
        swapped = [
            OutputChunk(
                seal(key, self.CHUNKS[1 - i], chunk_associated_data(query.lease_id, 0, i)),
                tuple(tree.proof(1 - i)),
            )
            for i in range(query.from_chunk, 2)
        ]
        self.chunks_sent += len(swapped)
        answer = OutputChunks(query.lease_id, 0, query.from_chunk, 2, tuple(swapped))
        return web.Response(body=encode(answer))


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("fraud"))
        try:
            yield market
        finally:
            market.stop_all()


def test_lab_proves_impossible_usage_and_is_paid_the_providers_stake(net: LocalMarket) -> None:
    relay = net.start_relay()
    acct = net.provider_account(4)
    net.fund(acct)
    provider = Provider.connect(net.contracts.deployment, "0x" + acct.key.hex())
    cheat = CheatingProvider(provider, provider.client.domain)
    try:
        stake = 2 * provider.client.min_stake()
        provider.register(stake=stake, endpoint=cheat.url, encryption_key=cheat.keys.public)
        offer = provider.offer(MODEL, gpus=8, memory_gib=80, price_per_gpu_second=400,
                               min_duration=5, max_duration=3600)  # fmt: skip

        async def post() -> None:
            async with RelayClient(relay.url) as client:
                (result,) = await client.submit([Submission(offer)])
                assert result.accepted, result

        asyncio.run(post())
        lab_address = net.lab_account(0).address
        net.fund(net.lab_account(0))
        before = net.balance(lab_address)
        # This endpoint answers receipts only: a hardware challenge would fail it first (a
        # refusal fails a challenge), so the lab is configured not to run one.
        lab = net.start_lab(0, [relay.url], [command_job(MODEL, ["/bin/true"], duration=30)],
                            challenge="enabled = false\n")  # fmt: skip
        log = lab.log.read_text
        assert lab.wait(120) == 0, log(encoding="utf-8")[-3000:]
    finally:
        cheat.stop()
    text = lab.log.read_text(encoding="utf-8")
    assert "claims 2000 GPU-seconds, more than 2 GPUs x 1 s = 2" in _line(text, "lease_failed")
    assert "kind=impossible_usage" in _line(text, "fraud_proved")
    events = provider.client.events()
    (opened,) = [e.args for e in events if e.name == "LeaseOpened"]
    (slashed,) = [e.args for e in events if e.name == "LeaseSlashed"]
    penalty = provider.client.stake_lock(opened["lease"].escrow)  # the lease's lock
    assert slashed["penalty"] == penalty > 0
    info = provider.client.provider_info(provider.address)
    assert (info.stake, info.locked) == (stake - penalty, 0)
    assert net.balance(lab_address) == before  # nothing paid, escrow back
    assert provider.client.slashed_credit(lab_address)[0] == penalty  # the stake won, vesting


def test_lab_refuses_a_swapped_output_chunk_and_pays_nothing(net: LocalMarket) -> None:
    relay = net.start_relay()
    acct = net.provider_account(5)
    net.fund(acct)
    provider = Provider.connect(net.contracts.deployment, "0x" + acct.key.hex())
    cheat = SwappingProvider(provider, provider.client.domain)
    try:
        stake = 2 * provider.client.min_stake()
        provider.register(stake=stake, endpoint=cheat.url, encryption_key=cheat.keys.public)
        offer = provider.offer("F1-80GB", gpus=8, memory_gib=80, price_per_gpu_second=400,
                               min_duration=5, max_duration=3600)  # fmt: skip

        async def post() -> None:
            async with RelayClient(relay.url) as client:
                (result,) = await client.submit([Submission(offer)])
                assert result.accepted, result

        asyncio.run(post())
        net.fund(net.lab_account(1))
        job = command_job("F1-80GB", ["/bin/true"], duration=30)
        lab = net.start_lab(1, [relay.url], [job], exit_when_done=False)
        wait_until(lambda: " lease_failed " in lab.log.read_text(encoding="utf-8"), 90,
                   "the lab to refuse the output")  # fmt: skip
        wait_until(lambda: any(e.name == "LeaseTerminated" for e in provider.client.events()),
                   60, "the termination")  # fmt: skip
        assert lab.terminate() == 0
    finally:
        cheat.stop()
    text = lab.log.read_text(encoding="utf-8")
    failed = _line(text, "lease_failed")
    assert "ReceiptOutputMismatch" in failed
    assert "output chunk 0 is not under" in failed
    assert cheat.chunks_sent == 2
    assert cheat.vouchers_received == 0  # nothing paid
    with sqlite3.connect(net.folder / "lab1" / "state.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM lab_vouchers").fetchone()[0] == 0
        assert db.execute("SELECT next_chunk, size FROM lab_streams").fetchall() == [(0, 0)]
    (terminated,) = [e.args for e in provider.client.events() if e.name == "LeaseTerminated"]
    assert terminated["paid"] == 0


def _line(log: str, event: str) -> str:
    return next(line for line in log.splitlines() if f" {event} " in line)
