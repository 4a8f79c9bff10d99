"""A lab that is a contract wallet, end to end through the daemons: a relay, a provider agent and a
lab client (``[key] wallet``) as real processes, anvil mining a block a second. The wallet (an
``ERC1271Lab`` owned by the lab's key) holds the tokens; the owner's account holds none and pays
only gas. The bid names the wallet and is signed by the owner key, so the relay admits it only
through the wallet's ERC-1271 check; the lease opens with the wallet as its lab and escrow pulled
from the wallet (approved by the wallet's own transaction); the provider runs the sealed job and
claims vouchers signed by the bid's voucher key (the owner key, or a voucher keystore's); the lab
terminates, and its refund is withdrawn through the wallet. The ledger is exact: the wallet paid
what the provider was credited, got the rest back, the owner's tokens did not move, and no token
was created or lost."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes

from market.chain.client import MarketClient
from market.chain.devnet import Devnet
from market.errors import InvalidSignature
from market.protocol import codec
from market.protocol.signing import verify, verify_voucher
from market.protocol.types import Bid, Lease, LeaseStatus, Receipt, Signed, Voucher
from market.receipts import ReceiptVerifier
from nodes.localnet import Daemon, LocalMarket, command_job
from tests.integration.wallets import new_wallet
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
MODEL = "W0-80GB"
PRICE = 400
GPUS = 2
LEASE_S = 20
JOB = ("python", "-c", "import time; time.sleep(1); print('done', flush=True)")


@dataclass
class Net:
    market: LocalMarket
    relay: Daemon
    provider: Daemon


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("wallet-lab"))
        try:
            relay = market.start_relay()
            provider = market.start_provider(0, [relay.url], model=MODEL, price=PRICE)
            yield Net(market, relay, provider)
        finally:
            market.stop_all()


def _round(net: Net, i: int, *, voucher_key: LocalAccount | None = None) -> None:
    """Lab ``i``'s key owns a new wallet, which alone holds tokens; the lab daemon acts for the
    wallet (its vouchers signed by ``voucher_key`` when given, else by the owner key) through one
    command job, exits once settled, and the ledger is checked."""
    market = net.market
    owner = market.lab_account(i)
    wallet = new_wallet(market.dev, owner.address, deployer=owner).address  # gas only
    market.fund(wallet)  # tokens to the wallet only; the owner has gas (ETH) and no tokens
    reader = MarketClient.connect(market.contracts.deployment)
    provider = net.provider.address
    wait_until(lambda: reader.withdrawable(provider) == 0, 30, "the provider to withdraw")
    accounts = (wallet, owner.address, provider, market.contracts.market.address)
    before = {a: market.balance(a) for a in accounts}
    assert before[owner.address] == 0 < before[wallet]
    assert reader.allowance(wallet) == 0  # the daemon approves, through the wallet

    job = command_job(MODEL, JOB, gpus=GPUS, duration=LEASE_S, max_price=PRICE)
    lab = market.start_lab(i, [net.relay.url], [job], voucher_key=voucher_key, wallet=wallet)
    assert lab.address == wallet  # the ready line names the account the lab is
    assert lab.wait(120) == 0, lab.log.read_text(encoding="utf-8")[-3000:]
    log = lab.log.read_text(encoding="utf-8")
    for event in ("bid_submitted", "job_accepted", "job_verified", "lease_terminated",
                  "refund_withdrawn"):  # fmt: skip
        assert f" {event} " in log, event
    signer = owner.address if voucher_key is None else voucher_key.address
    assert (
        f" lab_ready address={wallet} owner={owner.address} wallet=True voucher_key={signer} "
        in log
    )
    domain = reader.domain

    # The bid: for the wallet, the owner's ECDSA signature, which the relay could admit only by
    # asking the wallet (ERC-1271): as the wallet's own ECDSA signature it is refused.
    bids, vouchers = _lab_records(net, lab)
    (bid,) = bids
    assert (bid.message.lab, bid.message.voucher_signer) == (wallet, signer)
    with pytest.raises(InvalidSignature):
        verify(domain, bid)
    verify(domain, bid, signer=owner.address)

    # The lease: the wallet is its lab, the voucher key the bid's; escrow came from the wallet.
    events = reader.events()
    (lease,) = [
        e.args["lease"] for e in events if e.name == "LeaseOpened" and e.args["lab"] == wallet
    ]
    assert isinstance(lease, Lease)
    assert (lease.lab, lease.voucher_key, lease.gpus) == (wallet, signer, GPUS)
    mine = [e for e in events if e.args.get("lease_id") == lease.id]
    state = reader.lease_state(lease.id)
    assert state.status is LeaseStatus.CLOSED
    (terminated,) = [e for e in mine if e.name == "LeaseTerminated"]
    end = terminated.args["end"]
    assert state.end == end < lease.end  # the lab terminated once its job was over
    (closed,) = [e.args for e in mine if e.name == "LeaseClosed"]

    # Paid by vouchers the voucher key signed; the provider claimed them (claims succeeded).
    assert vouchers
    assert all(v.message.lease_id == lease.id for v in vouchers)
    for v in vouchers:
        verify_voucher(domain, v, signer)
    claims = [e for e in mine if e.name == "Claimed"]
    paid = sum(e.args["amount"] for e in claims)
    assert paid == state.paid == closed["paid"] == PRICE * GPUS * (end - lease.start)
    assert paid == max(v.message.cumulative_amount for v in vouchers)  # the best voucher, once
    assert any(_sender(net, e.tx_hash) == provider for e in claims)
    assert closed["refund"] == lease.escrow - paid > 0
    receipts = _receipts(net, lease)
    verifier = ReceiptVerifier(domain, lease, lease_end=end)
    for r in receipts:
        verifier.accept(r)
    assert receipts[-1].message.period_end == end

    # What the market decides by sender came from the wallet: the owner's call to its execute.
    (withdrawn,) = [e for e in events if e.name == "Withdrawn" and e.args["account"] == wallet]
    assert withdrawn.args["amount"] == closed["refund"]
    for tx_hash in (terminated.tx_hash, withdrawn.tx_hash):
        tx = market.dev.web3().eth.get_transaction(HexBytes(tx_hash))
        assert (tx["from"], tx["to"]) == (owner.address, wallet)

    # The ledger, exact.
    wait_until(lambda: reader.withdrawable(provider) == 0, 30, "the provider to withdraw")
    assert reader.withdrawable(wallet) == 0  # the lab took its refund
    after = {a: market.balance(a) for a in accounts}
    assert before[wallet] - after[wallet] == paid  # the escrow went out, the refund came back
    assert after[provider] - before[provider] == paid  # no fee on the devnet: all credited
    assert after[owner.address] == before[owner.address] == 0
    assert sum(after.values()) == sum(before.values())  # no token created or lost
    assert reader.allowance(wallet) == 0  # approved the escrow, all of it pulled


def test_wallet_lab_daemon_trades_a_job_paid_from_the_wallet_with_owner_key_vouchers(
    net: Net,
) -> None:
    _round(net, 0)


def test_wallet_lab_daemon_with_a_voucher_keystore_names_and_pays_with_that_key(
    net: Net,
) -> None:
    _round(net, 1, voucher_key=Account.from_key(b"\x6b" * 32))


def _lab_records(net: Net, lab: Daemon) -> tuple[list[Signed[Bid]], list[Signed[Voucher]]]:
    with sqlite3.connect(net.market.folder / lab.name / "state.sqlite") as db:
        bids = db.execute("SELECT bid FROM lab_jobs ORDER BY idx").fetchall()
        vouchers = db.execute("SELECT signed FROM lab_vouchers").fetchall()
    return (
        [codec.decode_as(row[0], Signed[Bid]) for row in bids],
        [codec.decode_as(row[0], Signed[Voucher]) for row in vouchers],
    )


def _receipts(net: Net, lease: Lease) -> list[Signed[Receipt]]:
    path = net.market.folder / net.provider.name / "state.sqlite"
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT signed FROM receipts WHERE lease_id = ? ORDER BY seq", (lease.id,)
        ).fetchall()
    return [codec.decode_as(row[0], Signed[Receipt]) for row in rows]


def _sender(net: Net, tx_hash: bytes) -> str:
    return str(net.market.dev.web3().eth.get_transaction(HexBytes(tx_hash))["from"])
