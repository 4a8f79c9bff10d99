"""Where benchmark figures go: one flat JSON map per benchmark under bench/results/."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write(name: str, figures: dict[str, float | int | str]) -> Path:
    """Write ``figures`` (plus when and where they were measured) to bench/results/NAME.json."""
    body = dict(figures)
    body["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body["machine"] = (
        f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}"
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
