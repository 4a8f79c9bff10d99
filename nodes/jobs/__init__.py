"""Leased jobs as labs specify them and providers run them (shared by both daemons).

* :mod:`~nodes.jobs.spec`: the job spec, its canonical bytes and the hash a bid commits to;
* :mod:`~nodes.jobs.matmul`: the matrix-product workload and the lab's Freivalds check;
* :mod:`~nodes.jobs.train`: the segmented training workload and the re-execution of a segment.
"""

from nodes.jobs.spec import CommandParams, JobSpec, MatmulParams, TrainParams

__all__ = ["CommandParams", "JobSpec", "MatmulParams", "TrainParams"]
