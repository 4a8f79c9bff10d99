"""What GPUs this provider has: probed through NVML where a driver answers, else as declared.

    inventory = detect(config.inventory)
    for group in inventory.groups:       # GpuGroup(model="H100-80GB", count=8, memory_gib=80, ...)
        ...

NVML comes from the ``nvidia-ml-py`` package (``pip install gpumarket[gpu]``), imported only when
detection is asked for; without it, or without a driver, the declared inventory is used. Device
names are normalised to the market's model strings (``"NVIDIA H100 80GB HBM3"`` -> ``"H100-80GB"``),
the names offers and bids carry, so GPUs of one model from any vendor string match the same bids.
Device indices are NVML's, which is PCI bus order: the runtime sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
so that CUDA numbers devices the same way.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Literal

from market.matching.constraints import encode_attributes
from nodes.errors import InventoryError
from nodes.logs import get_logger
from nodes.provider.config import InventoryConfig

# Marketed memory sizes (GB) per family: NVML reports usable memory (an "80GB" H100 shows 79.6
# GiB, a "16GB" T4 14.8 GiB), so the size snaps to the nearest one listed, read as GiB or GB.
_KNOWN_MEMORY: dict[str, tuple[int, ...]] = {
    "H100": (80, 94, 96),
    "H200": (141,),
    "H20": (96,),
    "B200": (180, 192),
    "GH200": (96, 144),
    "A100": (40, 80),
    "A800": (40, 80),
    "A40": (48,),
    "A30": (24,),
    "A10": (24,),
    "A10G": (24,),
    "L40S": (48,),
    "L40": (48,),
    "L4": (24,),
    "V100": (16, 32),
    "T4": (16,),
}
NVML_FIX = "pip install gpumarket[gpu]"
"""What installs NVML's bindings (``nvidia-ml-py``), which GPU detection needs."""
MARKET_MODELS: tuple[str, ...] = tuple(
    f"{family}-{size}GB" for family, sizes in _KNOWN_MEMORY.items() for size in sizes
)
"""The model names detection gives NVIDIA's cards (``H100-80GB``): family, dash, marketed memory.
Offers and bids carry these strings, so a declared GPU and a bid should use them too."""
_SNAP = 0.06
_VENDOR_WORDS = {"NVIDIA", "TESLA", "GEFORCE", "QUADRO"}
_FORM_WORDS = {"PCIE", "SXM", "SXM2", "SXM4", "SXM5", "NVL", "HBM3", "HBM3E", "HBM2E", "HBM2"}
_SIZE = re.compile(r"^(\d+)\s*GB$")
_log = get_logger("gpumarket.provider.inventory")


@dataclass(frozen=True, slots=True)
class GpuGroup:
    """``count`` GPUs of one model, each with ``memory_gib``, at these device indices; their
    offers also sign ``bandwidth_gbps`` and ``features`` (the configured attributes' bits)."""

    model: str
    count: int
    memory_gib: int
    devices: tuple[int, ...]
    bandwidth_gbps: int = 0
    features: int = 0


@dataclass(frozen=True, slots=True)
class Inventory:
    groups: tuple[GpuGroup, ...]
    source: Literal["nvml", "declared"]

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups)


def normalise_model(name: str, memory_bytes: int) -> tuple[str, int]:
    """The market's model string and the marketed memory in GB for an NVML device name."""
    words = re.split(r"[\s\-_]+", name.strip().upper())
    size = next((int(m.group(1)) for w in words if (m := _SIZE.match(w))), None)
    words = [w for w in words if w and w not in _VENDOR_WORDS and w not in _FORM_WORDS]
    words = [w for w in words if not _SIZE.match(w)]
    family = "-".join(words) or "GPU"
    if size is None:
        gib, gb = memory_bytes / 2**30, memory_bytes / 10**9

        def off(k: int) -> float:  # how far the reading is from k, in GiB or GB, relatively
            return min(abs(k - gib), abs(k - gb)) / k

        near = min(_KNOWN_MEMORY.get(family, ()), key=off, default=None)
        size = near if near is not None and off(near) <= _SNAP else round(gib)
    model = f"{family}-{size}GB"
    return model[:32], size


def declared(config: InventoryConfig) -> Inventory:
    groups = tuple(
        _with_terms(GpuGroup(g.model, g.count, g.memory_gib, g.devices), config)
        for g in config.gpus
    )
    if not groups:
        raise InventoryError("no GPUs detected and none declared: add [[inventory.gpus]]")
    return Inventory(groups, "declared")


def detect(config: InventoryConfig, *, nvml: ModuleType | None = None) -> Inventory:
    """NVML's view when ``config.detect`` and a driver answers, else the declared GPUs."""
    if not config.detect:
        return declared(config)
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            _log.info("inventory_declared", reason="nvml_not_installed", fix=NVML_FIX)
            return declared(config)
    try:
        devices = _probe(nvml)
    except Exception as exc:
        if not _is_nvml_error(nvml, exc):
            raise
        _log.warning("inventory_declared", reason="nvml_failed", error=str(exc))
        return declared(config)
    if not devices:
        _log.info("inventory_declared", reason="no_devices")
        return declared(config)
    return Inventory(tuple(_with_terms(g, config) for g in _group(devices)), "nvml")


def _with_terms(group: GpuGroup, config: InventoryConfig) -> GpuGroup:
    """``group`` with the signed terms the config gives its model: the inventory's, under those
    of a declared group of the same model."""
    mine = next((g for g in config.gpus if g.model == group.model), None)
    bandwidth = config.bandwidth_gbps
    attributes = dict(config.attributes)
    if mine is not None:
        bandwidth = bandwidth if mine.bandwidth_gbps is None else mine.bandwidth_gbps
        attributes |= mine.attributes
    return replace(group, bandwidth_gbps=bandwidth, features=encode_attributes(attributes))


def _is_nvml_error(nvml: ModuleType, exc: Exception) -> bool:
    error_type: Any = getattr(nvml, "NVMLError", None)
    return isinstance(error_type, type) and isinstance(exc, error_type)


def _probe(nvml: ModuleType) -> list[tuple[int, str, int]]:
    """(index, model, memory GB) of every device, in NVML's (PCI bus) order."""
    nvml.nvmlInit()
    try:
        found = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            text = name.decode() if isinstance(name, bytes) else str(name)
            total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            model, memory = normalise_model(text, total)
            found.append((index, model, memory))
        return found
    finally:
        nvml.nvmlShutdown()


def _group(devices: Sequence[tuple[int, str, int]]) -> tuple[GpuGroup, ...]:
    by_model: dict[tuple[str, int], list[int]] = {}
    for index, model, memory in devices:
        by_model.setdefault((model, memory), []).append(index)
    return tuple(
        GpuGroup(model, len(indices), memory, tuple(indices))
        for (model, memory), indices in by_model.items()
    )


__all__ = [
    "MARKET_MODELS",
    "NVML_FIX",
    "GpuGroup",
    "Inventory",
    "declared",
    "detect",
    "normalise_model",
]
