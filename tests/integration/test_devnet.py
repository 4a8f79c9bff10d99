from __future__ import annotations

import signal
import socket

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

import market.chain.devnet as devnet_mod
from market.chain.devnet import Devnet, free_port
from market.chain.tx import Transactor
from market.errors import DevnetError, RpcUnavailable
from tests.waiting import pid_alive

pytestmark = pytest.mark.integration


def test_devnet_answers_with_funded_accounts(devnet: Devnet) -> None:
    w3 = devnet.web3()
    assert w3.eth.chain_id == devnet.chain_id == 31337
    assert len(devnet.accounts) == 10
    assert w3.eth.get_balance(devnet.accounts[0].address) > 0


def test_revert_restores_state_after_transactions(chain: Devnet) -> None:
    w3 = chain.web3()
    a, b = chain.accounts[0], chain.accounts[1]
    before = w3.eth.get_balance(b.address)
    snap = chain.snapshot()
    Transactor(w3, a).send(b.address, b"", value=12345)
    assert w3.eth.get_balance(b.address) == before + 12345
    chain.revert(snap)
    assert w3.eth.get_balance(b.address) == before


def test_reverting_a_snapshot_twice_is_an_error(chain: Devnet) -> None:
    snap = chain.snapshot()
    chain.revert(snap)
    with pytest.raises(DevnetError, match="already reverted"):
        chain.revert(snap)


def test_increase_time_moves_the_next_block_clock(chain: Devnet) -> None:
    t0 = chain.timestamp()
    chain.increase_time(3600)
    chain.mine()
    assert chain.timestamp() >= t0 + 3600
    chain.set_next_block_timestamp(t0 + 10_000)
    chain.mine()
    assert chain.timestamp() == t0 + 10_000


def test_block_timestamp_interval_makes_chain_time_independent_of_wall_clock(
    chain: Devnet,
) -> None:
    if not chain.supports("set_interval"):
        pytest.skip(f"{chain.implementation} has no anvil_setBlockTimestampInterval")
    chain.set_block_timestamp_interval(7)
    try:
        before = chain.timestamp()
        chain.mine(3)
        assert chain.timestamp() == before + 21
    finally:
        chain.set_block_timestamp_interval(None)


def test_with_automine_off_transactions_wait_for_mine(chain: Devnet) -> None:
    w3 = chain.web3()
    tx = Transactor(w3, chain.accounts[2])
    chain.set_automine(False)
    try:
        head = chain.block_number()
        tx_hash = tx.submit(chain.accounts[3].address, b"", value=1)
        assert chain.block_number() == head
        chain.mine(3)
        assert chain.block_number() == head + 3
        assert tx.wait(tx_hash)["blockNumber"] == head + 1
    finally:
        chain.set_automine(True)


def test_port_in_use_makes_devnet_pick_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        ports = iter([taken, free_port()])
        monkeypatch.setattr(devnet_mod, "free_port", lambda: next(ports))
        with Devnet.start() as dev:
            assert dev.port != taken
            assert dev.web3().eth.chain_id == 31337


def test_explicit_port_in_use_raises_devnet_error() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        with pytest.raises(DevnetError, match=r"could not start anvil|exited"):
            Devnet.start(port=blocker.getsockname()[1])


def test_stop_leaves_no_process_behind() -> None:
    dev = Devnet.start()
    pid = dev.pid
    assert pid_alive(pid)
    assert dev.stop() == 0  # SIGINT is enough: anvil exits cleanly
    assert not pid_alive(pid)


def test_anvil_dying_mid_test_raises_typed_error_not_hang() -> None:
    dev = Devnet.start()
    try:
        devnet_mod.os.kill(dev.pid, signal.SIGKILL)
        dev._proc.wait(timeout=10)
        with pytest.raises(DevnetError, match="exited"):
            dev.snapshot()
    finally:
        dev.stop()


def test_rpc_down_raises_rpc_unavailable() -> None:
    w3 = Web3(HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    with pytest.raises(RpcUnavailable, match="unavailable"):
        Transactor(w3, Account.create(), rpc_deadline_s=0.3)
