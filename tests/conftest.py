"""Shared fixtures. Integration tests share one devnet per session (anvil, or the Hardhat node with
GPUMARKET_EVM=hardhat) and reset it by snapshot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from market.chain.devnet import Devnet, live_devnets

# Speed is measured in bench/, not asserted by tests: the suite runs on four workers sharing two
# cores, where one example may take longer than Hypothesis' default 200 ms deadline.
settings.register_profile("gpumarket", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gpumarket")


@pytest.fixture(scope="session")
def devnet() -> Iterator[Devnet]:
    dev = Devnet.start()
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture
def chain(devnet: Devnet) -> Iterator[Devnet]:
    """The session devnet, put back to its state before the test when the test ends."""
    with devnet.isolated():
        yield devnet


@pytest.fixture(scope="session", autouse=True)
def _no_devnet_outlives_the_session() -> Iterator[None]:
    yield
    leftover = [d.pid for d in live_devnets()]
    for d in live_devnets():
        d.stop()
    assert not leftover, f"tests left anvil processes running: {leftover}"
