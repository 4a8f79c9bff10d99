"""The process the SIGKILL test kills: one claim through the intent log, stopped at a step.

python -m tests.integration.state_child DEPLOYMENT KEY DB ACTION STEP
    runs the ClaimBatch whose encoding is in the file ACTION; at checkpoint STEP it prints
    ``at STEP INTENT_ID`` and blocks on stdin until it is killed (or stdin closes)
python -m tests.integration.state_child DEPLOYMENT KEY DB reconcile
    reconciles what a previous run left open; prints one JSON line per outcome
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from market.chain.client import MarketClient
from market.chain.deploy import Deployment
from nodes.state import ClaimBatch, DurableChain, Intent, StateDB, Step


def main(argv: list[str]) -> int:
    deployment, key, db_path = Deployment.load(Path(argv[0])), argv[1], Path(argv[2])
    client = MarketClient.connect(deployment, key)
    if argv[3] == "reconcile":
        for outcome in DurableChain(StateDB.open(db_path), client).reconcile():
            print(json.dumps({"status": outcome.status, "result": outcome.result}), flush=True)
        return 0
    stop = argv[4]

    def checkpoint(step: Step, intent: Intent) -> None:
        if step == stop:
            print(f"at {step} {intent.id}", flush=True)
            sys.stdin.read()  # wait here for the SIGKILL

    chain = DurableChain(StateDB.open(db_path), client, checkpoint=checkpoint)
    chain.run(ClaimBatch.decode(Path(argv[3]).read_bytes()))
    print("finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
