"""NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py).

* ``counter``: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since driver load; Volta
  and newer);
* ``sampled``: ``nvmlDeviceGetPowerUsage`` (milliwatts) integrated by the sampling thread,
  for GPUs without the counter, and when a counter fails mid-run.

Only GPUs visible to the process are measured: ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-``
UUID prefixes, ``MIG-`` instance UUIDs or the older ``MIG-GPU-<uuid>/<gi>/<ci>`` form; CUDA
stops at the first invalid entry, and so does greenlm). NVML enumerates in PCI bus order, so
indices match CUDA's when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (the usual cluster setting);
UUIDs are unambiguous.

Readings are bounded by the board's maximum power limit (:mod:`greenlm.meters._gpucheck`):
a counter interval above it is refused and the meter falls back to power sampling; a power
reading above twice the limit is discarded. A whole GPU carries ``scope="device"``; a MIG
instance is measured as its share of its GPU (:mod:`greenlm.meters.nvml_mig`); with
``attribution="process"`` a GPU that other processes use too is charged by the tracked
processes' share of its activity (:mod:`greenlm.meters.nvml_share`).

``pynvml`` is imported through :func:`load_nvml`, the vendor boundary that tests replace.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from greenlm.errors import MeterUnavailableError
from greenlm.meters._gpucheck import CounterCheck, PowerLimit, PowerReadings, power_limit
from greenlm.meters.base import Band, IntegratingMeter, Meter

if TYPE_CHECKING:
    from greenlm.meters.detect import DetectContext, GpuFound

log = logging.getLogger(__name__)

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6


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


def error_code(e: BaseException) -> int | None:
    """The NVML return code carried by a pynvml ``NVMLError`` (``None`` for other errors)."""
    v = getattr(e, "value", None)
    return v if isinstance(v, int) else None


# --------------------------------------------------------------------------- visibility
@dataclass(frozen=True)
class VisibleGpu:
    """A GPU (or MIG instance) the process may use, as CUDA enumerates it."""

    #: NVML index of the physical GPU.
    index: int
    #: NVML handle of the physical GPU.
    handle: Any
    #: NVML handle of the MIG instance, when ``CUDA_VISIBLE_DEVICES`` names one.
    mig: Any = None
    mig_uuid: str | None = None
    #: The physical GPU is in MIG mode (its instances are not told apart without a MIG id).
    mig_mode: bool = False


def _mig_mode(nvml: ModuleType, handle: Any) -> bool:
    try:
        current = nvml.nvmlDeviceGetMigMode(handle)
    except Exception:  # pre-Ampere GPUs: NotSupported
        return False
    if isinstance(current, (list, tuple)):
        current = current[0]
    return bool(current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))


def mig_devices(nvml: ModuleType, handle: Any) -> list[tuple[Any, str, int | None, int | None]]:
    """(handle, UUID, GPU instance id, compute instance id) of each MIG instance of a GPU."""
    out: list[tuple[Any, str, int | None, int | None]] = []
    try:
        n = int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))
    except Exception:
        return out
    for j in range(n):
        try:
            mh = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
        except Exception:  # NVML_ERROR_NOT_FOUND: no instance in this slot
            continue
        gi = ci = None
        try:
            gi = int(nvml.nvmlDeviceGetGpuInstanceId(mh))
            ci = int(nvml.nvmlDeviceGetComputeInstanceId(mh))
        except Exception:
            pass
        out.append((mh, _decode(nvml.nvmlDeviceGetUUID(mh)), gi, ci))
    return out


def visible_gpus(nvml: ModuleType, env: str | None = None) -> list[VisibleGpu]:
    """The GPUs and MIG instances the process may use, in CUDA order.

    ``env``: the ``CUDA_VISIBLE_DEVICES`` value (default: this process's). Entries are
    indices, ``GPU-`` UUID prefixes, ``MIG-`` instance UUID prefixes, or
    ``MIG-GPU-<uuid>/<gpu instance>/<compute instance>`` (drivers before R470). An empty
    entry, an index out of range, or an id that matches no device (or several) ends the
    list, as in CUDA; a device named twice is listed once, and a GPU named both whole and
    through one of its MIG instances is measured once, whole.
    """
    count = int(nvml.nvmlDeviceGetCount())
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    spec = os.environ.get("CUDA_VISIBLE_DEVICES") if env is None else env
    modes = [_mig_mode(nvml, h) for h in handles]
    if spec is None:
        return [VisibleGpu(i, h, mig_mode=modes[i]) for i, h in enumerate(handles)]
    uuids = [_decode(nvml.nvmlDeviceGetUUID(h)) for h in handles]
    migs: list[tuple[int, Any, str, int | None, int | None]] | None = None
    out: list[VisibleGpu] = []
    seen: set[tuple[int, str | None]] = set()
    for raw in spec.split(","):
        tok = raw.strip()
        if not tok:
            break
        found: VisibleGpu | None = None
        if tok.lstrip("-").isdigit():
            n = int(tok)
            if 0 <= n < count:
                found = VisibleGpu(n, handles[n], mig_mode=modes[n])
        elif tok.startswith("MIG-"):
            if migs is None:
                migs = [(i, *m) for i, h in enumerate(handles) if modes[i] for m in mig_devices(nvml, h)]
            found = _match_mig(tok, migs, uuids, handles)
        else:
            matches = [i for i, u in enumerate(uuids) if u.startswith(tok)]
            if len(matches) == 1:
                i = matches[0]
                found = VisibleGpu(i, handles[i], mig_mode=modes[i])
        if found is None:  # CUDA ignores this entry and every one after it
            break
        key = (found.index, found.mig_uuid)
        # a GPU named whole and through one of its instances too is measured once, whole
        overlaps = (found.index, None) in seen if found.mig_uuid else any(k[0] == found.index for k in seen)
        if key not in seen and not overlaps:
            seen.add(key)
            out.append(found)
        elif overlaps and found.mig_uuid is None:
            out = [v for v in out if v.index != found.index] + [found]
            seen = {k for k in seen if k[0] != found.index} | {key}
    return out


def _match_mig(
    tok: str, migs: list[tuple[int, Any, str, int | None, int | None]], uuids: list[str], handles: list[Any]
) -> VisibleGpu | None:
    if tok.startswith("MIG-GPU-") and tok.count("/") == 2:  # MIG-GPU-<gpu uuid>/<gi>/<ci>
        gpu, gi, ci = tok[len("MIG-") :].split("/")
        hits = [m for m in migs if uuids[m[0]].startswith(gpu) and str(m[3]) == gi and str(m[4]) == ci]
    else:
        hits = [m for m in migs if m[2].startswith(tok)]
    if len(hits) != 1:
        return None
    i, mh, uuid, _, _ = hits[0]
    return VisibleGpu(i, handles[i], mig=mh, mig_uuid=uuid, mig_mode=True)


def visible_handles(nvml: ModuleType, env: str | None = None) -> list[tuple[int, Any]]:
    """(NVML index of the physical GPU, handle to measure) of each visible device, in CUDA order."""
    return [(v.index, v.mig if v.mig is not None else v.handle) for v in visible_gpus(nvml, env)]


def board_limit(nvml: ModuleType, handle: Any) -> PowerLimit:
    """The board's maximum power limit (the most a user may set), else its enforced limit."""
    cands: list[tuple[float | None, str]] = []
    with contextlib.suppress(Exception):
        _, hi = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
        cands.append((float(hi) / 1e3, "board's maximum power limit (NVML)"))
    with contextlib.suppress(Exception):
        cands.append((float(nvml.nvmlDeviceGetEnforcedPowerLimit(handle)) / 1e3, "board's enforced power limit (NVML)"))
    return power_limit(cands)


# --------------------------------------------------------------------------- meters
class _NvmlDevice:
    """What both NVML meters know about their GPU: handle, NVML index, CUDA name, model, bound."""

    name: str

    def _bind(
        self, nvml: ModuleType, index: int, handle: Any, cuda_index: int, limit: PowerLimit | None = None
    ) -> None:
        self._nvml = nvml
        self._h = handle
        #: The handle to ask NVML about this device's processes.
        self.query_handle = handle
        self.index = index
        self.cuda_index = cuda_index
        self.name = f"gpu:{cuda_index}"
        self.model = _decode(nvml.nvmlDeviceGetName(handle))
        self.limit = limit if limit is not None else board_limit(nvml, handle)

    def _device_info(self) -> dict[str, object]:
        return {
            "model": self.model,
            "nvml_index": self.index,
            "device_id": f"nvml:{self.index}",
            "scope": "device",
            "max_power_w": self.limit.max_power_w,
            "power_bound": self.limit.source,
        }


class NvmlEnergyMeter(_NvmlDevice, Meter):
    """A GPU's total-energy counter (mJ), bounded by the board's power limit."""

    kind = "gpu"
    provenance = "counter"
    band = Band(1.0, 1.0, "NVML total energy counter")

    def __init__(
        self,
        nvml: ModuleType,
        index: int,
        handle: Any,
        cuda_index: int,
        limit: PowerLimit | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__()
        self._bind(nvml, index, handle, cuda_index, limit)
        self._clock = clock
        self._last_mj = 0
        self._last_t = 0.0
        self._e = 0.0
        self._check = CounterCheck(self.limit)

    def start(self) -> None:
        self._last_mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._h))
        self._last_t = self._clock()
        self._e = 0.0

    def energy_j(self) -> float:
        mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._h))
        t = self._clock()
        dt = t - self._last_t
        d_j = (mj - self._last_mj) / 1e3
        self._check.interval(d_j, None, dt, None)  # only the bound: NVML power is not read here
        if dt > 0:
            self.last_power_w = d_j / dt
        self._last_mj, self._last_t = mj, t
        self._e += d_j
        return self._e

    def describe(self) -> dict[str, object]:
        return {**super().describe(), **self._device_info()}

    def fallback(self) -> Meter:
        """If the counter stops answering or is refused: sample this GPU's power instead."""
        m = NvmlPowerMeter(self._nvml, self.index, self._h, self.cuda_index, self.limit, self._clock)
        m.read_power_w()  # raise now if power readings fail too
        return m


class NvmlPowerMeter(_NvmlDevice, IntegratingMeter):
    """A GPU's power readings (mW), integrated: for GPUs without the energy counter."""

    kind = "gpu"
    provenance = "sampled"
    band = Band(0.95, 1.05, "NVML power readings: +/-5 % board accuracy, integrated at the sampling interval")

    def __init__(
        self,
        nvml: ModuleType,
        index: int,
        handle: Any,
        cuda_index: int,
        limit: PowerLimit | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__(clock)
        self._bind(nvml, index, handle, cuda_index, limit)
        self._readings = PowerReadings(self.limit)

    def read_power_w(self) -> float:
        p = self._readings.accept(float(self._nvml.nvmlDeviceGetPowerUsage(self._h)) / 1e3)
        return 0.0 if p is None else p

    def warnings(self) -> list[str]:
        return self._readings.warning(self.name)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), **self._device_info()}


def _device_meter(lib: ModuleType, index: int, handle: Any, cuda_index: int, clock: Any = time.monotonic) -> Meter:
    """The energy counter when the GPU has one, else power sampling."""
    limit = board_limit(lib, handle)
    try:
        lib.nvmlDeviceGetTotalEnergyConsumption(handle)
        return NvmlEnergyMeter(lib, index, handle, cuda_index, limit, clock)
    except Exception as e:  # NVMLError_NotSupported on pre-Volta GPUs
        log.debug("GPU %d has no energy counter (%s); sampling power", index, e)
        return NvmlPowerMeter(lib, index, handle, cuda_index, limit, clock)


def build_meters(lib: ModuleType, env: str | None = None, clock: Any = time.monotonic) -> tuple[list[Meter], list[str]]:
    """One meter per visible GPU or MIG instance, and the warnings their choice implies.

    ``clock``: the monotonic clock the meters time intervals with (tests pass a simulated one).
    """
    from greenlm.meters import nvml_mig

    visible = visible_gpus(lib, env)
    if not visible:
        raise MeterUnavailableError("NVML", "no GPU visible (CUDA_VISIBLE_DEVICES hides all, or none installed)")
    meters: list[Meter] = []
    warnings: list[str] = []
    for cuda_index, v in enumerate(visible):
        if v.mig is not None:
            m, w = nvml_mig.mig_meter(lib, v, cuda_index, clock)
            meters.append(m)
            warnings += w
            continue
        m = _device_meter(lib, v.index, v.handle, cuda_index, clock)
        meters.append(m)
        if m.provenance == "sampled":
            warnings.append(f"{m.name}: no NVML energy counter (pre-Volta GPU); power is sampled and integrated")
        if v.mig_mode:
            warnings.append(
                f"{m.name}: GPU {v.index} is in MIG mode and CUDA_VISIBLE_DEVICES names none of its instances: "
                "the whole GPU (the work of every instance) is measured, once; set CUDA_VISIBLE_DEVICES=MIG-<uuid> "
                "(nvidia-smi -L) to measure one instance"
            )
    return meters, warnings


def nvml_meters(nvml: ModuleType | None = None, env: str | None = None, clock: Any = time.monotonic) -> list[Meter]:
    """One meter per visible GPU: the energy counter when supported, else power sampling.

    ``env``: the ``CUDA_VISIBLE_DEVICES`` value to honour (default: this process's). MIG
    instances named there get a meter for their share of their GPU.
    """
    return build_meters(nvml or load_nvml(), env, clock)[0]


def find(ctx: DetectContext) -> GpuFound:
    """The NVML backend of :func:`greenlm.meters.detect.detect`: one meter per visible GPU.

    With ``attribution="process"`` each meter is wrapped in a share meter that charges the
    tracked process tree its share of the GPU when other processes use it too.
    """
    from greenlm.meters.detect import GpuFound

    lib = load_nvml()
    meters, warnings = build_meters(lib, env=ctx.env.get("CUDA_VISIBLE_DEVICES"))
    if ctx.attribution == "process":
        from greenlm.meters._proctree import ProcessTree
        from greenlm.meters.nvml_share import NvmlShareMeter

        tree = ctx.tree if ctx.tree is not None else ProcessTree(ctx.pid)
        meters = [NvmlShareMeter(lib, m, getattr(m, "query_handle", None), tree) for m in meters]
    kinds = sorted({m.provenance for m in meters})
    detail = f"{len(meters)} GPU(s), {'/'.join(kinds)}"
    n_mig = sum(1 for m in meters if m.describe().get("mig_uuid"))
    if n_mig:
        detail += f", {n_mig} of them MIG instance(s) measured as their share of their GPU"
    if ctx.attribution == "process":
        detail += "; shared GPUs are split by the processes' activity"
    return GpuFound(meters, detail, warnings)
