"""Run every benchmark: ``python -m bench``."""

from __future__ import annotations

# audit first: it pins numpy's BLAS threads before numpy is first imported.
from bench import (
    audit,
    audit_e2e,
    devnet,
    e2e,
    fuzz,
    gas,
    matching,
    outputs,
    relay,
    relay_cluster,
    soak,
    verify,
)

BENCHMARKS = [
    audit.main,
    devnet.main,
    gas.main,
    verify.main,
    matching.main,
    relay.main,
    relay_cluster.main,
    e2e.main,
    audit_e2e.main,
    outputs.main,
    soak.main,
    fuzz.main,
]

for run in BENCHMARKS:
    run()
