"""Devnet figures: start-up, snapshot/revert and a signed transfer, each against a plain RPC call.

python -m bench.devnet      -> bench/results/devnet.json
"""

from __future__ import annotations

from bench.results_file import median_seconds, write
from market.chain.devnet import Devnet
from market.chain.tx import Transactor


def main() -> None:
    start_s = median_seconds(lambda: Devnet.start().stop(), repeat=5)
    with Devnet.start() as dev:
        w3 = dev.web3()
        rpc_s = median_seconds(lambda: dev.rpc("eth_blockNumber"), repeat=300)
        snap_s = median_seconds(lambda: dev.revert(dev.snapshot()), repeat=200)
        tx = Transactor(w3, dev.accounts[0])
        to = dev.accounts[1].address
        transfer_s = median_seconds(lambda: tx.send(to, b"", value=1, gas=21_000), repeat=200)
    figures: dict[str, float | int | str] = {
        "anvil_start_ms": round(start_s * 1e3, 2),
        "rpc_call_ms": round(rpc_s * 1e3, 3),
        "snapshot_revert_ms": round(snap_s * 1e3, 3),
        "snapshot_revert_vs_rpc_call": round(snap_s / rpc_s, 2),
        "signed_transfer_ms": round(transfer_s * 1e3, 3),
        "signed_transfer_vs_rpc_call": round(transfer_s / rpc_s, 2),
    }
    path = write("devnet", figures)
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
