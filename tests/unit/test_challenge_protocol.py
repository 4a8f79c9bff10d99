"""The hardware challenge as the daemons run it: commit to the product's rows, open the rows the
lab draws from the root, check them by Freivalds; the provider's desk answers only the lease's
lab, one challenge at a time, at a bounded rate; the lab's schedule and config."""

from __future__ import annotations

import random
import secrets
from pathlib import Path

import numpy as np
import pytest

from market.errors import InvalidSignature
from market.protocol.eip712 import Domain
from market.protocol.signing import SigningKey
from market.protocol.types import Lease
from market.receipts.challenge import (
    Challenge,
    check_rows,
    commit_rows,
    pick_rows,
    request_digest,
    row_bytes,
    solve,
)
from nodes.errors import ConfigError
from nodes.lab.challenges import MIN_GAP_S, ChallengeSchedule
from nodes.lab.config import ChallengeSettings, load_config
from nodes.provider.challenges import ChallengeDesk, ChallengeRefused
from nodes.wire import ChallengeOpen, ChallengeRequest

pytestmark = pytest.mark.unit

N = 48
DOMAIN = Domain(31337, "0x" + "5f" * 20)
LAB = SigningKey(b"\x44" * 32)
OTHER = SigningKey(b"\x45" * 32)
LEASE = Lease("0x" + "11" * 20, LAB.address, 1, 3, 100, 60, b"\x08" * 32)


def _opened(product: np.ndarray, rows: tuple[int, ...]) -> dict[int, tuple[bytes, list[bytes]]]:
    tree = commit_rows(product)
    return {i: (row_bytes(product, i), tree.proof(i)) for i in rows}


def test_the_honest_product_passes_and_any_wrong_row_opened_fails() -> None:
    challenge = Challenge(secrets.token_bytes(32), N, "cpu-test")
    product = solve(challenge).product
    root = commit_rows(product).root
    rows = pick_rows(b"s" * 32, root, N, 8)
    assert len(set(rows)) == 8
    assert check_rows(challenge, root, _opened(product, rows))
    partial = product.copy()
    partial[rows[3]] = 0  # a row it did not compute, committed anyway
    assert not check_rows(challenge, commit_rows(partial).root, _opened(partial, rows))


def test_a_row_not_under_the_root_or_out_of_range_fails() -> None:
    challenge = Challenge(secrets.token_bytes(32), N, "cpu-test")
    product = solve(challenge).product
    root = commit_rows(product).root
    opened = _opened(product, (1, 2))
    data, proof = opened[1]
    assert not check_rows(challenge, root, {1: (data, proof), 2: (data, opened[2][1])})
    assert not check_rows(challenge, root, {N: (data, proof)})
    assert not check_rows(challenge, root, {})
    huge = np.full(N, 2**30, dtype="<i4").tobytes()
    assert not check_rows(challenge, root, {1: (huge, proof)})


def test_the_rows_are_drawn_from_the_root_so_they_are_unknown_before_the_commitment() -> None:
    draws = {pick_rows(b"s" * 32, bytes([i]) * 32, 1000, 4) for i in range(20)}
    assert len(draws) == 20
    assert pick_rows(b"s" * 32, b"\x01" * 32, 1000, 4) == pick_rows(
        b"s" * 32, b"\x01" * 32, 1000, 4
    )
    assert sorted(pick_rows(b"s" * 32, b"\x01" * 32, 3, 10)) == [0, 1, 2]


def _request(key: SigningKey = LAB, n: int = N, seed: bytes | None = None) -> ChallengeRequest:
    seed = seed or secrets.token_bytes(32)
    signature = key.unsafe_sign_hash(request_digest(DOMAIN, LEASE.id, seed, n))
    return ChallengeRequest(LEASE.id, seed, n, signature)


def test_the_desk_answers_the_leases_lab_once_per_interval_and_opens_once() -> None:
    desk = ChallengeDesk(DOMAIN, min_interval_s=3600)
    request = _request()
    desk.authenticate(request, LEASE)
    commitment = desk.commit(request)
    challenge = Challenge(request.seed, N, "cpu-test")
    rows = pick_rows(b"x" * 32, commitment.root, N, 5)
    opened = desk.open(ChallengeOpen(LEASE.id, request.seed, rows))
    got = {r.index: (r.data, list(r.proof)) for r in opened.rows}
    assert check_rows(challenge, commitment.root, got)
    with pytest.raises(ChallengeRefused, match="no committed challenge") as info:
        desk.open(ChallengeOpen(LEASE.id, request.seed, rows))  # opened once only
    assert info.value.status == 404
    with pytest.raises(ChallengeRefused, match="one challenge per") as busy:
        desk.commit(_request())
    assert busy.value.status == 429


def test_the_desk_refuses_strangers_and_oversize_challenges() -> None:
    desk = ChallengeDesk(DOMAIN)
    with pytest.raises(InvalidSignature):
        desk.authenticate(_request(OTHER), LEASE)
    seed = secrets.token_bytes(32)
    replayed = _request(seed=seed)
    with pytest.raises(InvalidSignature):  # the signature binds the size
        desk.authenticate(ChallengeRequest(LEASE.id, seed, N + 1, replayed.signature), LEASE)
    with pytest.raises(ChallengeRefused, match="n must be in"):
        desk.authenticate(ChallengeRequest(LEASE.id, seed, 20_000, replayed.signature), LEASE)


def test_the_schedule_challenges_at_once_then_after_the_gap_plus_a_random_wait() -> None:
    schedule = ChallengeSchedule(ChallengeSettings(mean_interval_s=30), random.Random(1))
    lease = b"\x01" * 32
    assert schedule.due(lease, 0.0)
    schedule.ran(lease, 100.0)
    assert not schedule.due(lease, 100.0 + MIN_GAP_S - 0.001)
    waits = []
    for _ in range(200):
        schedule.ran(lease, 0.0)
        t = MIN_GAP_S
        while not schedule.due(lease, t):
            t += 1.0
        waits.append(t - MIN_GAP_S)
    assert 15 < sum(waits) / len(waits) < 45  # exponential, mean 30
    assert schedule.busy(lease, 0.0) == 1
    assert schedule.busy(lease, 0.0) == 2
    schedule.ran(lease, 0.0)
    assert schedule.busy(lease, 0.0) == 1  # counted in a row only


def test_gpu_classes_come_from_the_map_the_model_prefix_or_the_default() -> None:
    settings = ChallengeSettings(classes=(("X1-80GB", "H100"),))
    assert settings.gpu_class("X1-80GB") == "H100"
    assert settings.gpu_class("A100-80GB") == "A100"
    assert settings.gpu_class("F0-80GB") is None
    assert ChallengeSettings(default_class="cpu-test").gpu_class("F0-80GB") == "cpu-test"


def _config(tmp_path: Path, challenge: str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(
        '[key]\nkeystore = "k.json"\n[relays]\nurls = ["http://127.0.0.1:1"]\n'
        f"[challenge]\n{challenge}"
        '[[jobs]]\nmodel = "H100-80GB"\ngpus = 1\nmax_price_per_gpu_hour = "1"\n'
        'duration = 60\nkind = "command"\nargv = ["true"]\n',
        encoding="utf-8",
    )
    return path


def test_the_challenge_table_is_read_and_bad_values_name_their_field(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, 'n = 256\nrows = 4\nclasses = { "Z-1" = "T4" }\n'))
    assert config.challenge == ChallengeSettings(n=256, rows=4, classes=(("Z-1", "T4"),))
    for bad, field in (
        ("n = 20000\n", "challenge.n"),
        ("rows = 65\n", "challenge.rows"),
        ("mean_interval_s = 0\n", "challenge.mean_interval_s"),
        ('classes = { "Z-1" = "Z80" }\n', "challenge.classes.Z-1"),
        ('default_class = "Z80"\n', "challenge.default_class"),
        ("speed = 1\n", "challenge.speed"),
    ):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config(_config(tmp_path, bad))
