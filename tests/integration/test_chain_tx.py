"""Transactor's two steps (sign, then broadcast), its receipts (polled raw with backoff, as web3
formats them) and MarketClient's head and claim-slot reads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hexbytes import HexBytes
from web3 import Web3
from web3.types import TxReceipt

from market.chain.contract_errors import ERC20InsufficientBalance
from market.chain.devnet import Devnet
from market.chain.tx import POLL_FIRST_S, SignedTx, Transactor
from market.errors import NonceUsed, TransactionTimeout
from tests.integration.conftest import START_BALANCE, MarketEnv
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def test_sign_takes_no_nonce_until_broadcast(chain: Devnet) -> None:
    w3 = chain.web3()
    tx = Transactor(w3, chain.accounts[2])
    to = chain.accounts[3].address
    before = w3.eth.get_balance(to)
    first = tx.sign(to, b"", value=7)
    again = tx.sign(to, b"", value=7)
    assert first.nonce == again.nonce == w3.eth.get_transaction_count(tx.address, "pending")
    assert tx.mined_nonce() == first.nonce

    assert tx.broadcast(first) == first.hash == Web3.keccak(first.raw)
    receipt = tx.wait(first.hash)
    assert (receipt["status"], receipt["transactionHash"]) == (1, first.hash)
    assert tx.receipt(first.hash) == receipt
    assert tx.mined_nonce() == first.nonce + 1
    assert tx.sign(to, b"", value=7).nonce == first.nonce + 1
    assert w3.eth.get_balance(to) == before + 7


def test_signed_bytes_decode_to_the_same_transaction(chain: Devnet) -> None:
    tx = Transactor(chain.web3(), chain.accounts[2])
    signed = tx.sign(chain.accounts[3].address, b"\x01\x02", value=5, gas=60_000)
    assert SignedTx.from_raw(signed.raw) == signed
    assert (signed.to, signed.value, signed.data, signed.gas) == (
        chain.accounts[3].address,
        5,
        b"\x01\x02",
        60_000,
    )
    assert signed.chain_id == chain.chain_id


def test_broadcasting_the_same_bytes_twice_is_one_transaction(chain: Devnet) -> None:
    w3 = chain.web3()
    tx = Transactor(w3, chain.accounts[2])
    signed = tx.sign(chain.accounts[3].address, b"", value=1)
    chain.set_automine(False)
    try:
        head = chain.block_number()
        assert tx.broadcast(signed) == signed.hash
        assert tx.broadcast(signed) == signed.hash  # the node already holds them
        chain.mine()
        block = w3.eth.get_block(head + 1)
        assert list(block["transactions"]) == [signed.hash]
    finally:
        chain.set_automine(True)


def test_broadcast_of_bytes_whose_nonce_was_used_raises_nonce_used(chain: Devnet) -> None:
    tx = Transactor(chain.web3(), chain.accounts[2])
    to = chain.accounts[3].address
    taken, late = tx.sign(to, b"", value=1), tx.sign(to, b"", value=2)
    tx.wait(tx.broadcast(taken))
    with pytest.raises(NonceUsed) as err:
        tx.broadcast(late)
    assert (err.value.address, err.value.nonce) == (tx.address, late.nonce)
    assert tx.mined_nonce() == late.nonce + 1


def test_sign_of_a_reverting_call_raises_the_typed_error_and_sends_nothing(
    env: MarketEnv,
) -> None:
    acct = env.devnet.accounts[2]
    tx = Transactor(env.devnet.web3(), acct)
    token = env.contracts.token
    data = token.encode_abi("transfer", args=[env.devnet.accounts[3].address, START_BALANCE + 1])
    nonce = tx.mined_nonce()
    with pytest.raises(ERC20InsufficientBalance) as err:
        tx.sign(token.address, data, what="transfer")
    assert (err.value.sender, err.value.balance, err.value.needed) == (
        acct.address,
        START_BALANCE,
        START_BALANCE + 1,
    )
    assert tx.mined_nonce() == nonce
    refund = token.encode_abi("transfer", args=[acct.address, 1])
    assert tx.sign(token.address, refund).nonce == nonce


def test_head_is_the_latest_block_number_and_timestamp(env: MarketEnv) -> None:
    client = env.client()
    env.devnet.mine()
    block = env.devnet.web3().eth.get_block("latest")
    head = client.head()
    assert (head.number, head.timestamp) == (block["number"], block["timestamp"])
    assert client.chain_time() == block["timestamp"]


def test_claim_slot_of_a_lease_never_claimed_is_all_zero(env: MarketEnv) -> None:
    client = env.client()
    slot = client.claim_slot(b"\x07" * 32)
    assert (slot.amount, slot.seq, slot.ready_at, slot.receipt_hash) == (0, 0, 0, bytes(32))
    assert client.pending_claim(b"\x07" * 32) is None


def test_fees_are_read_again_only_once_their_ttl_passed(chain: Devnet) -> None:
    w3 = chain.web3()
    cached = Transactor(w3, chain.accounts[2], fees_ttl_s=3600)
    fresh = Transactor(w3, chain.accounts[2], fees_ttl_s=0)
    to = chain.accounts[3].address
    before = cached.sign(to, b"", gas=21_000).max_fee_per_gas
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    chain.set_next_base_fee(base * 4)
    chain.mine()
    try:
        raised = w3.eth.get_block("latest")["baseFeePerGas"]
        assert raised > base
        assert cached.sign(to, b"", gas=21_000).max_fee_per_gas == before  # within its TTL
        tip = w3.eth.max_priority_fee
        assert fresh.sign(to, b"", gas=21_000).max_fee_per_gas == 2 * raised + tip
    finally:  # the next tests on this chain sign with fees read before the rise
        chain.set_next_base_fee(base)
        chain.mine()


def test_a_receipt_is_the_one_web3_gives(env: MarketEnv) -> None:
    acct = env.devnet.accounts[2]
    w3 = env.devnet.web3()
    tx = Transactor(w3, acct)
    token = env.contracts.token
    data = token.encode_abi("transfer", args=[env.devnet.accounts[3].address, 5])
    receipt = tx.send(token.address, data, what="transfer")
    assert len(receipt["logs"]) == 1  # the Transfer event, its fields formatted as web3 does
    assert receipt == w3.eth.get_transaction_receipt(receipt["transactionHash"])
    assert tx.receipt(receipt["transactionHash"]) == receipt


def test_an_unknown_transaction_has_no_receipt_and_times_out(chain: Devnet) -> None:
    tx = Transactor(chain.web3(), chain.accounts[2], receipt_timeout_s=0.1)
    unknown = HexBytes(b"\x5a" * 32)
    assert tx.receipt(unknown) is None
    with pytest.raises(TransactionTimeout) as err:
        tx.wait(unknown)
    assert (err.value.tx_hash, err.value.timeout_s) == (unknown.to_0x_hex(), 0.1)


def test_a_mined_transaction_that_reverted_raises_its_typed_error(env: MarketEnv) -> None:
    acct = env.devnet.accounts[2]
    tx = Transactor(env.devnet.web3(), acct)
    token = env.contracts.token
    data = token.encode_abi("transfer", args=[env.devnet.accounts[3].address, START_BALANCE + 1])
    signed = tx.sign(token.address, data, gas=100_000, what="transfer")  # no estimate: it is sent
    tx.broadcast(signed)
    with pytest.raises(ERC20InsufficientBalance) as err:
        tx.wait(signed.hash, what="transfer")
    assert (err.value.sender, err.value.balance, err.value.needed) == (
        acct.address,
        START_BALANCE,
        START_BALANCE + 1,
    )
    assert err.value.tx_hash == signed.hash.to_0x_hex()
    receipt = tx.receipt(signed.hash)
    assert receipt is not None
    assert receipt["status"] == 0


class _PollCounting(Transactor):
    """A transactor that records when it polls for a receipt."""

    polls: list[float]

    def receipt(self, tx_hash: bytes) -> TxReceipt | None:
        self.polls.append(time.monotonic())
        return super().receipt(tx_hash)


def test_receipt_polls_back_off_while_no_block_comes(chain: Devnet) -> None:
    tx = _PollCounting(chain.web3(), chain.accounts[2])
    tx.polls = []
    signed = tx.sign(chain.accounts[3].address, b"", value=1, gas=21_000)
    chain.set_automine(False)
    try:
        tx.broadcast(signed)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(tx.wait, signed.hash)
            wait_until(lambda: len(tx.polls) >= 8, 10, "eight polls for the receipt")
            chain.mine()
            receipt = waiting.result(timeout=10)
    finally:
        chain.set_automine(True)
    assert (receipt["status"], receipt["transactionHash"]) == (1, signed.hash)
    gaps = [b - a for a, b in zip(tx.polls, tx.polls[1:], strict=False)][:7]
    # 10 ms after the first poll, then 1.5 times longer each time: the seventh gap is 11 times
    # the first (polling every 10 ms, eight polls would take 70 ms).
    assert gaps[0] >= POLL_FIRST_S
    assert gaps[6] >= 10 * POLL_FIRST_S
    assert tx.polls[7] - tx.polls[0] >= 0.3
