"""A large job output through the daemons: how fast a lab receives, proves and stores it.

python -m bench.outputs [--mib 256] -> bench/results/outputs.json

A devnet (a block a second), a relay, a provider agent and a lab client, all processes on
loopback (:class:`nodes.localnet.LocalMarket`). The lab's one job is a command that writes
``--mib`` MiB to stdout in about a second; the provider commits each period's output by its
1 MiB chunk hashes and serves the chunks (``POST /v1/outputs``); the lab opens each, checks its
Merkle proof, writes it to disk, checks the period against its own rerun of the command, then
pays. Figures:

* ``transfer_mib_s``: MiB fetched over the seconds the lab spent fetching, opening, proving and
  storing them (its ``output_received`` events, summed over the streamed periods);
* ``keccak_mib_s``: baseline, one thread hashing the same bytes with the keccak the daemons use,
  in 1 MiB chunks, in this process; ``transfer_vs_keccak`` the ratio (the transfer hashes every
  byte three times: the provider's commitment, its check before serving, the lab's proof);
* ``job_verified_s``: from the lab's start (bid, match, lease, job) until it logged the whole
  output verified; ``output_mib``, ``periods_streamed``.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from bench.results_file import write
from market.chain.devnet import Devnet
from market.protocol.keccak import keccak
from nodes.localnet import LocalMarket, command_job

MODEL = "O0-80GB"
LEASE_S = 120


def job_source(mib: int) -> str:
    """A command writing ``mib`` MiB, each MiB distinct."""
    return (
        "import sys\nw = sys.stdout.buffer.write\nb = bytes(range(256)) * 4096\n"
        f"for i in range({mib}): w(i.to_bytes(4, 'big') + b[4:])\n"
    )


def keccak_mib_s(mib: int) -> float:
    block = bytes(range(256)) * 4096
    t0 = time.perf_counter()
    for i in range(mib):
        keccak(i.to_bytes(4, "big") + block[4:])
    return mib / (time.perf_counter() - t0)


def run(mib: int) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory() as tmp, Devnet.start(accounts=12, block_time=1) as dev:
        net = LocalMarket(dev, Path(tmp))
        try:
            relay = net.start_relay("relay")
            net.start_provider(0, [relay.url], model=MODEL, price=400)
            job = command_job(MODEL, ["python", "-c", job_source(mib)], duration=LEASE_S)
            t0 = time.monotonic()
            lab = net.start_lab(0, [relay.url], [job], exit_when_done=False)
            deadline = t0 + LEASE_S + 60
            while " job_verified " not in lab.log.read_text(encoding="utf-8"):
                if time.monotonic() > deadline or not lab.running:
                    raise RuntimeError(lab.log.read_text(encoding="utf-8")[-3000:])
                time.sleep(0.05)  # polling a log file for an event, not waiting for state
            verified_s = time.monotonic() - t0
            lines = lab.log.read_text(encoding="utf-8").splitlines()
        finally:
            net.stop_all()
    received = [
        dict(re.findall(r"(\w+)=(\S+)", line)) for line in lines if " output_received " in line
    ]
    fetched = sum(int(e["fetched"]) for e in received)
    seconds = sum(float(e["seconds"]) for e in received)
    if fetched != mib * 2**20:
        raise RuntimeError(f"the lab fetched {fetched} bytes of {mib * 2**20}")
    transfer = fetched / 2**20 / seconds
    baseline = keccak_mib_s(mib)
    return {
        "output_mib": mib,
        "periods_streamed": len(received),
        "transfer_mib_s": round(transfer, 1),
        "keccak_mib_s": round(baseline, 1),
        "transfer_vs_keccak": round(transfer / baseline, 3),
        "job_verified_s": round(verified_s, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outputs")
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args(argv)
    figures = run(args.mib)
    path = write("outputs", figures)
    print(f"wrote {path}: {figures}")


if __name__ == "__main__":
    main()
