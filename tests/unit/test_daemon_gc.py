"""A daemon's process collects cycles in larger batches, with what it built at start frozen out;
a library user's process is left as it was."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nodes.daemon.startup import GC_THRESHOLDS

pytestmark = pytest.mark.unit

PROBE = """
import gc
before = gc.get_threshold()
import nodes.relay.run  # importing the daemon's modules changes nothing
assert gc.get_threshold() == before, gc.get_threshold()
from nodes.daemon.startup import tune_gc
kept = [[i] for i in range(10_000)]
tune_gc()
print(gc.get_threshold(), gc.get_freeze_count() >= 10_000)
"""


def test_tune_gc_raises_the_thresholds_and_freezes_what_start_built() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == f"{GC_THRESHOLDS} True"
