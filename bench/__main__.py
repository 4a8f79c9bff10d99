"""Run every benchmark: ``python -m bench``."""

from __future__ import annotations

from bench import devnet, gas

BENCHMARKS = [devnet.main, gas.main]

for run in BENCHMARKS:
    run()
