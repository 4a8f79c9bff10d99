"""The provider agent (``gpumarket provider``): what a provider has, asks, runs and bills.

* :mod:`~nodes.provider.agent`: the daemon: registration, offers, two worker threads, SIGTERM;
* :mod:`~nodes.provider.work`: its chain side, a tick at a time: leases, jobs, receipts, claims;
* :mod:`~nodes.provider.service`: its HTTP API for labs: jobs, receipts, vouchers, metrics;
* :mod:`~nodes.provider.store`: its own tables (sealing key, cursor, jobs, offers, periods);
* :mod:`~nodes.provider.outputs`: a period's large output left in the job's file, committed
  by its chunk hashes and served chunk by chunk;

* :mod:`~nodes.provider.config`: the TOML config, on the daemons' common part (config's
  common tables, keystore: :mod:`nodes.daemon`);
* :mod:`~nodes.provider.inventory`: GPUs through NVML, else as declared;
* :mod:`~nodes.provider.pricing`: pricing policies, built-in and plugged in;
* :mod:`~nodes.provider.runtime`: jobs as subprocesses with time, memory, disk and GPU limits;
* :mod:`~nodes.provider.sandbox`: the bubblewrap command line every job runs under;
  :mod:`~nodes.provider.seccomp` its system-call deny list, :mod:`~nodes.provider.cgroups` its
  per-lease memory, process and CPU limits, :mod:`~nodes.provider.confinement` what the agent
  enforces (probed and logged at start, a spec's asks checked against the policy);
* :mod:`~nodes.provider.metering`: reserved (rental) or busy (metered) time into GPU-seconds
  into signed, stored receipts;
* :mod:`~nodes.provider.decisions`: why it did not offer, as log events (``no_match``:
  :mod:`nodes.daemon.explain`).

Durable state and chain actions are :mod:`nodes.state`'s.
"""

from nodes.provider.cgroups import CgroupHost, CgroupLimits
from nodes.provider.config import (
    AgentConfig,
    ChainConfig,
    GpuDeclaration,
    InventoryConfig,
    JobLimits,
    KeyConfig,
    MeteringConfig,
    PricingConfig,
    ProviderConfig,
    decrypt_key,
    load_config,
    load_deployment,
)
from nodes.provider.confinement import Confinement
from nodes.provider.decisions import (
    POLICY_DECLINED,
    STAKE_LOCK_UNCOVERED,
    OfferPlan,
    Skip,
    explanation_fields,
    log_no_match,
    plan_offers,
)
from nodes.provider.inventory import GpuGroup, Inventory, detect, normalise_model
from nodes.provider.metering import Meter, OutputTail, Period
from nodes.provider.outputs import INLINE_OUTPUT, STREAM_CHUNK, StreamedOutput
from nodes.provider.pricing import (
    FixedPrice,
    PricingPolicy,
    UtilisationPrice,
    checked_price,
    load_policy,
)
from nodes.provider.runtime import Job, JobResult, JobSpec, run_job
from nodes.provider.sandbox import Sandbox, gpu_device_nodes, probe

__all__ = [
    "INLINE_OUTPUT",
    "POLICY_DECLINED",
    "STAKE_LOCK_UNCOVERED",
    "STREAM_CHUNK",
    "AgentConfig",
    "CgroupHost",
    "CgroupLimits",
    "ChainConfig",
    "Confinement",
    "FixedPrice",
    "GpuDeclaration",
    "GpuGroup",
    "Inventory",
    "InventoryConfig",
    "Job",
    "JobLimits",
    "JobResult",
    "JobSpec",
    "KeyConfig",
    "Meter",
    "MeteringConfig",
    "OfferPlan",
    "OutputTail",
    "Period",
    "PricingConfig",
    "PricingPolicy",
    "ProviderConfig",
    "Sandbox",
    "Skip",
    "StreamedOutput",
    "UtilisationPrice",
    "checked_price",
    "decrypt_key",
    "detect",
    "explanation_fields",
    "gpu_device_nodes",
    "load_config",
    "load_deployment",
    "load_policy",
    "log_no_match",
    "normalise_model",
    "plan_offers",
    "probe",
    "run_job",
]
