"""A MIG instance measured as what it is: its share of its GPU, never the whole GPU.

NVML reports energy and power per physical board; on a MIG instance's handle
``nvmlDeviceGetTotalEnergyConsumption`` answers NotSupported on current drivers. So:

* where NVML has a counter for the instance itself, greenlm reads it (``counter``);
* otherwise the instance is charged ``share x`` its GPU's energy (the GPU's counter, else
  its sampled power), with ``share = the instance's compute slices / the GPU's compute
  slices`` (``nvmlDeviceGetAttributes`` of the instance; the GPU's slice count from its
  largest GPU-instance profile: 7 on A100/H100/H200/B200, 4 on A30). Provenance
  ``modeled``, ``scope="instance"``, and the GPU's total is kept as ``device_energy_j``.

Several instances of one GPU in ``CUDA_VISIBLE_DEVICES`` get one meter each, and their
shares add up to at most the GPU: the GPU is never counted once per instance.

The band says what the slice share cannot know, the other instances' activity. With ``E``
the GPU's energy over the run and ``I`` its idle (static) part, the instance's energy lies
between "the other instances drew everything above idle" (``share x I``) and "this instance
drew it all" (``E - (1 - share) x I``). NVML does not measure ``I`` under MIG; greenlm takes
it as half the lowest mean power the GPU drew over any full second of the run, times the
run's length (the lowest power seen is an upper limit of idle power; half of it is an
assumption, stated here and in the band's text). Without a full second ``I`` is 0 and the
band runs from 0 to the whole GPU.
"""

from __future__ import annotations

import logging
import math
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

from greenlm.meters.base import Band, Meter

if TYPE_CHECKING:
    from greenlm.meters.nvml import VisibleGpu

log = logging.getLogger(__name__)

#: GPU-instance profiles that span a whole GPU, largest first (constant names in pynvml).
_FULL_PROFILES = (
    "NVML_GPU_INSTANCE_PROFILE_8_SLICE",
    "NVML_GPU_INSTANCE_PROFILE_7_SLICE",
    "NVML_GPU_INSTANCE_PROFILE_6_SLICE",
    "NVML_GPU_INSTANCE_PROFILE_4_SLICE",
)
#: Length of the windows the GPU's lowest power is taken over (s).
FLOOR_WINDOW_S = 1.0
#: Idle power, as a fraction of the lowest power seen over a window (an assumption).
IDLE_OF_FLOOR = 0.5


def total_slices(nvml: ModuleType, parent: Any) -> int:
    """Compute slices of the whole GPU: the slice count of its largest GPU-instance profile."""
    best = 0
    for name in _FULL_PROFILES:
        profile = getattr(nvml, name, None)
        if profile is None:
            continue
        try:
            info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(parent, profile)
        except Exception:  # the GPU does not offer this profile
            continue
        best = max(best, int(getattr(info, "sliceCount", 0) or 0))
    return best


def instance_slices(nvml: ModuleType, mig: Any) -> int:
    """Compute slices of a MIG instance (its compute instance's, else its GPU instance's)."""
    attrs = nvml.nvmlDeviceGetAttributes(mig)
    ci = int(getattr(attrs, "computeInstanceSliceCount", 0) or 0)
    return ci or int(getattr(attrs, "gpuInstanceSliceCount", 0) or 0)


def slice_share(nvml: ModuleType, v: VisibleGpu) -> tuple[float, str, list[str]]:
    """(share of the GPU, how it was found, warnings) for the MIG instance ``v``."""
    from greenlm.meters.nvml import mig_devices

    mine = instance_slices(nvml, v.mig)
    total = total_slices(nvml, v.handle)
    warnings: list[str] = []
    if total <= 0:  # no profile information: the instances that exist now
        total = sum(instance_slices(nvml, m[0]) for m in mig_devices(nvml, v.handle))
        warnings.append(
            f"MIG instance {v.mig_uuid}: NVML gives no profile for GPU {v.index}'s slice count; "
            f"its share is taken among the instances that exist now ({mine} of {total} slices), "
            "which overstates it if part of the GPU is not partitioned"
        )
    if mine <= 0 or total <= 0 or mine > total:
        raise ValueError(f"MIG instance {v.mig_uuid}: unusable slice counts ({mine} of {total})")
    return mine / total, f"{mine} of the GPU's {total} compute slices", warnings


class NvmlMigMeter(Meter):
    """A MIG instance's share of its GPU's energy (the GPU's counter, else its sampled power)."""

    kind = "gpu"
    provenance = "modeled"

    def __init__(
        self,
        parent: Meter,
        name: str,
        share: float,
        share_source: str,
        info: dict[str, object],
        query_handle: Any,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__()
        if not 0.0 < share <= 1.0:
            raise ValueError(f"a MIG share must be in (0, 1], got {share!r}")
        self.parent = parent
        self.name = name
        self.share = share
        self.share_source = share_source
        self.query_handle = query_handle
        self._info = info
        self._clock = clock
        self.band = Band(
            0.0,
            1.0,
            f"MIG instance: {share_source} of the GPU's {parent.band.source}; band: the other instances' "
            "activity is unknown (from their drawing all above idle to this instance drawing it all; idle "
            "taken as half the GPU's lowest power over a second)",
        )
        self._reset()

    def _reset(self) -> None:
        self._ep = 0.0
        self._t0 = self._clock()
        self._t = self._t0
        self._win_t0, self._win_e0 = self._t0, 0.0
        self._floor_w = math.inf

    def start(self) -> None:
        self.parent.start()
        self._reset()

    def energy_j(self) -> float:
        ep = self.parent.energy_j()
        now = self._clock()
        if now - self._win_t0 >= FLOOR_WINDOW_S:
            self._floor_w = min(self._floor_w, (ep - self._win_e0) / (now - self._win_t0))
            self._win_t0, self._win_e0 = now, ep
        self._ep, self._t = ep, now
        p = self.parent.last_power_w
        self.last_power_w = None if p is None else p * self.share
        return self.share * ep

    def device_energy_j(self) -> float:
        return self._ep

    def bounds_j(self, energy_j: float) -> tuple[float, float]:
        ep = self._ep
        lo_p, hi_p = self.parent.bounds_j(ep)
        r_lo = lo_p / ep if ep > 0 else 1.0
        r_hi = hi_p / ep if ep > 0 else 1.0
        floor_w = 0.0 if math.isinf(self._floor_w) else max(0.0, self._floor_w)
        idle_j = min(ep, IDLE_OF_FLOOR * floor_w * (self._t - self._t0))
        return self.share * idle_j * r_lo, (ep - (1.0 - self.share) * idle_j) * r_hi

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            **self._info,
            "scope": "instance",
            "share": self.share,
            "share_source": self.share_source,
            "parent_provenance": self.parent.provenance,
        }

    def warnings(self) -> list[str]:
        return self.parent.warnings()

    def fallback(self) -> Meter | None:
        """If the GPU's counter fails: the same share of its sampled power."""
        fb = self.parent.fallback()
        if fb is None:
            return None
        return NvmlMigMeter(fb, self.name, self.share, self.share_source, self._info, self.query_handle, self._clock)


def mig_meter(nvml: ModuleType, v: VisibleGpu, cuda_index: int, clock: Any = time.monotonic) -> tuple[Meter, list[str]]:
    """The meter of MIG instance ``v``: its own counter if NVML has one, else its GPU share."""
    from greenlm.meters.nvml import NvmlEnergyMeter, _device_meter, board_limit

    name = f"gpu:{cuda_index}"
    info: dict[str, object] = {
        "nvml_index": v.index,
        "mig_uuid": v.mig_uuid,
        "device_id": f"nvml:{v.index}/{v.mig_uuid}",
    }
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(v.mig)
        own = NvmlEnergyMeter(nvml, v.index, v.mig, cuda_index, board_limit(nvml, v.handle), clock)
        own.band = Band(1.0, 1.0, "NVML total energy counter of the MIG instance")
        return _OwnCounter(own, info), []
    except Exception as e:  # NotSupported: the usual case
        log.debug("MIG instance %s has no energy counter of its own (%s)", v.mig_uuid, e)
    share, source, warnings = slice_share(nvml, v)
    parent = _device_meter(nvml, v.index, v.handle, cuda_index, clock)
    meter = NvmlMigMeter(parent, name, share, source, info, v.mig, clock)
    if parent.provenance == "sampled":
        warnings.append(f"{name}: GPU {v.index} has no NVML energy counter; the MIG share is of its sampled power")
    return meter, warnings


class _OwnCounter(Meter):
    """A MIG instance read through its own NVML energy counter (drivers that offer one)."""

    kind = "gpu"
    provenance = "counter"

    def __init__(self, inner: Meter, info: dict[str, object]) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.band = inner.band
        self.query_handle = getattr(inner, "query_handle", None)
        self._info = info

    def start(self) -> None:
        self.inner.start()

    def energy_j(self) -> float:
        e = self.inner.energy_j()
        self.last_power_w = self.inner.last_power_w
        return e

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), **self._info, "scope": "instance"}

    def fallback(self) -> Meter | None:
        return self.inner.fallback()
