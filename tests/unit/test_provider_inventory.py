"""Inventory: NVML through an injected fake module, the declared fallback, model names."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace

import pytest

from market.matching import encode_attributes
from nodes.errors import InventoryError
from nodes.provider import GpuDeclaration, GpuGroup, InventoryConfig, detect, normalise_model

pytestmark = pytest.mark.unit

MIB = 2**20
DECLARED = InventoryConfig(True, (GpuDeclaration("H100-80GB", 2, 80, (0, 1)),))


class FakeNVMLError(Exception):
    pass


def fake_nvml(devices: list[tuple[str | bytes, int]], *, fail: bool = False) -> ModuleType:
    """A module with the few pynvml calls the probe makes; ``calls`` records init/shutdown."""
    nvml = ModuleType("pynvml")
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if fail:
            raise FakeNVMLError("Driver Not Loaded")

    nvml.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
    nvml.calls = calls  # type: ignore[attr-defined]
    nvml.nvmlInit = init  # type: ignore[attr-defined]
    nvml.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetName = lambda h: devices[h][0]  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(total=devices[h][1])  # type: ignore[attr-defined]
    return nvml


@pytest.fixture
def events() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("gpumarket.provider.inventory")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_nvml_devices_are_grouped_by_normalised_model_with_their_indices() -> None:
    nvml = fake_nvml(
        [
            ("NVIDIA H100 80GB HBM3", 81559 * MIB),
            (b"NVIDIA A100-SXM4-40GB", 40960 * MIB),  # older pynvml returns bytes
            ("NVIDIA H100 80GB HBM3", 81559 * MIB),
        ]
    )
    inventory = detect(DECLARED, nvml=nvml)
    assert inventory.source == "nvml"
    assert inventory.groups == (
        GpuGroup("H100-80GB", 2, 80, (0, 2)),
        GpuGroup("A100-40GB", 1, 40, (1,)),
    )
    assert inventory.total == 3
    assert nvml.calls == ["init", "shutdown"]  # type: ignore[attr-defined]


def test_declared_inventory_is_used_without_detection() -> None:
    config = InventoryConfig(False, DECLARED.gpus)
    nvml = fake_nvml([("NVIDIA L4", 23034 * MIB)])
    inventory = detect(config, nvml=nvml)
    assert (inventory.source, inventory.groups) == (
        "declared",
        (GpuGroup("H100-80GB", 2, 80, (0, 1)),),
    )
    assert nvml.calls == []  # type: ignore[attr-defined]


def test_groups_carry_the_signed_terms_of_the_inventory_and_of_their_declaration() -> None:
    config = InventoryConfig(
        True,
        (
            GpuDeclaration(
                "H100-80GB", 2, 80, (0, 1), 400, {"interconnect": ("nvlink",), "region": ("uk",)}
            ),
        ),
        bandwidth_gbps=100,
        attributes={"region": ("eu-west",), "capabilities": ("ecc",)},
    )
    nvml = fake_nvml([("NVIDIA H100 80GB HBM3", 81559 * MIB), ("NVIDIA L4", 23034 * MIB)])
    h100, l4 = detect(config, nvml=nvml).groups
    assert (h100.model, h100.bandwidth_gbps) == ("H100-80GB", 400)
    assert h100.features == encode_attributes(
        {"interconnect": "nvlink", "region": "uk", "capabilities": ("ecc",)}  # the group's region
    )
    assert (l4.model, l4.bandwidth_gbps) == ("L4-24GB", 100)  # detected, not declared
    assert l4.features == encode_attributes({"region": "eu-west", "capabilities": ("ecc",)})
    [declared] = detect(InventoryConfig(False, config.gpus)).groups  # no inventory-wide terms
    nvlink_uk = encode_attributes({"interconnect": "nvlink", "region": "uk"})
    assert (declared.bandwidth_gbps, declared.features) == (400, nvlink_uk)


def test_nvml_that_fails_falls_back_to_the_declared_gpus_and_says_why(
    events: list[logging.LogRecord],
) -> None:
    nvml = fake_nvml([], fail=True)
    assert detect(DECLARED, nvml=nvml).source == "declared"
    (record,) = events
    assert record.event == "inventory_declared"  # type: ignore[attr-defined]
    assert record.fields["reason"] == "nvml_failed"  # type: ignore[attr-defined]
    assert "Driver Not Loaded" in record.fields["error"]  # type: ignore[attr-defined]


def test_machine_without_nvml_installed_uses_the_declared_gpus(
    monkeypatch: pytest.MonkeyPatch, events: list[logging.LogRecord]
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert detect(DECLARED).source == "declared"
    assert [r.fields["reason"] for r in events] == ["nvml_not_installed"]  # type: ignore[attr-defined]
    assert events[0].fields["fix"] == "pip install gpumarket[gpu]"  # type: ignore[attr-defined]


def test_no_devices_and_none_declared_is_an_inventory_error() -> None:
    with pytest.raises(InventoryError, match=r"add \[\[inventory.gpus\]\]"):
        detect(InventoryConfig(True, ()), nvml=fake_nvml([]))


def test_error_that_is_not_nvmls_is_not_swallowed() -> None:
    nvml = fake_nvml([("NVIDIA H100", 81559 * MIB)])
    nvml.nvmlDeviceGetName = lambda h: 1 / 0  # type: ignore[attr-defined]
    with pytest.raises(ZeroDivisionError):
        detect(DECLARED, nvml=nvml)
    assert nvml.calls == ["init", "shutdown"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "mib", "model"),
    [
        ("NVIDIA H100 80GB HBM3", 81559, "H100-80GB"),
        ("NVIDIA H100 PCIe", 81559, "H100-80GB"),
        ("NVIDIA H100 NVL", 95830, "H100-94GB"),
        ("NVIDIA H200", 143771, "H200-141GB"),
        ("NVIDIA A100-SXM4-80GB", 81920, "A100-80GB"),
        ("NVIDIA A100-PCIE-40GB", 40960, "A100-40GB"),
        ("NVIDIA L40S", 46068, "L40S-48GB"),
        ("NVIDIA A10G", 23028, "A10G-24GB"),
        ("Tesla T4", 15109, "T4-16GB"),
        ("Tesla V100-SXM2-16GB", 16160, "V100-16GB"),
        ("NVIDIA GeForce RTX 4090", 24564, "RTX-4090-24GB"),
    ],
)
def test_device_names_normalise_to_market_model_strings(name: str, mib: int, model: str) -> None:
    assert normalise_model(name, mib * MIB)[0] == model
