"""docs/guides.md's first hour, run as a newcomer would: separate processes, real signals.

devnet up (blocks move by themselves), keys new, faucet, provider init, --check failing for an
unfunded key with the fix and passing once funded, a stake below the minimum refused at start,
lab init and its check; the whole guide to settlement (relay, provider, lab, status, lease);
and the demo's Ctrl-C and temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from market.chain.client import MarketClient
from market.chain.deploy import Deployment
from market.chain.devnet import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

PASSWORD_ENV = {"GPUMARKET_KEY_PASSWORD": "first-hour"}


def _run(
    cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodes.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **PASSWORD_ENV, **(env or {})},
    )


def _start(
    cwd: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[str]:
    """``gpumarket ARGS`` in the background: stdout piped, stderr into ``log`` (else stdout)."""
    sink = None if log is None else log.open("w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "nodes.cli", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if sink is None else sink,
            text=True,
            env={**os.environ, **PASSWORD_ENV, **(env or {})},
        )
    finally:
        if sink is not None:
            sink.close()  # the child holds its own copy


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return out


@pytest.fixture
def devnet_up(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``gpumarket devnet up --json`` in ``tmp_path``: its ready document."""
    proc = _start(tmp_path, "devnet", "up", "--json", log=tmp_path / "devnet.log")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the one JSON document, printed once it is ready
        assert line, proc.communicate(timeout=30)[0]
        yield json.loads(line)
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out


def _block(rpc_url: str) -> int:
    return int(Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 5})).eth.block_number)


def _address(new_key_output: str) -> str:
    found = re.search(r"address\s+(0x[0-9a-fA-F]{40})", new_key_output)
    assert found is not None, new_key_output
    return found[1]


def test_devnet_up_mines_without_transactions_and_prints_its_public_test_keys(
    tmp_path: Path, devnet_up: dict[str, Any]
) -> None:
    ready = devnet_up
    assert ready["chainId"] == 31337
    assert ready["blockTimeS"] == 1
    assert Path(ready["deploymentFile"]) == tmp_path / ".gpumarket" / "deployment.json"
    assert set(ready["contracts"]) >= {"Market", "TestUSD"}
    assert ready["testAccounts"][0] == {
        "address": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "private_key": "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    }
    assert "PUBLIC TEST KEYS" in ready["warning"]
    client = MarketClient.connect(Deployment.load(Path(ready["deploymentFile"])))
    assert client.claim_window() == ready["claimWindowS"] == 20  # a paid lease closes in seconds
    # The waits were announced on stderr; stdout held the JSON document alone (the fixture read it).
    progress = (tmp_path / "devnet.log").read_text().splitlines()
    assert progress[:2] == [
        "starting anvil: waiting for its RPC endpoint…",
        f"deploying the contracts to {ready['rpcUrl']}: waiting for the transactions…",
    ]
    first = _block(ready["rpcUrl"])
    wait_until(lambda: _block(ready["rpcUrl"]) >= first + 2, timeout_s=20, what="two new blocks")


def test_first_hour_keys_faucet_init_and_check(tmp_path: Path, devnet_up: dict[str, Any]) -> None:
    made = _run(tmp_path, "keys", "new", "--out", "provider-key.json")
    assert made.returncode == 0, made.stderr
    provider = _address(made.stdout)
    assert oct((tmp_path / "provider-key.json").stat().st_mode & 0o777) == "0o600"
    listed = _run(tmp_path, "keys", "list")
    assert f"{provider}  {tmp_path / 'provider-key.json'}" in listed.stdout

    init = _run(tmp_path, "provider", "init", "--keystore", "provider-key.json")
    assert init.returncode == 0, init.stderr
    text = (tmp_path / "provider.toml").read_text()
    assert f'rpc_url = "{devnet_up["rpcUrl"]}"' in text
    again = _run(tmp_path, "provider", "init", "--keystore", "provider-key.json")
    assert again.returncode == 1
    assert "never overwrites" in again.stderr
    assert (tmp_path / "provider.toml").read_text() == text

    unfunded = _run(tmp_path, "provider", "--config", "provider.toml", "--check")
    assert unfunded.returncode == 1, unfunded.stdout
    lines = unfunded.stdout.splitlines()
    assert [line.split()[1] for line in lines] == [
        "config", "keystore", "chain", "gas", "stake", "balance", "allowance",
    ]  # fmt: skip
    assert (
        f"FAIL  balance    {provider} holds 0 tUSD but the stake takes 1,000 tUSD -> get tokens: "
        f"gpumarket faucet {provider} 1000"
    ) in lines

    funded = _run(tmp_path, "faucet", provider, "1000")
    assert funded.returncode == 0, funded.stderr
    assert funded.stdout == f"sent 1000 tUSD and 1 ETH to {provider}\n"
    assert funded.stderr == (
        f"sending 1000 tUSD and 1 ETH to {provider}: waiting for the transactions…\n"
    )
    passing = _run(tmp_path, "provider", "--config", "provider.toml", "--check")
    assert passing.returncode == 0, passing.stdout
    assert all(line.startswith("ok") for line in passing.stdout.splitlines())

    # A stake below the market's minimum (100 tUSD here) is refused before anything is staked.
    low = tmp_path / "low.toml"
    low.write_text(text.replace('stake = "1000" ', 'stake = "1" '))
    assert low.read_text() != text
    start = _run(tmp_path, "provider", "--config", "low.toml")
    assert start.returncode == 1
    assert "set [agent] stake = 100 or more" in start.stderr
    assert "Traceback" not in start.stderr
    still = _run(tmp_path, "provider", "--config", "low.toml", "--check")
    assert "registered with" not in still.stdout  # nothing was staked
    assert "holds 1,000 tUSD" in still.stdout  # fmt: skip

    lab = _run(tmp_path, "lab", "init")  # a new keystore, lab-key.json
    assert lab.returncode == 0, lab.stderr
    lab_address = _address(lab.stdout.replace("new key", "address"))
    lab_check = _run(tmp_path, "lab", "--config", "lab.toml", "--check")
    assert lab_check.returncode == 1
    assert f"-> get tokens: gpumarket faucet {lab_address} 1" in lab_check.stdout
    _run(tmp_path, "faucet", lab_address, "0", "--eth", "1")  # gas, but no tokens
    broke = _run(tmp_path, "lab", "--config", "lab.toml", "--exit-when-done")
    assert broke.returncode == 1  # told at start, before any approval or bid is posted
    assert "Traceback" not in broke.stderr
    assert (
        f"but the jobs' escrow takes 0.048 tUSD; get tokens: gpumarket faucet {lab_address} 1"
        in (broke.stderr)
    )
    _run(tmp_path, "faucet", lab_address, "10")
    assert _run(tmp_path, "lab", "--config", "lab.toml", "--check").returncode == 0


def _ok(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = _run(cwd, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def _await_line(proc: subprocess.Popen[str], prefix: str, log: Path) -> str:
    """The first stdout line of ``proc`` starting with ``prefix`` (its ready line)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"exited {proc.wait()} before {prefix!r}: {log.read_text()}")


def test_the_guide_followed_literally_ends_with_a_settled_lease(
    tmp_path: Path, devnet_up: dict[str, Any]
) -> None:
    """docs/guides.md's five steps, as written, but the ports: free ones, not 7000 and 7100
    (the guide says how to choose others), so that runs side by side do not collide."""
    relay_url = f"http://127.0.0.1:{free_port()}"
    matcher = {"GPUMARKET_MATCHER_KEY": devnet_up["testAccounts"][1]["private_key"]}
    daemons: list[subprocess.Popen[str]] = []
    try:
        relay = _start(
            tmp_path, "relay", "--db", "relay.sqlite", "--port", relay_url.rsplit(":", 1)[1],
            "--matcher-key-env", "GPUMARKET_MATCHER_KEY", env=matcher, log=tmp_path / "relay.log",
        )  # fmt: skip
        daemons.append(relay)
        assert relay_url in _await_line(relay, "relay ready url=", tmp_path / "relay.log")

        provider = _address(_ok(tmp_path, "keys", "new", "--out", "provider-key.json").stdout)
        _ok(tmp_path, "faucet", provider, "1000")
        _ok(tmp_path, "provider", "init", "--keystore", "provider-key.json",
            "--out", "provider.toml", "--relay", relay_url)  # fmt: skip
        config = tmp_path / "provider.toml"
        written = config.read_text()
        config.write_text(written.replace("port = 7100 ", f"port = {free_port()} "))
        assert config.read_text() != written
        checked = _ok(tmp_path, "provider", "--config", "provider.toml", "--check")
        assert all(line.startswith("ok") for line in checked.stdout.splitlines())
        agent = _start(tmp_path, "provider", "--config", "provider.toml",
                       log=tmp_path / "provider.log")  # fmt: skip
        daemons.append(agent)
        ready = _await_line(agent, "provider ready url=", tmp_path / "provider.log")
        assert f"address={provider}" in ready
        starting = f"provider {provider}: starting: waiting for the chain (registration, stake"
        assert (tmp_path / "provider.log").read_text().startswith(starting)

        lab = _address(_ok(tmp_path, "keys", "new", "--out", "lab-key.json").stdout)
        _ok(tmp_path, "faucet", lab, "100")
        _ok(tmp_path, "lab", "init", "--keystore", "lab-key.json", "--out", "lab.toml",
            "--relay", relay_url)  # fmt: skip
        _ok(tmp_path, "lab", "--config", "lab.toml", "--check")
        done = _ok(tmp_path, "lab", "--config", "lab.toml", "--exit-when-done")
        events = [line.split()[3] for line in done.stderr.splitlines() if len(line.split()) > 3]
        for event in ("lease_opened", "receipt_verified", "voucher_sent", "lab_done"):
            assert event in events, done.stderr
        waits = "lab: bids posted: waiting for a match (lease_opened), then the leases' settlement…"
        assert done.stderr.index(waits) < done.stderr.index("lease_opened")
        billed = [int(m) for m in re.findall(r"receipt_verified .* gpu_seconds=(\d+)", done.stderr)]

        (bid,) = json.loads(_ok(tmp_path, "bids", "--config", "lab.toml", "--json").stdout)["bids"]
        assert bid["fate"] == "matched"
        (lease_id,) = bid["leaseIds"]
        lease = json.loads(
            _ok(tmp_path, "lease", lease_id, "--config", "lab.toml", "--json").stdout
        )
        price = lease["terms"]["pricePerGpuSecond"]
        assert price == 500  # 1.80 tUSD per GPU-hour, as provider init wrote it
        assert lease["status"] == "closed"
        assert lease["paid"] == price * billed[-1] > 0  # every verified GPU-second, no more
        names = [e["name"] for e in lease["events"]]
        assert names[0] == "LeaseOpened"
        assert "LeaseClosed" in names, names
        claims = [e["values"] for e in lease["events"] if e["name"] == "Claimed"]
        assert claims, names  # the provider's claim of the lab's vouchers was paid
        assert claims[-1]["cumulative_paid"] == lease["paid"]

        def standing(address: str) -> dict[str, Any]:
            done = _ok(tmp_path, "status", "--address", address, "--json")
            assert done.stderr.startswith(f"reading {address}'s standing: waiting for the chain")
            return dict(json.loads(done.stdout))  # the document alone on stdout

        wait_until(lambda: standing(provider)["withdrawable"] == 0, timeout_s=20,
                   what="the provider's pay withdrawn")  # fmt: skip
        paid_provider, paid_lab = standing(provider), standing(lab)
        assert paid_provider["balance"] == lease["paid"]  # 1,000 tUSD staked, its pay withdrawn
        assert paid_provider["provider"]["stake"] == 1000 * 10**6
        assert paid_lab["balance"] == 100 * 10**6 - lease["paid"]  # the rest refunded
        assert paid_lab["withdrawable"] == 0
        assert [(le["id"], le["status"]) for le in paid_lab["leases"]] == [(lease_id, "closed")]
    finally:
        for proc in reversed(daemons):
            _stop(proc)
    assert [proc.returncode for proc in daemons] == [0, 0]


def test_keys_import_takes_the_key_on_stdin(tmp_path: Path) -> None:
    key = "0x" + "11" * 32
    done = _run(tmp_path, "keys", "import", "--out", "k.json", stdin=key + "\n")
    assert done.returncode == 0, done.stderr
    assert _address(done.stdout) == "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"


def test_block_time_0_mines_on_transactions_only_and_the_faucet_is_refused_off_a_devnet(
    tmp_path: Path,
) -> None:
    proc = _start(tmp_path, "devnet", "up", "--chain-id", "1338", "--block-time", "0", "--json",
                  log=tmp_path / "devnet.log")  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        rpc = Web3(HTTPProvider(ready["rpcUrl"], request_kwargs={"timeout": 5})).provider
        assert ready["blockTimeS"] == 0
        assert rpc.make_request(RPCEndpoint("anvil_getAutomine"), [])["result"] is True
        assert rpc.make_request(RPCEndpoint("anvil_getIntervalMining"), [])["result"] is None
        refused = _run(tmp_path, "faucet", ready["testAccounts"][1]["address"], "5")
    finally:
        _stop(proc)
    assert refused.returncode == 1
    assert "chain 1338" in refused.stderr
    assert "is not a devnet" in refused.stderr


def _demo_until_serving(*options: str) -> tuple[subprocess.Popen[str], Path, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodes.cli", "demo", "--providers", "1", "--labs", "1",
         "--jobs", "1", *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:  # the relay serves once devnet, contracts and folder are there
        seen.append(line)
        if line.startswith("relay     serving at"):
            break
    found = re.search(r"logs in (\S+)", "".join(seen))
    assert found is not None, "".join(seen)
    return proc, Path(found[1]), seen


@pytest.mark.parametrize("keep", [False, True])
def test_demo_ctrl_c_stops_cleanly_and_removes_its_folder_unless_kept(keep: bool) -> None:
    proc, folder, seen = _demo_until_serving(*(["--keep"] if keep else []))
    assert folder.is_dir()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    out = "".join(seen) + out
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert "interrupted: daemons and devnet stopped" in out
    assert folder.exists() is keep
    if keep:
        assert (folder / "relay.log").is_file()
        shutil.rmtree(folder)
