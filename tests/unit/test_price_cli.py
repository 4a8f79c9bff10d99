"""``gpumarket price backtest`` on a recorded file, in process: the config's or the named
policy's prices per GPU-hour, converted with the recording's token, replayed per GPU group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from market.pricing import Ask, BidEntry, BookSample, Header, LeaseSample, Recording, TokenInfo
from nodes.cli import main

pytestmark = pytest.mark.unit

MODEL = "H100-80GB"
PROVIDER = """
[key]
keystore = "key.json"
[[inventory.gpus]]
model = "H100-80GB"
count = 4
memory_gib = 80
[[inventory.gpus]]
model = "L4-24GB"
count = 1
memory_gib = 24
devices = [4]
[pricing]
policy = "fixed"
params = { price_per_gpu_hour = "2.16" }
"""


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "market.jsonl"
    Recording(
        Header(1, TokenInfo("tUSD", 6), "test"),
        (
            BookSample(time=0, model=MODEL, asks=(Ask("0xa", 700, 8, 80),),
                       bids=(BidEntry("0xb", 800, 2, 3600),)),
            LeaseSample(time=10, model=MODEL, memory_gib=80, gpus=4, price=650, duration=100),
            LeaseSample(time=20, model="L4-24GB", memory_gib=24, gpus=1, price=100, duration=60),
        ),
    ).dump(path)  # fmt: skip
    return path


def test_backtest_replays_the_configs_policy_for_each_gpu_group(
    recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "provider.toml"
    config.write_text(PROVIDER, encoding="utf-8")
    assert main(["price", "backtest", str(recording), "--config", str(config), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["token"], doc["policy"]) == ({"symbol": "tUSD", "decimals": 6}, "fixed")
    h100, l4 = doc["results"]
    # 2.16 tUSD/GPU-hour is 600 base units/GPU-second: under the ask (700) and the lease (650);
    # the bid takes 2 of 4 GPUs for an hour, so the lease's 4 GPUs find too few free.
    assert (h100["model"], h100["opportunities"], h100["matched"]) == (MODEL, 2, 1)
    assert (h100["earned"], h100["capacity_misses"]) == (600 * 2 * 3600, 1)
    assert (l4["matched"], l4["priced_out"]) == (0, 1)  # 600 is above the L4 lease's 100


def test_backtest_prints_tokens_and_prices_per_gpu_hour(
    recording: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["price", "backtest", str(recording), "--policy", "fixed", "--params",
            '{ price_per_gpu_hour = "2.16" }', "--model", MODEL, "--gpus", "8",
            "--memory-gib", "80"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{MODEL} x8 (80 GiB), policy fixed, over 20 s of recording:",
        "  matched   2 of 2 opportunities (100%); 0 lost on price, 0 found too few GPUs free",
        "  earned    4.56 tUSD for 2.11 GPU-hours sold (average 2.16 tUSD/GPU-hour)",
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--policy", "fixed", "--params", '{ price_per_gpu_second = 600 }', "--model", MODEL],
         "price_per_gpu_hour = 600 x 3600"),
        (["--policy", "fixed", "--params", "{ nope", "--model", MODEL], "no TOML table"),
        (["--model", MODEL], "give --config or --policy"),
        (["--policy", "fixed", "--params", '{ price_per_gpu_hour = "1" }'], "--model"),
    ],
)  # fmt: skip
def test_backtest_refuses_what_it_cannot_run_with_one_line(
    recording: Path, args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["price", "backtest", str(recording), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert says in err
