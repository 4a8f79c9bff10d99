"""The soak campaign (:mod:`bench.soak`) in short: a relay, three providers and lab waves through
SIGKILLs of every kind of daemon and an RPC outage, then every lease audited to the unit."""

from __future__ import annotations

import pytest

from bench.soak import PROVIDERS, run

pytestmark = pytest.mark.integration

KILLS = 6
OUTAGES = 1


def test_short_soak_loses_no_pay_pays_nothing_twice_and_conserves_every_token() -> None:
    figures, audit = run(KILLS, OUTAGES, seed=7, labs=2, jobs=2, waves=2, quiet=True)
    assert audit.findings == []
    assert figures["kills"] >= KILLS  # and one more when an outage kills a daemon too
    assert figures["kills_relay"] >= 1
    assert figures["kills_provider"] >= 1
    assert figures["outages"] == OUTAGES
    assert figures["providers"] == PROVIDERS
    assert figures["leases"] == figures["leases_closed"] >= 4  # two labs of two jobs at least
    assert figures["lost_pay"] == 0
    assert figures["double_claims"] == 0
    assert figures["disputes"] == 0  # every party is honest
    assert figures["paid_mismatches"] == figures["refund_mismatches"] == 0
    assert figures["supply_conserved"] is True
    assert figures["market_accounted"] is True
    assert figures["lab_failures"] == figures["restart_failures"] == 0
    assert figures["unclean_stops"] == 0
    assert figures["paid_total"] > 0
