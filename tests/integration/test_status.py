"""``gpumarket status`` on anvil: one provider and one lab with seven leases of known outcomes
(paid by a voucher and run past its end, terminated early, closed unpaid, a disputed claim, a claim
ready to finalize, slashed for equivocation, a claim in its challenge window), each figure checked
exactly in ``collect_status``, in the JSON and in the table; then the command as a user runs it
against ``gpumarket devnet up``, and its errors for bad input (exit code 2)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from market.chain.client import MarketClient
from market.chain.deploy import Deployment
from market.chain.devnet import free_port
from market.protocol.types import Lease, Receipt, Signed, TokenAmount, checksum_address
from market.receipts import ReceiptChain
from market.roles import Lab, Provider
from market.units import Token
from nodes.cli import main
from nodes.status import (
    ClaimView,
    LeaseView,
    RoleTotals,
    StakeView,
    Status,
    collect_status,
    render_json,
    render_table,
)
from tests.integration.conftest import (
    CHALLENGE_WINDOW,
    MIN_STAKE,
    START_BALANCE,
    UNBONDING_DELAY,
    MarketEnv,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

TUSD = Token("tUSD", 6)  # the fixtures' TestUSD
PRICE = 3
GPUS = 2
DURATION = 2000
ESCROW = TokenAmount(PRICE * GPUS * DURATION)
PENALTY = ESCROW  # a lease's stake lock: one escrow, the default ratio
STAKE = 2 * MIN_STAKE
UNSTAKED = MIN_STAKE  # what is left bonded is the minimum: the slash takes it below
PAID_A = PRICE * GPUS * 100
PAID_B = PRICE * GPUS * 40
NOBODY = "0x" + "5a" * 20
# anvil's well-known test account 1 (the same on every anvil; `gpumarket devnet up` funds it).
ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ANVIL_ADDRESS_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def _lease(provider: Provider, lab: Lab) -> Lease:
    offer = provider.offer(
        "H100",
        gpus=GPUS,
        memory_gib=80,
        price_per_gpu_second=PRICE,
        min_duration=1,
        max_duration=DURATION,
    )
    bid = lab.bid("H100", gpus=GPUS, max_price_per_gpu_second=PRICE, duration=DURATION)
    return lab.open(offer, bid, GPUS)


def _advance(env: MarketEnv, seconds: int) -> int:
    """Move chain time on by ``seconds`` and mine; returns the new chain time."""
    env.devnet.increase_time(seconds)
    env.devnet.mine()
    return env.devnet.timestamp()


def _full_use(env: MarketEnv, chain: ReceiptChain, seconds: int) -> Signed[Receipt]:
    """The next receipt after ``seconds`` more of chain time, every GPU busy since the start."""
    now = _advance(env, seconds)
    return chain.append(now, chain.lease.gpus * (now - chain.lease.start))


def _chain(provider: Provider, lease: Lease) -> ReceiptChain:
    return ReceiptChain(provider.key, provider.client.domain, lease)


def _post(env: MarketEnv, provider: Provider, lease: Lease) -> tuple[Receipt, int]:
    """The provider posts a receipt after 100 s of full use; returns it and when it is ready."""
    receipt = _full_use(env, _chain(provider, lease), 100)
    provider.post_receipt(lease, receipt)
    return receipt.message, env.devnet.timestamp() + CHALLENGE_WINDOW


@dataclass(frozen=True)
class Scenario:
    """The scenario's accounts and what each should see."""

    provider: Provider
    lab: Lab
    provider_status: Status
    lab_status: Status


@pytest.fixture
def market(env: MarketEnv) -> Scenario:
    """Seven leases from provider 1 to lab 2 (A to F and C, in opening order), and one between
    two other accounts; returns the status each of the two must see at the head block."""
    p, lab = env.provider(1), env.lab(2)
    p.register(stake=STAKE, endpoint="p")
    p.client.request_unstake(UNSTAKED)
    unbond_ready_at = env.devnet.timestamp() + UNBONDING_DELAY
    # Another provider's lease with another lab: in neither account's status.
    other = env.provider(3)
    other.register(stake=MIN_STAKE, endpoint="other")
    _lease(other, env.lab(4))

    # A: 100 s of work paid by a voucher; it later runs past its end, not closed.
    a = _lease(p, lab)
    _advance(env, 100)
    p.claim(a, lab.pay(a, PAID_A))
    # B: terminated by the lab after 50 s, paying 40 s of work.
    b = _lease(p, lab)
    _advance(env, 50)
    lab.terminate(b, PAID_B)
    b_end = env.devnet.timestamp()
    # E: given up unpaid by the provider: the whole escrow goes back to the lab.
    e = _lease(p, lab)
    assert p.close(e) == ESCROW
    # D: an optimistic claim the lab disputes: it pays from its ruling deadline.
    d = _lease(p, lab)
    receipt_d, _ = _post(env, p, d)
    lab.dispute(d)
    disputed_d = p.client.claim_slot(d.id)
    ready_d, bond_d = disputed_d.ruling_deadline, disputed_d.bond
    # R: an optimistic claim whose challenge window has passed, not yet finalized.
    r = _lease(p, lab)
    receipt_r, ready_r = _post(env, p, r)
    _advance(env, CHALLENGE_WINDOW)
    # F: slashed for two different receipts with one seq. C opens first: the slash leaves the
    # provider's bonded stake below the minimum.
    f = _lease(p, lab)
    c = _lease(p, lab)
    told_lab = _full_use(env, _chain(p, f), 100)
    told_others = _chain(p, f).append(
        told_lab.message.period_end, told_lab.message.gpu_seconds_cumulative - 7
    )
    assert lab.prove_equivocation(f, told_lab, told_others) == PENALTY
    # C: an optimistic claim in its challenge window, posted in the latest block.
    receipt_c, ready_c = _post(env, p, c)
    now = env.devnet.timestamp()
    assert a.end < now  # A ran past its end

    def view(lease: Lease, paid: int, status: str, claim: ClaimView | None = None) -> LeaseView:
        end = b_end if lease is b else lease.end
        return LeaseView(
            id=lease.id,
            role="provider",
            counterparty=checksum_address(lab.address),
            gpus=GPUS,
            price_per_gpu_second=TokenAmount(PRICE),
            escrow=ESCROW,
            paid=TokenAmount(paid),
            status=status,  # type: ignore[arg-type]
            start=lease.start,
            end=end,
            end_in_s=end - now,
            claim=claim,
        )

    def claimed(receipt: Receipt, state: str, ready_at: int) -> ClaimView:
        amount = TokenAmount(PRICE * receipt.gpu_seconds_cumulative)
        return ClaimView(
            state=state,  # type: ignore[arg-type]
            seq=receipt.seq,
            amount=amount,
            due=amount,
            ready_at=ready_at,
            ready_in_s=max(0, ready_at - now),
        )

    leases = (
        view(a, PAID_A, "active"),
        view(b, PAID_B, "terminated"),
        view(e, 0, "closed"),
        view(d, 0, "active", claimed(receipt_d, "disputed", ready_d)),
        view(r, 0, "active", claimed(receipt_r, "ready", ready_r)),
        view(f, 0, "slashed"),
        view(c, 0, "active", claimed(receipt_c, "pending", ready_c)),
    )
    block = env.devnet.web3().eth.block_number
    provider_status = Status(
        address=checksum_address(p.address),
        chain_id=31337,
        block=block,
        chain_time=now,
        balance=TokenAmount(START_BALANCE - STAKE),
        withdrawable=TokenAmount(PAID_A + PAID_B),
        provider=StakeView(
            stake=TokenAmount(STAKE - UNSTAKED - PENALTY),
            locked=TokenAmount(6 * ESCROW),  # every lease but the slashed one (E closed early)
            unbonding=TokenAmount(UNSTAKED),
            unbond_ready_at=unbond_ready_at,
            min_stake=TokenAmount(MIN_STAKE),
        ),
        leases=leases,
        token=TUSD,
    )
    lab_status = Status(
        address=checksum_address(lab.address),
        chain_id=31337,
        block=block,
        chain_time=now,
        balance=TokenAmount(START_BALANCE - 7 * ESCROW - bond_d),
        withdrawable=TokenAmount(ESCROW + ESCROW),  # E's refund, F's escrow (the penalty vests)
        provider=None,
        token=TUSD,
        leases=tuple(
            dataclasses.replace(v, role="lab", counterparty=checksum_address(p.address))
            for v in leases
        ),
    )
    return Scenario(p, lab, provider_status, lab_status)


def test_collect_status_shows_each_lease_and_claim_of_the_provider_exactly(
    env: MarketEnv, market: Scenario
) -> None:
    got = collect_status(env.client(), market.provider.address)
    assert got == market.provider_status
    assert got.provider is not None
    assert got.provider.free_stake == MIN_STAKE - 7 * ESCROW
    assert not got.provider.eligible  # the slash took the bonded stake below the minimum
    pending, ready = got.leases[6].claim, got.leases[4].claim
    assert pending is not None
    assert ready is not None
    assert pending.ready_in_s == CHALLENGE_WINDOW
    assert got.totals("provider") == RoleTotals(
        leases=7,
        open=5,
        escrow_held=TokenAmount((ESCROW - PAID_A) + (ESCROW - PAID_B) + 3 * ESCROW),
        claims_pending=pending.amount,
        claims_ready=ready.amount,
    )
    assert got.totals("lab") == RoleTotals(0, 0, TokenAmount(0), TokenAmount(0), TokenAmount(0))


def test_collect_status_shows_the_same_leases_from_the_lab_side(
    env: MarketEnv, market: Scenario
) -> None:
    got = collect_status(env.client(), market.lab.address.lower())
    assert got == market.lab_status
    assert got.totals("lab") == market.provider_status.totals("provider")
    assert got.totals("provider").leases == 0


def test_collect_status_of_an_account_without_history_is_all_zero(env: MarketEnv) -> None:
    got = collect_status(env.client(), NOBODY)
    assert (got.balance, got.withdrawable, got.provider, got.leases) == (0, 0, None, ())
    assert render_table(got).splitlines()[2:] == [
        "balance       0.00 tUSD",
        "withdrawable  0.00 tUSD",
        "provider      not registered",
        "leases        none",
    ]


def test_status_json_is_the_documented_document(env: MarketEnv, market: Scenario) -> None:
    expected = market.provider_status
    doc = json.loads(render_json(collect_status(env.client(), market.provider.address)))
    assert list(doc) == [
        "version",
        "address",
        "chain",
        "token",
        "balance",
        "withdrawable",
        "provider",
        "leases",
        "totals",
    ]
    assert doc["version"] == 2
    assert doc["token"] == {"symbol": "tUSD", "decimals": 6}
    assert doc["address"] == market.provider.address
    assert doc["chain"] == {
        "chain_id": 31337,
        "block": expected.block,
        "time": expected.chain_time,
    }
    assert (doc["balance"], doc["withdrawable"]) == (START_BALANCE - STAKE, PAID_A + PAID_B)
    assert doc["provider"] == {
        "stake": MIN_STAKE - PENALTY,
        "locked": 6 * ESCROW,
        "unbonding": UNSTAKED,
        "unbond_ready_at": expected.provider.unbond_ready_at if expected.provider else None,
        "free_stake": MIN_STAKE - 7 * ESCROW,
        "min_stake": MIN_STAKE,
        "eligible": False,
    }
    assert [lease["id"] for lease in doc["leases"]] == ["0x" + v.id.hex() for v in expected.leases]
    assert [lease["status"] for lease in doc["leases"]] == [
        "active",
        "terminated",
        "closed",
        "active",
        "active",
        "slashed",
        "active",
    ]
    c = expected.leases[6]
    assert c.claim is not None
    assert doc["leases"][6] == {
        "id": "0x" + c.id.hex(),
        "role": "provider",
        "counterparty": market.lab.address,
        "gpus": GPUS,
        "price_per_gpu_second": PRICE,
        "price_per_gpu_hour": PRICE * 3600,
        "escrow": ESCROW,
        "paid": 0,
        "status": "active",
        "start": c.start,
        "end": c.start + DURATION,
        "end_in_s": c.start + DURATION - expected.chain_time,
        "claim": {
            "state": "pending",
            "seq": 0,
            "amount": c.claim.amount,
            "due": c.claim.amount,
            "ready_at": expected.chain_time + CHALLENGE_WINDOW,
            "ready_in_s": CHALLENGE_WINDOW,
        },
    }
    assert doc["leases"][3]["claim"]["state"] == "disputed"
    assert doc["leases"][3]["claim"]["due"] == doc["leases"][3]["claim"]["amount"]  # unless ruled
    assert doc["leases"][1]["paid"] == PAID_B
    totals = expected.totals("provider")
    assert doc["totals"] == {
        "provider": {
            "leases": 7,
            "open": 5,
            "escrow_held": totals.escrow_held,
            "claims_pending": totals.claims_pending,
            "claims_ready": totals.claims_ready,
        },
        "lab": {"leases": 0, "open": 0, "escrow_held": 0, "claims_pending": 0, "claims_ready": 0},
    }


def test_status_table_aligns_one_row_per_lease(env: MarketEnv, market: Scenario) -> None:
    expected = market.provider_status
    lines = render_table(collect_status(env.client(), market.provider.address)).splitlines()
    assert lines[0] == f"account       {market.provider.address}"
    assert lines[2] == f"balance       {TUSD.format(START_BALANCE - STAKE)}"
    assert lines[2] == "balance       999,800.00 tUSD"
    assert expected.provider is not None
    unbonds_in = expected.provider.unbond_ready_at - expected.chain_time
    assert 3600 <= unbonds_in < 2 * 3600
    assert lines[4] == (
        "provider      stake 99.988 tUSD, locked 0.072 tUSD, unbonding 100.00 tUSD, free "
        "99.916 tUSD (minimum 100.00 tUSD: below the minimum: cannot offer); unbonded in 1h"
        f"{unbonds_in % 3600 // 60:02}m"
    )
    assert lines[5] == (
        "leases        7 (amounts in tUSD, prices per GPU-hour, times from chain time)"
    )
    header, rows = lines[7], lines[8:15]
    assert header.split() == [
        "LEASE",
        "ROLE",
        "COUNTERPARTY",
        "GPUS",
        "PRICE/GPU-H",
        "ESCROW",
        "PAID",
        "STATUS",
        "ENDS",
        "CLAIM",
    ]
    # Aligned: every row's STATUS starts in the header's STATUS column.
    column = header.index("STATUS")
    assert [row[column:].split()[0] for row in rows] == [
        "active",
        "terminated",
        "closed",
        "active",
        "active",
        "slashed",
        "active",
    ]
    cells = [re.split(r" {2,}", row) for row in rows]  # no cell holds two spaces in a row
    lab = market.lab.address
    a, c = expected.leases[0], expected.leases[6]
    assert c.claim is not None
    ended = -a.end_in_s
    assert 60 <= ended < 3600
    assert cells[0] == [
        "0x" + a.id.hex()[:12],
        "provider",
        lab,
        "2",
        "0.0108 tUSD",  # 3 base units per GPU-second
        "0.012 tUSD",
        "0.0006 tUSD",
        "active",
        f"{ended // 60}m{ended % 60:02}s ago",
        "-",
    ]
    assert cells[6] == [
        "0x" + c.id.hex()[:12],
        "provider",
        lab,
        "2",
        "0.0108 tUSD",
        "0.012 tUSD",
        "0.00 tUSD",
        "active",
        f"in {c.end_in_s // 60}m{c.end_in_s % 60:02}s",
        f"{TUSD.format(c.claim.amount)} (due {TUSD.format(c.claim.amount)}) ready in 30m00s",
    ]
    assert cells[4][-1].endswith(" ready now")
    assert cells[3][-1].endswith(" disputed")
    t = expected.totals("provider")
    assert lines[15:] == [
        "",
        f"as provider   7 leases, 5 open: escrow held {TUSD.format(t.escrow_held)}, claims "
        f"pending {TUSD.format(t.claims_pending)}, ready {TUSD.format(t.claims_ready)}",
    ]


def test_status_command_refuses_a_malformed_address_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "--address", "0x1234"]) == 2
    assert capsys.readouterr().err == "error: not an address (0x and 40 hex digits): '0x1234'\n"
    wrong = ANVIL_ADDRESS_1[:2] + ANVIL_ADDRESS_1[2:].swapcase()
    assert main(["status", "--address", wrong]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: wrong EIP-55 checksum in ")
    assert f"did you mean {ANVIL_ADDRESS_1}?" in err


def test_status_command_refuses_a_missing_or_bad_key_with_exit_code_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPUMARKET_TEST_STATUS_KEY", raising=False)
    assert main(["status", "--key-env", "GPUMARKET_TEST_STATUS_KEY"]) == 2
    err = capsys.readouterr().err
    assert err == "error: set GPUMARKET_TEST_STATUS_KEY to the account's private key\n"
    monkeypatch.setenv("GPUMARKET_TEST_STATUS_KEY", "0xnot-a-key")
    assert main(["status", "--key-env", "GPUMARKET_TEST_STATUS_KEY"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: GPUMARKET_TEST_STATUS_KEY does not hold a private key (0x and 64 hex digits)\n"
    )


def test_status_command_refuses_another_chain_with_exit_code_2(
    env: MarketEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deployment.json"
    dataclasses.replace(env.contracts.deployment, chain_id=999).save(path)
    assert main(["status", "--deployment", str(path), "--address", NOBODY]) == 2
    out = capsys.readouterr()
    assert out.err == "error: expected chain id 999, the endpoint serves 31337\n"
    assert out.out == ""


# --- the command as a user runs it ----------------------------------------------------------------


def _status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodes.cli", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_status_command_reads_a_devnet_started_by_devnet_up(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    devnet = subprocess.Popen(
        [sys.executable, "-m", "nodes.cli", "devnet", "up", "--deployment", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(path.is_file, timeout_s=30, what="deployment file")
        client = MarketClient.connect(Deployment.load(path), ANVIL_KEY_1)
        minted, stake = 1_000 * 10**6, client.min_stake()
        mint = client.token.encode_abi("mint", args=[client.address, minted])
        client.transactor.send(client.token.address, mint, what="mint")
        client.register(stake=stake, endpoint="https://gpu.example")

        done = _status(
            "--key-env",
            "GPUMARKET_TEST_STATUS_KEY",
            "--json",
            env={"GPUMARKET_TEST_STATUS_KEY": ANVIL_KEY_1, "GPUMARKET_DEPLOYMENT": str(path)},
        )
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["address"] == ANVIL_ADDRESS_1
        assert doc["chain"]["chain_id"] == 31337
        assert doc["token"] == {"symbol": "tUSD", "decimals": 6}  # devnet up's TestUSD
        assert (doc["balance"], doc["withdrawable"]) == (minted - stake, 0)
        assert doc["provider"] == {
            "stake": stake,
            "locked": 0,
            "unbonding": 0,
            "unbond_ready_at": 0,
            "free_stake": stake,
            "min_stake": stake,
            "eligible": True,
        }
        assert doc["leases"] == []
        zero = {"leases": 0, "open": 0, "escrow_held": 0, "claims_pending": 0, "claims_ready": 0}
        assert doc["totals"] == {"provider": zero, "lab": zero}

        table = _status("--deployment", str(path), "--address", ANVIL_ADDRESS_1.lower())
        assert table.returncode == 0, table.stderr
        line = (
            "provider      stake 100.00 tUSD, locked 0.00 tUSD, unbonding 0.00 tUSD, "
            "free 100.00 tUSD (minimum 100.00 tUSD: eligible)"
        )
        assert line in table.stdout
        assert table.stdout.rstrip().endswith("leases        none")
    finally:
        devnet.send_signal(signal.SIGINT)
        out, _ = devnet.communicate(timeout=30)
    assert devnet.returncode == 0, out


def test_status_command_exits_2_when_the_rpc_endpoint_is_down(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    nobody = checksum_address(NOBODY)
    contracts = {"Token": nobody, "Market": nobody, "ProviderRegistry": nobody}
    Deployment(31337, url, 1, contracts).save(path)
    done = _status("--deployment", str(path), "--address", NOBODY)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: JSON-RPC endpoint {url} is unavailable: ")
    assert "Traceback" not in done.stderr


def test_status_command_exits_2_without_a_deployment_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "deployment.json"
    done = _status("--address", NOBODY, env={"GPUMARKET_DEPLOYMENT": str(missing)})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"error: no deployment file at {missing}: start a devnet with `gpumarket devnet up` "
        "or deploy with `gpumarket deploy`\n"
    )
