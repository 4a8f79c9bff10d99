"""The lab's progress events: logged once and counted, never echoed on stdout as well (a terminal
showing both streams printed each event twice)."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest

from nodes.lab.agent import LabAgent
from nodes.lab.config import load_config

pytestmark = pytest.mark.unit

CONFIG = """
[key]
keystore = "/keys/k.json"
[relays]
urls = ["http://127.0.0.1:7000"]
[[jobs]]
model = "H100-80GB"
gpus = 1
max_price_per_gpu_hour = "0.0108"
duration = 60
kind = "command"
argv = ["true"]
"""


def test_an_event_is_logged_once_counted_and_not_printed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(CONFIG, encoding="utf-8")
    out = io.StringIO()
    deployment: Any = None  # emit never reads the chain
    agent = LabAgent(load_config(path), deployment, b"\x01" * 32, out=out)
    with caplog.at_level(logging.INFO, logger="gpumarket.lab"):
        agent.emit("voucher_sent", lease="0x01", amount=5)
    assert [(r.event, r.fields) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("voucher_sent", {"lease": "0x01", "amount": 5})
    ]
    assert out.getvalue() == ""
    assert agent.metrics.events.value(event="voucher_sent") == 1
