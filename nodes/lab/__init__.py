"""The lab client: ``gpumarket lab`` and its Python API.

* :mod:`~nodes.lab.config`: the TOML config (jobs to lease, relays, key, chain);
* :mod:`~nodes.lab.store`: what the lab keeps in SQLite, written before it acts;
* :mod:`~nodes.lab.provider_client`: the provider's job API (jobs, receipts, outputs, vouchers);
* :mod:`~nodes.lab.outputs`: streamed outputs on disk: chunks proved before they are stored,
  resumable after a crash;
* :mod:`~nodes.lab.checks`: output checks per job kind (Freivalds samples, command reruns);
* :mod:`~nodes.lab.ledger`: the blocking side: chain events, actions, settlement;
* :mod:`~nodes.lab.agent`: the daemon; :mod:`~nodes.lab.cli`: its command line.
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
from nodes.lab.store import LAB_MIGRATIONS, JobRecord, LabAction, LabStore, LeaseRecord

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
    "LabSettings",
    "LabStore",
    "Ledger",
    "LeaseOutput",
    "LeaseRecord",
    "MatmulCheck",
    "OutputCheck",
    "OutputCheckFailed",
    "PeriodFile",
    "ProviderClient",
    "UnknownLease",
    "UnknownPeriod",
    "CommandRerun",
    "NotYetCheckable",
    "load_config",
    "local_argv",
    "make_check",
    "open_chunks",
]
