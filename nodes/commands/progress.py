"""Progress on long waits: one line on stderr saying what a command waits for.

    waiting("cancelling 0xab…")    # "cancelling 0xab…: waiting for the transaction…"
    waiting("deploying the contracts", on="the transactions")

Every command that may wait more than a couple of seconds (a transaction's receipt, a chain read
over many blocks, a daemon's start on chain) says so before it waits, on stderr, so ``--json``
output on stdout stays one clean document and a person is never left before a silent terminal.
With ``GPUMARKET_LOG_FORMAT=json`` stderr belongs to a log shipper (one JSON object a line, the
daemons' logs): then nothing is printed.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from nodes.logs import FORMAT_ENV


def waiting(what: str, *, on: str = "the transaction", out: TextIO | None = None) -> None:
    """Print ``<what>: waiting for <on>…`` on stderr (or ``out``), flushed at once; nothing when
    the logs on stderr are JSON lines."""
    if os.environ.get(FORMAT_ENV, "").strip().lower() == "json":
        return
    print(f"{what}: waiting for {on}…", file=out or sys.stderr, flush=True)


__all__ = ["waiting"]
