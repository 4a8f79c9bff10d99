"""The command line, run as a user would: separate processes, real signals."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

from market.chain.deploy import Deployment
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def _gpumarket(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nodes.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def test_devnet_up_serves_json_rpc_and_writes_deployment_file(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    proc = _gpumarket("devnet", "up", "--deployment", str(path))
    try:
        wait_until(path.is_file, timeout_s=30, what="deployment file")
        dep = Deployment.load(path)
        w3 = Web3(HTTPProvider(dep.rpc_url, request_kwargs={"timeout": 5}))
        assert w3.eth.chain_id == dep.chain_id == 31337
        assert len(w3.eth.get_code(dep.address("TestUSD"))) > 0
        assert dep.deploy_block >= 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "stopping devnet" in out
    assert "mining        a block every 1 s, with or without transactions" in out
    assert "PUBLIC TEST KEYS" in out
    assert "key 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80" in out
    assert "  gpumarket keys new --out provider-key.json" in out
    assert not path.exists(), "a stopped devnet must not leave a deployment file pointing at it"
    with pytest.raises(Exception):  # noqa: B017, PT011 - any connection error: nothing listens
        Web3(HTTPProvider(dep.rpc_url, request_kwargs={"timeout": 2})).eth.chain_id  # noqa: B018


def test_devnet_up_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    proc = _gpumarket("devnet", "up", "--deployment", str(path))
    wait_until(path.is_file, timeout_s=30, what="deployment file")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


def _assert_receipts_and_vouchers_counted(out: str) -> None:
    """The ledger's receipts and vouchers come from the providers' /metrics: some of each."""
    found = re.search(r"(\d+) receipts signed, delivered and verified; (\d+) vouchers", out)
    assert found is not None, out
    receipts, vouchers = int(found[1]), int(found[2])
    assert receipts > 0
    assert 0 < vouchers <= receipts


def test_demo_runs_a_market_round_of_processes_and_accounts_for_every_token() -> None:
    proc = _gpumarket("demo")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    for name in ("relay", "provider0", "provider1", "provider2"):
        assert f"{name:10}serving at http://127.0.0.1:" in out
    assert out.count("job_started") == 4  # two labs, two jobs each
    assert "4 leases opened, 4 closed" in out
    _assert_receipts_and_vouchers_counted(out)
    assert "\nledger (tUSD)\n" in out  # the token's symbol, read from the chain
    amount = r"[\d,]+\.\d{2,6} tUSD"  # tokens with the token's decimals, never base units
    assert re.search(rf"provider 0 +{amount} -> +{amount}  \(\+{amount}\)", out), out
    assert out.rstrip().endswith("done      every token accounted for, every lease closed")


def test_demo_scales_and_refuses_impossible_sizes() -> None:
    proc = _gpumarket("demo", "--providers", "2", "--labs", "1", "--jobs", "1")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert "1 leases opened, 1 closed" in out
    _assert_receipts_and_vouchers_counted(out)
    assert "provider2" not in out
    folder = re.search(r"logs in (\S+)", out)
    assert folder is not None, out
    assert not Path(folder[1]).exists(), "a round that succeeded leaves no folder behind"
    bad = _gpumarket("demo", "--providers", "0")
    out, _ = bad.communicate(timeout=60)
    assert bad.returncode == 2
    assert "error: 1-6 providers" in out
