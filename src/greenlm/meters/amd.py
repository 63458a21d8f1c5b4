"""AMD GPUs (Instinct, Radeon) through AMD SMI (the ``amdsmi`` Python package of ROCm).

* ``counter``: ``amdsmi_get_energy_count``: an accumulator in ticks of ``counter_resolution``
  microjoules (15.3 uJ on MI100/MI200/MI300) since driver load, with its timestamp. The key
  was ``power`` before ROCm 6.4 and is ``energy_accumulator`` since; both are read. A drop of
  the accumulator is taken as a wrap of a 32-bit counter (or a 64-bit one above 2^32), and
  whatever that gives must still pass the bound below.
* ``sampled``: ``amdsmi_get_power_info`` (watts: ``current_socket_power`` on MI300, else
  ``average_socket_power``, a firmware average over about a second) integrated by the
  sampling thread, for devices without a usable counter and when the counter is refused.

The counter is **checked against the integrated power readings** every interval
(:class:`~greenlm.meters._gpucheck.CounterCheck`): it is refused when it jumps beyond what
the board can draw, stalls for 2 s while power reads 5 W or more (seen on MI100 and MI210
with ROCm 6.0-6.1), or disagrees with the readings by more than 25 % over a 10 s window.
Then the meter raises and the tracker continues with power sampling: one warning, provenance
``sampled``, and the energy the counter missed is carried over from the power readings.
Every reading is bounded by the board's maximum power cap (``amdsmi_get_power_cap_info``,
microwatts), so a megawatt artefact cannot reach a result.

**Visibility** follows the ROCm runtimes: ``ROCR_VISIBLE_DEVICES`` (indices or ``GPU-<uuid>``)
selects among all GPUs first; then ``HIP_VISIBLE_DEVICES``, or ``CUDA_VISIBLE_DEVICES`` when
``HIP_VISIBLE_DEVICES`` is unset (HIP reads it as an alias), selects among what ROCr left,
by index or UUID. Both lists are enumerated in the order given; an entry that matches no
device (or several) ends the list, as in CUDA; an empty variable hides every GPU. Devices are
put in HIP's order by ``amdsmi_get_gpu_enumeration_info``'s ``hip_id`` (ROCm 6.4 and newer),
else taken in amdsmi's order (PCI bus order, which is what ROCr uses too). UUIDs are matched
against ``GPU-`` + the ASIC serial (``amdsmi_get_gpu_asic_info``), as ROCm prints them.

A GPU counts the whole device (``scope="device"``): AMD SMI offers no per-process
utilisation samples to split a shared GPU by. On MI250/MI250X each GCD is a device, and the
card's power is reported on one of them; a device that reports no energy at all over a run
says so in the result.

``amdsmi`` is imported through :func:`load_amdsmi`, the vendor boundary that tests replace.
It is on PyPI (``pip install 'greenlm[amd]'``; choose the release matching the installed
ROCm, e.g. ``amdsmi==6.4.*``) and ships with ROCm (``pip install /opt/rocm/share/amd_smi``);
both need ROCm's ``libamd_smi.so``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from greenlm.errors import MeterUnavailableError
from greenlm.meters._gpucheck import CounterCheck, PowerLimit, PowerReadings, power_limit
from greenlm.meters.base import Band, IntegratingMeter, Meter

if TYPE_CHECKING:
    from greenlm.meters.detect import DetectContext, GpuFound

log = logging.getLogger(__name__)

BACKEND = "AMD SMI"
#: Visibility variables, in the order the ROCm runtimes apply them.
VISIBILITY_VARS = ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def load_amdsmi() -> ModuleType:
    """Import and initialise amdsmi, or raise MeterUnavailableError saying why not.

    The package prints to stdout when ``libamd_smi.so`` is missing; that is captured here
    so that ``greenlm detect --json`` stays valid JSON.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            lib = importlib.import_module("amdsmi")
    except ImportError as e:
        raise MeterUnavailableError(
            BACKEND,
            "library not found (pip install 'greenlm[amd]' with the amdsmi release matching your ROCm, "
            "or pip install /opt/rocm/share/amd_smi)",
        ) from e
    except Exception as e:  # the wrapper fails at import when libamd_smi.so is absent
        said = captured.getvalue().strip().splitlines()
        raise MeterUnavailableError(
            BACKEND,
            f"amdsmi is installed but libamd_smi.so could not be loaded ({said[0] if said else e}); "
            "install ROCm's amd-smi-lib or set ROCM_PATH",
        ) from e
    try:
        flags = getattr(lib, "AmdSmiInitFlags", None)
        if flags is not None and hasattr(flags, "INIT_AMD_GPUS"):
            lib.amdsmi_init(flags.INIT_AMD_GPUS)
        else:
            lib.amdsmi_init()
    except Exception as e:
        raise MeterUnavailableError(BACKEND, f"amdsmi_init failed: {e} (no amdgpu driver loaded?)") from e
    return lib


def _number(v: Any) -> float | None:
    """A reading as a float, ``None`` for amdsmi's ``"N/A"`` and other non-numbers."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, dict):  # some releases wrap readings as {"value": x, "unit": "W"}
        v = v.get("value")
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- devices
@dataclass(frozen=True)
class AmdGpu:
    """One AMD GPU (one GCD or partition) as amdsmi enumerates it."""

    handle: Any
    #: Position in amdsmi's handle list.
    smi_index: int
    #: ``GPU-<asic serial>`` (lower case), as ROCm prints it; ``None`` if unknown.
    uuid: str | None
    bdf: str | None
    model: str
    #: HIP's device id without visibility variables (ROCm >= 6.4), else ``None``.
    hip_id: int | None


def all_gpus(lib: ModuleType) -> list[AmdGpu]:
    """Every GPU amdsmi knows, in HIP's enumeration order where amdsmi says it."""
    out: list[AmdGpu] = []
    for i, h in enumerate(lib.amdsmi_get_processor_handles()):
        uuid = bdf = None
        model = "AMD GPU"
        hip_id: int | None = None
        try:
            asic = lib.amdsmi_get_gpu_asic_info(h)
            model = str(asic.get("market_name") or model)
            serial = str(asic.get("asic_serial") or "")
            if serial and serial != "N/A":
                uuid = "GPU-" + serial.lower().removeprefix("0x")
        except Exception as e:
            log.debug("amdsmi asic info of device %d failed: %s", i, e)
        with contextlib.suppress(Exception):
            bdf = str(lib.amdsmi_get_gpu_device_bdf(h))
        with contextlib.suppress(Exception):
            v = lib.amdsmi_get_gpu_enumeration_info(h).get("hip_id")
            hip_id = int(v) if _number(v) is not None else None
        out.append(AmdGpu(h, i, uuid, bdf, model, hip_id))
    if out and all(g.hip_id is not None for g in out) and len({g.hip_id for g in out}) == len(out):
        out.sort(key=lambda g: g.hip_id)  # type: ignore[arg-type,return-value]
    return out


def _norm(uuid: str) -> str:
    return uuid.lower().removeprefix("gpu-").replace("-", "")


def select(candidates: list[AmdGpu], spec: str) -> list[AmdGpu]:
    """The devices a visibility list names, in its order (indices into ``candidates``, or UUIDs)."""
    out: list[AmdGpu] = []
    for raw in spec.split(","):
        tok = raw.strip()
        if not tok:
            break
        found: AmdGpu | None = None
        if tok.lstrip("-").isdigit():
            n = int(tok)
            found = candidates[n] if 0 <= n < len(candidates) else None
        elif tok.lower().startswith("gpu-"):
            want = _norm(tok)
            hits = [g for g in candidates if g.uuid and _norm(g.uuid).startswith(want)]
            found = hits[0] if len(hits) == 1 and want else None
        if found is None:  # the runtimes stop at an entry they cannot use
            break
        if found not in out:
            out.append(found)
    return out


def visible(gpus: list[AmdGpu], env: Mapping[str, str]) -> tuple[list[AmdGpu], str]:
    """The GPUs a HIP process sees under ``env``, and a sentence saying which variables decided."""
    rocr, hip, cuda = (env.get(v) for v in VISIBILITY_VARS)
    said: list[str] = []
    seen = gpus
    if rocr is not None:
        seen = select(seen, rocr)
        said.append(f"ROCR_VISIBLE_DEVICES={rocr}")
    spec, var = (hip, "HIP_VISIBLE_DEVICES") if hip is not None else (cuda, "CUDA_VISIBLE_DEVICES")
    if spec is not None:
        seen = select(seen, spec)
        said.append(f"{var}={spec}")
        if hip is not None and cuda is not None:
            said.append(f"CUDA_VISIBLE_DEVICES={cuda} ignored (HIP_VISIBLE_DEVICES is set)")
    return seen, ("; ".join(said) if said else "no visibility variable set: all GPUs")


def board_limit(lib: ModuleType, handle: Any) -> PowerLimit:
    """The board's maximum power cap (amdsmi reports caps in microwatts)."""
    cands: list[tuple[float | None, str]] = []
    try:
        cap = lib.amdsmi_get_power_cap_info(handle)
        for key, what in (("max_power_cap", "maximum power cap"), ("power_cap", "power cap")):
            uw = _number(cap.get(key))
            if uw:
                cands.append((_to_watts(uw), f"board's {what} (amdsmi)"))
    except Exception as e:
        log.debug("amdsmi power cap failed: %s", e)
    try:
        w = _number(lib.amdsmi_get_power_info(handle).get("power_limit"))
        if w:
            cands.append((_to_watts(w), "board's power limit (amdsmi)"))
    except Exception as e:
        log.debug("amdsmi power limit failed: %s", e)
    return power_limit(cands)


def _to_watts(v: float) -> float:
    """Watts from an amdsmi cap: microwatts in the cap info, watts in the power info (by release)."""
    return v / 1e6 if v > 100_000 else v


def read_power_w(lib: ModuleType, handle: Any) -> float:
    """The device's power now (W): current socket power where reported, else the average."""
    info = lib.amdsmi_get_power_info(handle)
    for key in ("current_socket_power", "average_socket_power", "socket_power"):
        w = _number(info.get(key))
        if w is not None:
            return w
    raise RuntimeError(f"amdsmi_get_power_info reports no socket power ({info})")


def read_counter(lib: ModuleType, handle: Any) -> tuple[int, float]:
    """(accumulator ticks, microjoules per tick) of the energy counter."""
    d = lib.amdsmi_get_energy_count(handle)
    raw = d.get("energy_accumulator", d.get("power"))
    res = _number(d.get("counter_resolution"))
    ticks = _number(raw)
    if ticks is None or res is None or res <= 0:
        raise RuntimeError(f"amdsmi_get_energy_count gave no usable counter ({d})")
    return int(ticks), res


# --------------------------------------------------------------------------- meters
class _AmdDevice:
    name: str

    def _bind(self, lib: ModuleType, gpu: AmdGpu, hip_index: int, limit: PowerLimit) -> None:
        self._lib = lib
        self.gpu = gpu
        self._h = gpu.handle
        self.hip_index = hip_index
        self.name = f"gpu:{hip_index}"
        self.limit = limit
        self._zero_run = True  # nothing but zero energy so far

    def _device_info(self) -> dict[str, object]:
        return {
            "model": self.gpu.model,
            "vendor": "amd",
            "amdsmi_index": self.gpu.smi_index,
            "uuid": self.gpu.uuid,
            "bdf": self.gpu.bdf,
            "device_id": f"amdsmi:{self.gpu.bdf or self.gpu.uuid or self.gpu.smi_index}",
            "scope": "device",
            "max_power_w": self.limit.max_power_w,
            "power_bound": self.limit.source,
        }

    def _zero_warning(self, energy_j: float, elapsed_s: float) -> list[str]:
        if energy_j > 0 or elapsed_s < 1.0:
            return []
        return [
            f"{self.name}: {self.gpu.model} reported no energy at all over the run (0 W); on MI250/MI250X "
            "and partitioned MI300 the card's power is reported by one GCD or partition only, so this one "
            "reads zero: measure the reporting device too, or use attribution='machine'"
        ]


class AmdEnergyMeter(_AmdDevice, Meter):
    """An AMD GPU's energy accumulator, checked against its power readings."""

    kind = "gpu"
    provenance = "counter"
    band = Band(1.0, 1.0, "AMD SMI energy accumulator, checked against power readings")

    def __init__(self, lib: ModuleType, gpu: AmdGpu, hip_index: int, limit: PowerLimit, clock: Any = time.monotonic):
        super().__init__()
        self._bind(lib, gpu, hip_index, limit)
        self._clock = clock
        self._e = 0.0
        self._ticks = 0
        self._t = self._t0 = 0.0
        self._p: float | None = None
        self._readings = PowerReadings(limit)
        self._check = CounterCheck(limit)

    def _power(self) -> float | None:
        try:
            return self._readings.accept(read_power_w(self._lib, self._h))
        except Exception:
            return None

    def start(self) -> None:
        self._ticks, _ = read_counter(self._lib, self._h)
        self._t = self._t0 = self._clock()
        self._p = self._power()
        self._e = 0.0
        self._check = CounterCheck(self.limit)

    def energy_j(self) -> float:
        ticks, res = read_counter(self._lib, self._h)
        now = self._clock()
        p = self._power()
        dt = max(0.0, now - self._t)
        d = ticks - self._ticks
        if d < 0:  # wrapped: the accumulator's width is guessed from where it stood
            d += 2**32 if self._ticks < 2**32 else 2**64
        counter_j = d * res * 1e-6
        power_j = None if p is None or self._p is None else 0.5 * (p + self._p) * dt
        self._p = p if p is not None else self._p
        self._check.interval(counter_j, power_j, dt, p)  # raises CounterFault: not trusted
        self._ticks, self._t = ticks, now
        self._e += counter_j
        if dt > 0:
            self.last_power_w = counter_j / dt
        return self._e

    def bounds_j(self, energy_j: float) -> tuple[float, float]:
        # after a refused window: what the counter counted beyond the power readings may be wrong
        return max(0.0, energy_j - self._check.overcounted_j), energy_j

    def warnings(self) -> list[str]:
        return self._readings.warning(self.name) + self._zero_warning(self._e, self._t - self._t0)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), **self._device_info()}

    def fallback(self) -> Meter:
        """Power sampling, carrying the energy the refused counter missed by the power readings."""
        m = AmdPowerMeter(
            self._lib, self.gpu, self.hip_index, self.limit, carry_j=self._check.missed_j, clock=self._clock
        )
        m.read_power_w()  # raise now if power readings fail too
        return m


class AmdPowerMeter(_AmdDevice, IntegratingMeter):
    """An AMD GPU's power readings (W), integrated."""

    kind = "gpu"
    provenance = "sampled"
    band = Band(0.95, 1.05, "AMD SMI power readings: +/-5 % (as for NVML), integrated at the sampling interval")

    def __init__(
        self,
        lib: ModuleType,
        gpu: AmdGpu,
        hip_index: int,
        limit: PowerLimit,
        carry_j: float = 0.0,
        clock: Any = time.monotonic,
    ):
        super().__init__(clock)
        self._bind(lib, gpu, hip_index, limit)
        self._readings = PowerReadings(limit)
        #: Energy a refused counter missed (by the power readings), counted from the start.
        self.carry_j = max(0.0, carry_j)
        self._t_start = 0.0

    def read_power_w(self) -> float:
        p = self._readings.accept(read_power_w(self._lib, self._h))
        return 0.0 if p is None else p

    def start(self) -> None:
        super().start()
        self._t_start = self._clock()  # type: ignore[operator]

    def energy_j(self) -> float:
        return self.carry_j + super().energy_j()

    def warnings(self) -> list[str]:
        elapsed = (self._t or 0.0) - self._t_start
        return self._readings.warning(self.name) + self._zero_warning(self._e + self.carry_j, elapsed)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), **self._device_info()}


def amd_meters(
    lib: ModuleType | None = None, env: Mapping[str, str] | None = None, clock: Any = time.monotonic
) -> tuple[list[Meter], str, list[str]]:
    """One meter per visible AMD GPU, a line for ``greenlm detect``, and the warnings to record.

    ``env``: where to read the visibility variables (default: this process's environment);
    ``clock``: the monotonic clock the meters time intervals with (tests pass a simulated one).
    """
    lib = lib or load_amdsmi()
    gpus = all_gpus(lib)
    if not gpus:
        raise MeterUnavailableError(BACKEND, "amdsmi found no AMD GPU")
    seen, how = visible(gpus, os.environ if env is None else env)
    if not seen:
        raise MeterUnavailableError(BACKEND, f"no AMD GPU visible ({how} hides all {len(gpus)})")
    meters: list[Meter] = []
    warnings: list[str] = []
    for hip_index, g in enumerate(seen):
        limit = board_limit(lib, g.handle)
        try:
            read_counter(lib, g.handle)
            meters.append(AmdEnergyMeter(lib, g, hip_index, limit, clock))
            continue
        except Exception as e:
            why = str(e)
        try:
            read_power_w(lib, g.handle)
        except Exception as e:
            warnings.append(
                f"gpu:{hip_index} ({g.model}): amdsmi gives neither an energy counter ({why}) nor power ({e}); "
                "not measured (a virtual machine guest?)"
            )
            continue
        meters.append(AmdPowerMeter(lib, g, hip_index, limit, clock=clock))
        warnings.append(f"gpu:{hip_index}: no usable AMD SMI energy counter ({why}); power is sampled and integrated")
    if not meters:
        raise MeterUnavailableError(BACKEND, f"{len(seen)} AMD GPU(s) visible but none reports energy or power")
    kinds = "/".join(sorted({m.provenance for m in meters}))
    models = ", ".join(sorted({g.model for g in seen}))
    bounds = "; ".join(sorted({m.limit.source for m in meters}))  # type: ignore[attr-defined]
    detail = f"{len(meters)} GPU(s) ({models}), {kinds}; visible by {how}; readings bounded by the {bounds}"
    return meters, detail, warnings


def find(ctx: DetectContext) -> GpuFound:
    """The AMD backend of :func:`greenlm.meters.detect.detect`: one meter per visible GPU."""
    from greenlm.meters.detect import GpuFound

    meters, detail, warnings = amd_meters(env=ctx.env)
    if ctx.attribution == "process":
        detail += "; whole devices (AMD SMI has no per-process utilisation to split a shared GPU)"
    return GpuFound(meters, detail, warnings)
