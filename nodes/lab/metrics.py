"""The lab client's Prometheus metrics, in its own registry (:mod:`nodes.metrics`)."""

from __future__ import annotations

from nodes.metrics import Metrics


class LabMetrics(Metrics):
    """Counters the lab increments; gauges read when scraped."""

    def __init__(self) -> None:
        super().__init__()
        self.events = self.counter(
            "gpumarket_lab_events_total",
            "Lab progress events: leases opened, receipts verified, vouchers sent, ...",
            ("event",),
        )
        self.vouched = self.counter(
            "gpumarket_lab_vouched_total", "Tokens newly promised by vouchers signed since start."
        )
        self.rejected = self.counter(
            "gpumarket_lab_receipts_rejected_total", "Receipts or outputs refused, by reason.",
            ("reason",),
        )  # fmt: skip
        self.challenges = self.counter(
            "gpumarket_lab_challenges_total", "Hardware challenges run, by result and GPU class.",
            ("result", "gpu_class"),
        )  # fmt: skip
        self.output_bytes = self.counter(
            "gpumarket_lab_output_bytes_total",
            "Bytes of streamed output received, opened and proved (written to disk).",
        )


__all__ = ["LabMetrics"]
