"""The lab client: ``gpumarket lab`` and its Python API.

* :mod:`~nodes.lab.config`: the TOML config (jobs to lease, relays, key, chain), on the
  daemons' common part (:mod:`nodes.daemon.config`);
* :mod:`~nodes.lab.store`: what the lab keeps in SQLite, written before it acts;
* :mod:`~nodes.lab.provider_client`: the provider's job API (jobs, receipts, outputs, vouchers);
* :mod:`~nodes.lab.outputs`: streamed outputs on disk: chunks proved before they are stored,
  resumable after a crash;
* :mod:`~nodes.lab.checks`: output checks per job kind (Freivalds samples, command reruns);
* :mod:`~nodes.lab.ledger`: the blocking side: chain events, actions, settlement;
* :mod:`~nodes.lab.ticks`: the tick: events, bids, each lease's step, actions, settlement;
* :mod:`~nodes.lab.verify`: a period verified (receipt, metrics, output) and paid;
* :mod:`~nodes.lab.server`: ``/metrics`` and ``/healthz``;
* :mod:`~nodes.lab.agent`: the daemon composing them; :mod:`~nodes.lab.cli`: its command line.

The lab imports nothing of :mod:`nodes.provider` or :mod:`nodes.relay` (but the relay's client,
bound for :mod:`nodes.wire`): what daemons share is in :mod:`nodes.daemon`.
"""

from nodes.lab.agent import LabAgent
from nodes.lab.checks import (
    CommandCheck,
    CommandRerun,
    MatmulCheck,
    NotYetCheckable,
    OutputCheck,
    OutputCheckFailed,
    local_argv,
    make_check,
)
from nodes.lab.config import JobConfig, LabConfig, LabSettings, load_config
from nodes.lab.ledger import Ledger
from nodes.lab.metrics import LabMetrics
from nodes.lab.outputs import LeaseOutput, PeriodFile, open_chunks
from nodes.lab.provider_client import (
    JobExists,
    JobRefused,
    ProviderClient,
    UnknownLease,
    UnknownPeriod,
)
from nodes.lab.server import LabServer
from nodes.lab.store import LAB_MIGRATIONS, JobRecord, LabAction, LabStore, LeaseRecord
from nodes.lab.ticks import LabTicks
from nodes.lab.verify import PeriodVerifier, Rejected

__all__ = [
    "LAB_MIGRATIONS",
    "CommandCheck",
    "JobConfig",
    "JobExists",
    "JobRecord",
    "JobRefused",
    "LabAction",
    "LabAgent",
    "LabConfig",
    "LabMetrics",
    "LabServer",
    "LabSettings",
    "LabStore",
    "LabTicks",
    "Ledger",
    "LeaseOutput",
    "LeaseRecord",
    "MatmulCheck",
    "OutputCheck",
    "OutputCheckFailed",
    "PeriodFile",
    "PeriodVerifier",
    "ProviderClient",
    "Rejected",
    "UnknownLease",
    "UnknownPeriod",
    "CommandRerun",
    "NotYetCheckable",
    "load_config",
    "local_argv",
    "make_check",
    "open_chunks",
]
