"""A real process SIGKILLed in the middle of a claim, then restarted: paid once, to the unit."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodes.state import ClaimBatch, Intent, IntentLog, StateDB
from tests.integration.conftest import MarketEnv
from tests.integration.state_setup import PAID, PROVIDER, claims_of, open_lease
from tests.waiting import pid_alive, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LINE_DEADLINE_S = 60.0


def _child(stderr: Path, *args: str) -> subprocess.Popen[bytes]:
    with stderr.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.state_child", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )


def _read_line(proc: subprocess.Popen[bytes], stderr: Path) -> str:
    """The child's next stdout line, waiting at most LINE_DEADLINE_S."""
    assert proc.stdout is not None
    fd, line = proc.stdout.fileno(), b""
    deadline = time.monotonic() + LINE_DEADLINE_S
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no line from the child within {LINE_DEADLINE_S}s")
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"the child exited: {stderr.read_text()[-2000:]}")
        line += chunk
    return line.decode().strip()


def _open_intents(db: Path) -> list[Intent]:
    state = StateDB.open(db)
    try:
        return IntentLog(state).open_intents()
    finally:
        state.close()


@pytest.mark.parametrize("step", ["intent_written", "broadcast"])
def test_claim_killed_mid_way_and_restarted_pays_exactly_once(
    env: MarketEnv, tmp_path: Path, step: str
) -> None:
    leased = open_lease(env)
    deployment = tmp_path / "deployment.json"
    env.contracts.deployment.save(deployment)
    action = tmp_path / "claim.msgpack"
    action.write_bytes(ClaimBatch(((leased.lease, leased.voucher),)).encode())
    key = "0x" + env.devnet.accounts[PROVIDER].key.hex()
    db = tmp_path / "provider.sqlite"
    before = leased.provider.balance()

    stderr = tmp_path / "child.err"
    proc = _child(stderr, str(deployment), key, str(db), str(action), step)
    try:
        assert _read_line(proc, stderr).startswith(f"at {step} ")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    wait_until(lambda: not pid_alive(proc.pid), what="the killed child to be gone")
    (left,) = _open_intents(db)
    assert left.status == ("pending" if step == "intent_written" else "sent")
    paid = leased.provider.client.lease_state(leased.lease.id).paid
    assert paid == (0 if step == "intent_written" else PAID)

    restart = _child(stderr, str(deployment), key, str(db), "reconcile")
    out, _ = restart.communicate(b"", timeout=LINE_DEADLINE_S)
    assert restart.returncode == 0, stderr.read_text()[-2000:]
    (outcome,) = [json.loads(line) for line in out.decode().splitlines()]
    assert outcome["status"] == "done"
    assert outcome["result"]["total"] == PAID

    assert claims_of(env, leased.lease) == [PAID]
    assert _open_intents(db) == []
    leased.provider.client.transactor.resync_nonce()  # the children sent from this account
    assert leased.provider.withdraw() == PAID
    assert leased.provider.balance() == before + PAID
