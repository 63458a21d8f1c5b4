"""NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py).

* ``counter``: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since driver load; Volta
  and newer);
* ``sampled``: ``nvmlDeviceGetPowerUsage`` (milliwatts) integrated by the sampling thread,
  for GPUs without the counter.

Only GPUs visible to the process are measured: ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-``
UUID prefixes or ``MIG-`` ids; CUDA stops at the first invalid entry) is honoured. NVML
enumerates in PCI bus order, so indices match CUDA's when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
(the usual cluster setting); UUIDs are unambiguous. A GPU counts the whole board: components
carry ``scope="device"``.

``pynvml`` is imported through :func:`load_nvml`, the vendor boundary that tests replace.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

from greenlm.errors import MeterUnavailableError
from greenlm.meters.base import Band, IntegratingMeter, Meter

if TYPE_CHECKING:
    from greenlm.meters.detect import DetectContext, GpuFound

log = logging.getLogger(__name__)


def load_nvml() -> ModuleType:
    """Import and initialise pynvml, or raise MeterUnavailableError saying why not."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError as e:
        raise MeterUnavailableError("NVML", "library not found (pip install 'greenlm[nvidia]' for nvidia-ml-py)") from e
    try:
        nvml.nvmlInit()
    except Exception as e:  # pynvml.NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise MeterUnavailableError("NVML", f"nvmlInit failed: {e} (no NVIDIA driver?)") from e
    return nvml


def _decode(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def visible_handles(nvml: ModuleType, env: str | None = None) -> list[tuple[int, Any]]:
    """(NVML index, handle) of each GPU the process may use, in CUDA order."""
    count = int(nvml.nvmlDeviceGetCount())
    spec = os.environ.get("CUDA_VISIBLE_DEVICES") if env is None else env
    if spec is None:
        return [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
    uuids = [_decode(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
    out: list[tuple[int, Any]] = []
    for raw in spec.split(","):
        tok = raw.strip()
        if not tok:
            break
        idx: int | None = None
        if tok.lstrip("-").isdigit():
            n = int(tok)
            idx = n if 0 <= n < count else None
        else:
            matches = [i for i, u in enumerate(uuids) if u.startswith(tok) or u == tok]
            idx = matches[0] if len(matches) == 1 else None
        if idx is None:  # CUDA ignores this entry and every one after it
            break
        if idx not in [i for i, _ in out]:
            out.append((idx, nvml.nvmlDeviceGetHandleByIndex(idx)))
    return out


class _NvmlDevice:
    """What both NVML meters know about their GPU: handle, NVML index, CUDA name, model."""

    name: str

    def _bind(self, nvml: ModuleType, index: int, handle: Any, cuda_index: int) -> None:
        self._nvml = nvml
        self._h = handle
        self.index = index
        self.cuda_index = cuda_index
        self.name = f"gpu:{cuda_index}"
        self.model = _decode(nvml.nvmlDeviceGetName(handle))

    def _device_info(self) -> dict[str, object]:
        return {"model": self.model, "nvml_index": self.index, "scope": "device"}


class NvmlEnergyMeter(_NvmlDevice, Meter):
    """A GPU's total-energy counter (mJ)."""

    kind = "gpu"
    provenance = "counter"
    band = Band(1.0, 1.0, "NVML total energy counter")

    def __init__(self, nvml: ModuleType, index: int, handle: Any, cuda_index: int) -> None:
        super().__init__()
        self._bind(nvml, index, handle, cuda_index)
        self._mj0 = 0
        self._last_mj = 0
        self._last_t: float | None = None

    def start(self) -> None:
        self._mj0 = self._last_mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._h))

    def energy_j(self) -> float:
        import time

        mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._h))
        t = time.monotonic()
        if self._last_t is not None and t > self._last_t:
            self.last_power_w = (mj - self._last_mj) / 1e3 / (t - self._last_t)
        self._last_mj, self._last_t = mj, t
        return (mj - self._mj0) / 1e3

    def describe(self) -> dict[str, object]:
        return {**super().describe(), **self._device_info()}

    def fallback(self) -> Meter:
        """If the counter stops answering: sample this GPU's power instead."""
        m = NvmlPowerMeter(self._nvml, self.index, self._h, self.cuda_index)
        m.read_power_w()  # raise now if power readings fail too
        return m


class NvmlPowerMeter(_NvmlDevice, IntegratingMeter):
    """A GPU's power readings (mW), integrated: for GPUs without the energy counter."""

    kind = "gpu"
    provenance = "sampled"
    band = Band(0.95, 1.05, "NVML power readings: +/-5 % board accuracy, integrated at the sampling interval")

    def __init__(self, nvml: ModuleType, index: int, handle: Any, cuda_index: int) -> None:
        super().__init__()
        self._bind(nvml, index, handle, cuda_index)

    def read_power_w(self) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._h)) / 1e3

    def describe(self) -> dict[str, object]:
        return {**super().describe(), **self._device_info()}


def nvml_meters(nvml: ModuleType | None = None, env: str | None = None) -> list[Meter]:
    """One meter per visible GPU: the energy counter when supported, else power sampling.

    ``env``: the ``CUDA_VISIBLE_DEVICES`` value to honour (default: this process's).
    """
    lib = nvml or load_nvml()
    handles = visible_handles(lib, env)
    if not handles:
        raise MeterUnavailableError("NVML", "no GPU visible (CUDA_VISIBLE_DEVICES hides all, or none installed)")
    meters: list[Meter] = []
    for cuda_index, (index, h) in enumerate(handles):
        try:
            lib.nvmlDeviceGetTotalEnergyConsumption(h)
            meters.append(NvmlEnergyMeter(lib, index, h, cuda_index))
        except Exception as e:  # NVMLError_NotSupported on pre-Volta GPUs
            log.debug("GPU %d has no energy counter (%s); sampling power", index, e)
            meters.append(NvmlPowerMeter(lib, index, h, cuda_index))
    return meters


def find(ctx: DetectContext) -> GpuFound:
    """The NVML backend of :func:`greenlm.meters.detect.detect`: one meter per visible GPU."""
    from greenlm.meters.detect import GpuFound

    lib = load_nvml()
    meters = nvml_meters(lib, env=ctx.env.get("CUDA_VISIBLE_DEVICES"))
    kinds = sorted({m.provenance for m in meters})
    warnings = [
        f"{m.name}: no NVML energy counter (pre-Volta GPU); power is sampled and integrated"
        for m in meters
        if m.provenance == "sampled"
    ]
    return GpuFound(meters, f"{len(meters)} GPU(s), {'/'.join(kinds)}", warnings)
