"""`gpumarket provider` as a real process, with a relay process and anvil mining a block a second;
the test plays the lab by hand over real sockets: it bids through the relay, sends the sealed job,
verifies receipts and outputs, pays by vouchers, and checks the chain's ledger after. Bad input at
each endpoint is refused with a typed error and changes nothing; SIGKILL mid-lease and a restart
lose no receipt and pay nothing twice."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgpack
import pytest
from eth_typing import ChecksumAddress

from market.chain.deploy import Contracts
from market.chain.devnet import Devnet
from market.matching import Requirements, Submission
from market.protocol.eip712 import order_hash
from market.protocol.keccak import keccak
from market.protocol.signing import SigningKey
from market.protocol.types import ZERO_ADDRESS, Bid, Billing, Lease, LeaseStatus, Signed, Voucher
from market.receipts import ReceiptVerifier
from market.roles import Lab
from market.sealing import (
    Purpose,
    SealingKeyPair,
    associated_data,
    generate_keypair,
    open_sealed,
    seal,
)
from nodes.errors import RequestRefused
from nodes.jobs import CommandParams, JobSpec, MatmulParams
from nodes.jobs.matmul import check_product
from nodes.lab.provider_client import JobRefused, ProviderClient, UnknownLease
from nodes.localnet import MODELS, Daemon, LocalMarket
from nodes.wire import (
    ErrorCode,
    ErrorResponse,
    JobState,
    ReceiptBatch,
    ReceiptsQuery,
    RelayClient,
    SubmitJob,
    decode,
    encode,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
T = TypeVar("T")
MODEL = MODELS[0]
PRICE = 500


@dataclass
class Net:
    market: LocalMarket
    relay: Daemon
    provider: Daemon

    @property
    def contracts(self) -> Contracts:
        return self.market.contracts


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    folder = tmp_path_factory.mktemp("provider-agent")
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, folder)
        try:
            relay = market.start_relay()
            provider = market.start_provider(
                0, [relay.url], price=PRICE, billing=("rental", "metered")
            )
            yield Net(market, relay, provider)
        finally:
            market.stop_all()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _lab(net: Net, i: int) -> Lab:
    acct = net.market.lab_account(i)
    net.market.fund(acct)
    lab = Lab.connect(net.contracts.deployment, "0x" + acct.key.hex())
    lab.fund(10**15)
    return lab


def _lease(
    net: Net,
    lab: Lab,
    spec: JobSpec,
    duration: int,
    *,
    billing: Billing = Billing.RENTAL,
    voucher_signer: ChecksumAddress = ZERO_ADDRESS,
) -> tuple[Lease, Signed[Bid]]:
    """Bid through the relay for ``spec``; the lease its matcher opens against the provider."""
    bid = lab.bid(MODEL, gpus=2, max_price_per_gpu_second=800, duration=duration,
                  job_spec_hash=spec.hash, requirements=Requirements(billing=billing),
                  voucher_signer=voucher_signer)  # fmt: skip
    h = order_hash(lab.client.domain, bid.message)

    async def submit() -> None:
        async with RelayClient(net.relay.url) as relay:
            (result,) = await relay.submit([Submission(bid)])
            assert result.accepted, result

    _run(submit())
    found: list[Lease] = []

    def opened() -> bool:
        for e in lab.client.events():
            if e.name == "LeaseOpened" and e.args["bid_hash"] == h:
                found.append(e.args["lease"])
                return True
        return False

    wait_until(opened, 60, "the relay's matcher to open the lease")
    return found[0], bid


def _submit_job(net: Net, lease: Lease, bid: Signed[Bid], spec: JobSpec, lab: Lab) -> SubmitJob:
    info = lab.client.provider_info(lease.provider)
    sealed = seal(info.encryption_key, spec.encode(), associated_data(lease.id, Purpose.JOB_SPEC))
    return SubmitJob(lease.id, bid, sealed)


async def _call(url: str, fn: Any) -> Any:
    async with ProviderClient(url) as client:
        return await fn(client)


def _send_job(net: Net, job: SubmitJob) -> JobState:
    async def go(c: ProviderClient) -> JobState:
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the provider learns of the lease from the chain a moment after it opens
            try:
                return (await c.submit_job(job)).state
            except UnknownLease:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    result: JobState = _run(_call(net.provider.url, go))
    return result


def _batch(net: Net, lease_id: bytes, from_seq: int = 0) -> ReceiptBatch:
    batch: ReceiptBatch = _run(_call(net.provider.url, lambda c: c.receipts(lease_id, from_seq)))
    return batch


@dataclass
class LabSide:
    """What the test's lab has verified of one lease."""

    lease: Lease
    keys: SealingKeyPair
    verifier: ReceiptVerifier
    output: bytearray
    seq: int = 0
    paid: int = 0  # the best voucher sent

    def take(self, batch: ReceiptBatch) -> None:
        for period in batch.periods:
            plain = open_sealed(self.keys.private, period.sealed_output,
                                associated_data(self.lease.id, Purpose.JOB_OUTPUT))  # fmt: skip
            chunks = msgpack.unpackb(plain)
            self.verifier.accept(period.receipt, chunks)  # raises on any broken rule
            assert keccak(period.metrics) == period.receipt.message.metrics_hash
            self.output += b"".join(chunks)
            self.seq = period.receipt.message.seq + 1


def _follow(
    net: Net, lab: Lab, side: LabSide, until: Any, timeout_s: float = 60, *, pay: bool = True
) -> ReceiptBatch:
    """Verify the receipts until ``until(batch)``; with ``pay``, pay for each new head as a lab
    does (a rental's provider stops the work when receipts stay unpaid)."""
    last: list[ReceiptBatch] = []

    def step() -> bool:
        batch = _batch(net, side.lease.id, side.seq)
        side.take(batch)
        if pay:
            _pay(net, lab, side)
        last.append(batch)
        return bool(until(batch))

    wait_until(step, timeout_s, "the provider's receipts")
    return last[-1]


def _pay(net: Net, lab: Lab, side: LabSide) -> int:
    """Pay for the verified head, if it bills more than the best voucher sent; returns what
    was paid in total."""
    head = side.verifier.head
    if head is None or side.lease.price_per_gpu_second * head.gpu_seconds <= side.paid:
        return side.paid
    amount = side.lease.price_per_gpu_second * head.gpu_seconds
    voucher = lab.pay(side.lease, amount, head.hash)
    ack = _run(_call(net.provider.url, lambda c: c.send_voucher(voucher)))
    assert ack.new
    assert ack.cumulative_amount == amount
    again = _run(_call(net.provider.url, lambda c: c.send_voucher(voucher)))
    assert not again.new  # a replay changes nothing
    side.paid = amount
    return amount


def _closed(lab: Lab, lease: Lease) -> bool:
    return lab.client.lease_state(lease.id).status is LeaseStatus.CLOSED


def test_provider_runs_a_job_delivers_verified_outputs_and_closes_when_paid(net: Net) -> None:
    lab = _lab(net, 0)
    keys = generate_keypair()
    spec = JobSpec(keys.public, MatmulParams(n=32, seed=5, rounds=6))
    lease, bid = _lease(net, lab, spec, duration=8)
    assert lease.provider == net.provider.address
    assert lease.price_per_gpu_second == PRICE
    job = _submit_job(net, lease, bid, spec, lab)
    assert _send_job(net, job) is JobState.RUNNING
    assert _send_job(net, job) in (JobState.RUNNING, JobState.FINISHED)  # resent: same job
    side = LabSide(lease, keys, ReceiptVerifier(lab.client.domain, lease), bytearray())
    _follow(net, lab, side, lambda b: b.job_state is not JobState.RUNNING
            and side.verifier.head is not None
            and side.verifier.head.period_end >= lease.end)  # fmt: skip
    size = 8 * 32 * 32
    assert len(side.output) == 6 * size
    for k in range(6):
        assert check_product(5, k, 32, bytes(side.output[k * size : (k + 1) * size]))
    paid = side.paid
    assert paid == PRICE * lease.gpus * lease.duration  # a rental: every second reserved
    wait_until(lambda: _closed(lab, lease), 60, "the provider to claim and close the lease")
    state = lab.client.lease_state(lease.id)
    assert state.paid == paid
    assert lab.withdrawable() == lease.escrow - paid  # the unused escrow is the lab's again
    wait_until(lambda: lab.client.withdrawable(lease.provider) == 0, 30, "the provider to withdraw")


def test_bad_requests_are_refused_with_typed_errors_and_change_nothing(net: Net) -> None:
    lab = _lab(net, 1)
    keys = generate_keypair()
    spec = JobSpec(keys.public, CommandParams(("python", "-c", "print('x')")))
    lease, bid = _lease(net, lab, spec, duration=30)
    url = net.provider.url

    async def raw(path: str, body: bytes) -> tuple[int, Any]:
        # A stream, not bytes: aiohttp warns of a big bytes body.
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + path, data=io.BytesIO(body)) as response,
        ):
            return response.status, decode(await response.read())

    for path in ("/v1/jobs", "/v1/receipts", "/v1/vouchers"):
        status, answer = _run(raw(path, b"\xc1 not msgpack"))
        assert (status, answer.code) == (400, ErrorCode.MALFORMED_FRAME), path
        status, answer = _run(raw(path, b"\x00" * (2 * 1024 * 1024)))
        assert (status, answer.code) == (413, ErrorCode.FRAME_TOO_LARGE), path
        other = ReceiptsQuery(b"\x01" * 32) if path != "/v1/receipts" else None
        wrong = encode(other) if other else encode(SubmitJob(b"\x01" * 32, bid, b"x"))
        status, answer = _run(raw(path, wrong))
        assert (status, answer.code) == (400, ErrorCode.WRONG_TYPE), path
    with pytest.raises(UnknownLease):
        _run(_call(url, lambda c: c.receipts(b"\x01" * 32)))
    good = _submit_job(net, lease, bid, spec, lab)
    assert _send_job(net, good) is JobState.RUNNING  # after all that, the job is still welcome
    # Issue 14, bug C: the wire allows any uint64 seq, SQLite only signed 64-bit integers. A
    # query past 2^63 is an empty answer, not an OverflowError and a bare 500.
    for from_seq, limit in ((2**63, 5), (2**64 - 1, 255), (2**63 - 1, 0)):
        batch = _run(_call(url, lambda c, s=from_seq, n=limit: c.receipts(lease.id, s, n)))
        assert batch.lease_id == lease.id
        if from_seq:
            assert batch.periods == ()


def test_the_provider_answers_json_when_asked_and_msgpack_by_default(net: Net) -> None:
    """A person or a browser: JSON in, JSON out; the bins as 0x-hex."""
    lease_id = "0x" + "01" * 32
    query = {"v": 1, "type": "ReceiptsQuery", "body": {"leaseId": lease_id, "fromSeq": 0}}

    async def post(body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(net.provider.url + "/v1/receipts", data=body, headers=headers) as r,
        ):
            return r.status, r.content_type, await r.read()

    json_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    status, media, data = _run(post(json.dumps(query).encode(), json_headers))
    assert (status, media) == (400, "application/json")  # "limit" is required
    assert json.loads(data)["body"]["code"] == "malformed_frame"
    assert "missing keys ['limit']" in json.loads(data)["body"]["message"]

    query["body"]["limit"] = 4
    status, media, data = _run(post(json.dumps(query).encode(), json_headers))
    assert (status, media) == (404, "application/json")
    answer = json.loads(data)
    assert (answer["type"], answer["body"]["code"]) == ("ErrorResponse", "unknown_lease")
    assert lease_id[2:] in answer["body"]["message"]

    status, media, data = _run(post(encode(ReceiptsQuery(b"\x01" * 32, 0, 4)), {}))
    assert (status, media) == (404, "application/msgpack")
    refusal = decode(data)
    assert isinstance(refusal, ErrorResponse)
    assert refusal.code is ErrorCode.UNKNOWN_LEASE


def test_tampered_or_foreign_jobs_and_vouchers_are_refused(net: Net) -> None:
    lab = _lab(net, 2)
    keys = generate_keypair()
    spec = JobSpec(keys.public, CommandParams(("python", "-c", "print('y')")))
    other = JobSpec(keys.public, CommandParams(("python", "-c", "print('z')")))
    lease, bid = _lease(net, lab, spec, duration=30)
    url = net.provider.url
    good = _submit_job(net, lease, bid, spec, lab)
    wrong_spec = _submit_job(net, lease, bid, other, lab)  # not the spec the bid commits to
    tampered = SubmitJob(lease.id, bid, good.sealed_spec[:-1] + bytes([good.sealed_spec[-1] ^ 1]))
    stranger = Lab.connect(net.contracts.deployment, "0x" + net.market.lab_account(0).key.hex())
    forged_bid = stranger.key.sign(lab.client.domain, bid.message)  # the same bid, wrong signer
    wait_until(lambda: _known(url, lease.id), 30, "the provider to see the lease open")
    for bad in (wrong_spec, tampered):
        with pytest.raises(JobRefused):
            _run(_call(url, lambda c, b=bad: c.submit_job(b)))
    with pytest.raises(RequestRefused) as info:
        _run(_call(url, lambda c: c.submit_job(SubmitJob(lease.id, forged_bid, good.sealed_spec))))
    assert info.value.code == ErrorCode.INVALID_SIGNATURE.value
    assert _batch(net, lease.id).periods == ()  # nothing ran
    assert _send_job(net, good) is JobState.RUNNING  # the real job is still welcome
    foreign = stranger.pay(lease, 10**6)  # signed by another lab than the lease's
    with pytest.raises(RequestRefused) as info:
        _run(_call(url, lambda c: c.send_voucher(foreign)))
    assert info.value.code == ErrorCode.INVALID_SIGNATURE.value
    metrics = _run(_call(url, lambda c: c.text("/metrics")))
    assert 'gpumarket_provider_requests_total{endpoint="/v1/jobs",status="400"}' in metrics


def test_vouchers_are_checked_against_the_voucher_key_the_bid_named(net: Net) -> None:
    """A lab whose bid names a separate voucher key (as a contract lab must): the provider takes
    the job on the bid hash alone, accepts vouchers that key signs, and refuses the lab's own."""
    lab = _lab(net, 1)
    voucher_key = SigningKey(b"\x5a" * 32)
    keys = generate_keypair()
    spec = JobSpec(keys.public, CommandParams(("python", "-c", "print('v')")))
    lease, bid = _lease(net, lab, spec, duration=30, voucher_signer=voucher_key.address)
    assert lease.voucher_key == voucher_key.address
    assert _send_job(net, _submit_job(net, lease, bid, spec, lab)) is JobState.RUNNING
    url = net.provider.url
    own = lab.pay(lease, 10**6)  # the lab's own key: claim would refuse it
    with pytest.raises(RequestRefused) as info:
        _run(_call(url, lambda c: c.send_voucher(own)))
    assert info.value.code == ErrorCode.INVALID_SIGNATURE.value
    named = voucher_key.sign(lab.client.domain, Voucher(lease.id, 10**6))
    ack = _run(_call(url, lambda c: c.send_voucher(named)))
    assert (ack.new, ack.cumulative_amount) == (True, 10**6)


def _known(url: str, lease_id: bytes) -> bool:
    """Whether the provider has seen the lease open (its receipts query is answered)."""
    try:
        _run(_call(url, lambda c: c.receipts(lease_id)))
    except UnknownLease:
        return False
    return True


def test_sigkill_mid_lease_loses_no_receipt_and_pays_nothing_twice(net: Net) -> None:
    lab = _lab(net, 1)
    keys = generate_keypair()
    busy = "import time\nt=time.time()\nwhile time.time()-t<60: pass\n"  # runs past the lease
    spec = JobSpec(keys.public, CommandParams(("python", "-c", busy)))
    lease, bid = _lease(net, lab, spec, duration=14)
    assert _send_job(net, _submit_job(net, lease, bid, spec, lab)) is JobState.RUNNING
    side = LabSide(lease, keys, ReceiptVerifier(lab.client.domain, lease), bytearray())
    _follow(net, lab, side, lambda b: side.seq >= 2)
    first = side.paid
    net.provider.kill()
    net.market.restart(net.provider)
    batch = _follow(net, lab, side, lambda b: side.verifier.head is not None
                    and side.verifier.head.period_end >= lease.end)  # fmt: skip
    assert batch.job_state is JobState.STOPPED
    assert "interrupted" in batch.job_error
    paid = side.paid  # every receipt, before and after the crash, verified and paid
    assert paid > first
    wait_until(lambda: _closed(lab, lease), 60, "the provider to claim and close the lease")
    assert lab.client.lease_state(lease.id).paid == paid  # paid once, exactly the vouchers
    claimed = [e for e in lab.client.events() if e.name == "Claimed"]
    assert sum(e.args["amount"] for e in claimed if e.args["lease_id"] == lease.id) == paid


def test_a_metered_job_that_cannot_start_fails_and_costs_the_lab_nothing(net: Net) -> None:
    lab = _lab(net, 2)
    keys = generate_keypair()
    spec = JobSpec(keys.public, CommandParams(("/nonexistent/program",)))
    lease, bid = _lease(net, lab, spec, duration=6, billing=Billing.METERED)
    assert lease.billing is Billing.METERED  # busy time only: a rental would bill the GPUs held
    assert _send_job(net, _submit_job(net, lease, bid, spec, lab)) is JobState.RUNNING
    side = LabSide(lease, keys, ReceiptVerifier(lab.client.domain, lease), bytearray())
    batch = _follow(net, lab, side, lambda b: side.verifier.head is not None
                    and side.verifier.head.period_end >= lease.end)  # fmt: skip
    assert batch.job_state is JobState.FAILED
    assert "cannot start" in batch.job_error
    assert side.verifier.head is not None
    assert side.verifier.head.gpu_seconds == 0  # nothing ran, nothing billed
    wait_until(lambda: _closed(lab, lease), 60, "the provider to close the unpaid lease")
    assert lab.client.lease_state(lease.id).paid == 0
    assert lab.withdrawable() >= lease.escrow  # all of it back to the lab


def test_a_silent_lab_stops_the_work_and_the_receipt_is_paid_by_the_chain(net: Net) -> None:
    """The lab sends its job and never pays: the provider stops the job after
    ``max_unpaid_periods`` unpaid receipts, and once the lease is over posts its last receipt
    (optimistic claim), finalizes it after the challenge window and closes the lease."""
    lab = _lab(net, 0)
    keys = generate_keypair()
    busy = "import time\nt=time.time()\nwhile time.time()-t<60: pass\n"
    spec = JobSpec(keys.public, CommandParams(("python", "-c", busy)))
    lease, bid = _lease(net, lab, spec, duration=16)
    assert _send_job(net, _submit_job(net, lease, bid, spec, lab)) is JobState.RUNNING
    side = LabSide(lease, keys, ReceiptVerifier(lab.client.domain, lease), bytearray())
    batch = _follow(net, lab, side, lambda b: b.job_state is JobState.STOPPED, pay=False)
    assert batch.job_error.startswith("payment stopped: 3 receipts unpaid")
    assert lab.client.chain_time() < lease.end  # stopped before the lease's end: no more work
    wait_until(lambda: _closed(lab, lease), 90, "the optimistic claim to be paid and the close")
    last = max(
        (
            e.args
            for e in lab.client.events()
            if e.name == "ClaimFinalized" and e.args["lease_id"] == lease.id
        ),
        key=lambda a: a["seq"],
    )
    state = lab.client.lease_state(lease.id)
    periods = _batch(net, lease.id).periods
    assert periods[-1].receipt.message.seq == last["seq"]  # nothing signed after the work stopped
    assert periods[-1].receipt.message.period_end < lease.end
    posted = [r for r in periods if r.receipt.message.seq == last["seq"]]
    usage = posted[0].receipt.message.gpu_seconds_cumulative
    assert state.paid == last["amount"] == lease.price_per_gpu_second * usage
    assert state.paid > 0  # the work done before payment stopped is paid for, by the chain


def test_a_provider_restarted_on_another_port_updates_its_registered_endpoint(net: Net) -> None:
    """Issue 14, bug D: with ``port = 0`` a restarted agent serves on a new port; it updates its
    registered endpoint (updateProfile) so labs, which read it from the chain, find it again."""
    other = net.market.start_provider(1, [net.relay.url], agent="port = 0\n")
    reader = Lab.connect(net.contracts.deployment, "0x" + net.market.lab_account(3).key.hex())
    try:
        assert reader.client.provider_info(other.address).endpoint == other.url
        first = other.url
        other.kill()
        net.market.restart(other)
        assert other.url != first  # the OS chose another port
        info = reader.client.provider_info(other.address)
        assert info.endpoint == other.url
        assert " registration_updated " in other.log.read_text(encoding="utf-8")
    finally:
        other.kill()


HOSTILE = """
import json, os, signal, socket, sys
seen = {}
def attempt(key, action):
    try:
        seen[key] = repr(action())[:80]
    except Exception as exc:
        seen[key] = type(exc).__name__
keystore, database, agent = sys.argv[1], sys.argv[2], int(sys.argv[3])
attempt("keystore", lambda: open(keystore).read())
attempt("database", lambda: open(database, "rb").read(16))
attempt("environ", lambda: open(f"/proc/{agent}/environ", "rb").read())
attempt("kill", lambda: os.kill(agent, signal.SIGKILL))
attempt("connect", lambda: socket.create_connection(("127.0.0.1", int(sys.argv[4])), 1))
print(json.dumps(seen), flush=True)
"""


def test_a_hostile_job_is_contained_billed_as_any_other_and_the_agent_serves_on(net: Net) -> None:
    """A rental lease whose job tries to steal the provider's keystore, database and password,
    to kill the agent and to reach its API: every attempt fails inside the sandbox, the lease is
    billed exactly as an ordinary rental (every reserved second), and another lease started
    after it is served to the end."""
    lab = _lab(net, 1)
    keys = generate_keypair()
    folder = net.market.folder
    port = net.provider.url.rsplit(":", 1)[1]
    assert net.provider.proc is not None
    argv = (
        "python",
        "-c",
        HOSTILE,
        str(folder / "provider0-key.json"),
        str(folder / "provider0" / "state.sqlite"),
        str(net.provider.proc.pid),
        port,
    )
    spec = JobSpec(keys.public, CommandParams(argv))  # fmt: skip
    lease, bid = _lease(net, lab, spec, duration=8)
    assert _send_job(net, _submit_job(net, lease, bid, spec, lab)) is JobState.RUNNING
    side = LabSide(lease, keys, ReceiptVerifier(lab.client.domain, lease), bytearray())
    _follow(net, lab, side, lambda b: side.verifier.head is not None
            and side.verifier.head.period_end >= lease.end)  # fmt: skip
    seen = json.loads(bytes(side.output))
    assert seen == {
        "keystore": "FileNotFoundError", "database": "FileNotFoundError",
        "environ": "FileNotFoundError", "kill": "ProcessLookupError",
        "connect": "ConnectionRefusedError",
    }  # fmt: skip
    assert net.provider.running  # the agent is unharmed
    assert side.paid == PRICE * lease.gpus * lease.duration  # as any rental: every second
    wait_until(lambda: _closed(lab, lease), 60, "the provider to claim and close the lease")
    assert lab.client.lease_state(lease.id).paid == side.paid

    other_keys = generate_keypair()
    other = JobSpec(other_keys.public, CommandParams(("python", "-c", "print('still here')")))
    other_lease, other_bid = _lease(net, lab, other, duration=6)
    assert _send_job(net, _submit_job(net, other_lease, other_bid, other, lab)) is JobState.RUNNING
    after = LabSide(other_lease, other_keys, ReceiptVerifier(lab.client.domain, other_lease),
                    bytearray())  # fmt: skip
    _follow(net, lab, after, lambda b: after.verifier.head is not None
            and after.verifier.head.period_end >= other_lease.end)  # fmt: skip
    assert bytes(after.output) == b"still here\n"
    assert after.paid == PRICE * other_lease.gpus * other_lease.duration


def test_a_job_asking_for_the_network_is_refused_and_billed_only_by_its_terms(net: Net) -> None:
    """The provider's config does not allow the network: a spec that signs ``network: true`` is
    refused at start (``JobRefused``), and a metered lease bills nothing for it."""
    lab = _lab(net, 2)
    keys = generate_keypair()
    spec = JobSpec(keys.public, CommandParams(("python", "-c", "print('online')")), network=True)
    lease, bid = _lease(net, lab, spec, duration=6, billing=Billing.METERED)
    assert _send_job(net, _submit_job(net, lease, bid, spec, lab)) is JobState.RUNNING
    side = LabSide(lease, keys, ReceiptVerifier(lab.client.domain, lease), bytearray())
    batch = _follow(net, lab, side, lambda b: side.verifier.head is not None
                    and side.verifier.head.period_end >= lease.end)  # fmt: skip
    assert batch.job_state is JobState.FAILED
    assert batch.job_error.startswith("refused: ")
    assert "network" in batch.job_error
    assert side.output == b""
    assert side.verifier.head is not None
    assert side.verifier.head.gpu_seconds == 0
