"""A REPLACEMENT for nvidia-ml-py's ``pynvml`` module, at the vendor-library boundary (no GPU here).

Simulates GPUs whose energy counters advance with a simulated clock, so greenlm's real NVML
code path (handles, CUDA_VISIBLE_DEVICES mapping, counter vs power sampling, MIG instances,
per-process utilisation samples and accounting) runs without a GPU. The functions have the
names, arguments, return shapes and error codes of pynvml (nvidia-ml-py 12/13); the physics
is made up. Labelled as a replacement everywhere it is used.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_GPU_INSTANCE_PROFILE_1_SLICE = 0x0
NVML_GPU_INSTANCE_PROFILE_2_SLICE = 0x1
NVML_GPU_INSTANCE_PROFILE_3_SLICE = 0x2
NVML_GPU_INSTANCE_PROFILE_4_SLICE = 0x3
NVML_GPU_INSTANCE_PROFILE_7_SLICE = 0x4
NVML_GPU_INSTANCE_PROFILE_8_SLICE = 0x5
NVML_GPU_INSTANCE_PROFILE_6_SLICE = 0x6
_SLICES = {0x0: 1, 0x1: 2, 0x2: 3, 0x3: 4, 0x4: 7, 0x5: 8, 0x6: 6}


class NVMLError(Exception):
    def __init__(self, value: int, msg: str = "") -> None:
        super().__init__(msg or f"NVML error {value}")
        self.value = value


class NVMLError_NotSupported(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_SUPPORTED, "Not Supported")


class NVMLError_NotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_FOUND, "Not Found")


@dataclass
class FakeProc:
    """A process holding a context on a GPU, busy ``sm_util`` % of the time."""

    pid: int
    sm_util: int
    used_memory: int = 1 << 30


@dataclass
class FakeMig:
    """A MIG instance (one compute instance in its GPU instance)."""

    uuid: str
    gi: int
    ci: int
    gi_slices: int
    ci_slices: int
    parent: FakeGPU | None = None
    has_counter: bool = False
    energy_mj: int = 0
    name: str = "NVIDIA A100-SXM4-80GB MIG"


@dataclass
class FakeGPU:
    name: str
    uuid: str
    power_w: float
    has_counter: bool = True
    max_limit_w: float | None = 400.0
    energy_mj: int = 10_000_000
    mig: list[FakeMig] | None = None  # MIG mode on when a list (possibly empty)
    full_slices: int | None = 7  # the largest GPU-instance profile's slice count
    procs: list[FakeProc] = field(default_factory=list)
    proc_list_supported: bool = True
    util_supported: bool = True
    accounting: bool = False
    samples: list[tuple[int, int, int]] = field(default_factory=list)  # (pid, timeStamp us, smUtil)
    busy_ms: dict[int, float] = field(default_factory=dict)  # accounting: pid -> activity ms
    life_ms: dict[int, float] = field(default_factory=dict)  # accounting: pid -> lifetime ms
    counter_jump_mj: int = 0  # added once at the next read: a counter artefact
    power_glitch_w: float | None = None  # the next power reading returns this

    def __post_init__(self) -> None:
        for m in self.mig or []:
            m.parent = self


class State:
    gpus: list[FakeGPU] = []
    initialised = False
    fail_init = False
    now_us = 1_700_000_000_000_000
    calls: dict[str, int] = {}


def install(gpus: list[FakeGPU]) -> None:
    State.gpus = gpus
    State.initialised = False
    State.fail_init = False
    State.calls = {}


def advance(seconds: float) -> None:
    """Let simulated time pass: counters advance by power x time; busy processes leave samples."""
    State.now_us += int(seconds * 1e6)
    for g in State.gpus:
        g.energy_mj += int(g.power_w * seconds * 1000)
        for m in g.mig or []:
            m.energy_mj += int(g.power_w * seconds * 1000 * m.ci_slices / (g.full_slices or 7))
        for p in g.procs:
            g.samples.append((p.pid, State.now_us, p.sm_util))
            g.life_ms[p.pid] = g.life_ms.get(p.pid, 0.0) + seconds * 1e3
            g.busy_ms[p.pid] = g.busy_ms.get(p.pid, 0.0) + seconds * 1e3 * p.sm_util / 100
        del g.samples[:-200]  # the driver keeps a short buffer


@contextlib.contextmanager
def ticking(step_s: float = 0.01) -> Iterator[None]:
    """Advance simulated time along with real time (for runs under a real tracker)."""
    stop = threading.Event()

    def run() -> None:
        last = time.monotonic()
        while not stop.wait(step_s):
            now = time.monotonic()
            advance(now - last)
            last = now

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def _count(name: str) -> None:
    State.calls[name] = State.calls.get(name, 0) + 1


def nvmlInit() -> None:
    if State.fail_init:
        raise NVMLError(9, "NVML Shared Library Not Found")
    State.initialised = True


def nvmlShutdown() -> None:
    State.initialised = False


def nvmlDeviceGetCount() -> int:
    return len(State.gpus)


def nvmlDeviceGetHandleByIndex(i: int) -> FakeGPU:
    return State.gpus[i]


def nvmlDeviceGetUUID(h: FakeGPU | FakeMig) -> str:
    return h.uuid


def nvmlDeviceGetName(h: FakeGPU | FakeMig) -> bytes:
    return h.name.encode()


def nvmlDeviceGetTotalEnergyConsumption(h: FakeGPU | FakeMig) -> int:
    if not h.has_counter:
        raise NVMLError_NotSupported()
    if isinstance(h, FakeGPU) and h.counter_jump_mj:
        h.energy_mj += h.counter_jump_mj
        h.counter_jump_mj = 0
    return h.energy_mj


def nvmlDeviceGetPowerUsage(h: FakeGPU | FakeMig) -> int:
    if isinstance(h, FakeMig):
        raise NVMLError_NotSupported()
    if h.power_glitch_w is not None:
        w, h.power_glitch_w = h.power_glitch_w, None
        return int(w * 1000)
    return int(h.power_w * 1000)


def nvmlDeviceGetPowerManagementLimitConstraints(h: FakeGPU) -> list[int]:
    if not isinstance(h, FakeGPU) or h.max_limit_w is None:
        raise NVMLError_NotSupported()
    return [100_000, int(h.max_limit_w * 1000)]


def nvmlDeviceGetEnforcedPowerLimit(h: FakeGPU) -> int:
    if not isinstance(h, FakeGPU) or h.max_limit_w is None:
        raise NVMLError_NotSupported()
    return int(h.max_limit_w * 1000)


# ------------------------------------------------------------------ processes
class _ProcInfo:
    def __init__(self, p: FakeProc) -> None:
        self.pid = p.pid
        self.usedGpuMemory = p.used_memory
        self.gpuInstanceId = 0xFFFFFFFF
        self.computeInstanceId = 0xFFFFFFFF


def nvmlDeviceGetComputeRunningProcesses(h: FakeGPU | FakeMig) -> list[_ProcInfo]:
    _count("processes")
    if isinstance(h, FakeMig):
        return []
    if not h.proc_list_supported:
        raise NVMLError_NotSupported()
    return [_ProcInfo(p) for p in h.procs]


def nvmlDeviceGetGraphicsRunningProcesses(h: FakeGPU | FakeMig) -> list[_ProcInfo]:
    if isinstance(h, FakeGPU) and not h.proc_list_supported:
        raise NVMLError_NotSupported()
    return []


class _UtilSample:
    def __init__(self, pid: int, ts: int, sm: int) -> None:
        self.pid, self.timeStamp, self.smUtil, self.memUtil, self.encUtil, self.decUtil = pid, ts, sm, 0, 0, 0


def nvmlDeviceGetProcessUtilization(h: FakeGPU | FakeMig, timeStamp: int) -> list[_UtilSample]:
    _count("utilization")
    if isinstance(h, FakeMig) or not h.util_supported:
        raise NVMLError_NotSupported()
    out = [_UtilSample(pid, ts, sm) for pid, ts, sm in h.samples if ts > timeStamp]
    if not out:
        raise NVMLError_NotFound()
    return out


def nvmlDeviceGetAccountingMode(h: FakeGPU | FakeMig) -> int:
    if isinstance(h, FakeMig):
        raise NVMLError_NotSupported()
    return NVML_FEATURE_ENABLED if h.accounting else NVML_FEATURE_DISABLED


def nvmlDeviceGetAccountingPids(h: FakeGPU) -> list[int]:
    if not h.accounting:
        raise NVMLError_NotSupported()
    return list(h.life_ms)


class _Stats:
    def __init__(self, util: int, time_ms: int) -> None:
        self.gpuUtilization, self.memoryUtilization, self.time, self.isRunning = util, 0, time_ms, 1
        self.maxMemoryUsage, self.startTime = 0, 0


def nvmlDeviceGetAccountingStats(h: FakeGPU, pid: int) -> _Stats:
    if pid not in h.life_ms:
        raise NVMLError_NotFound()
    life = h.life_ms[pid]
    return _Stats(round(100 * h.busy_ms[pid] / life) if life else 0, int(life))


# ------------------------------------------------------------------ MIG
def nvmlDeviceGetMigMode(h: FakeGPU) -> list[int]:
    if not isinstance(h, FakeGPU):
        raise NVMLError_NotSupported()
    mode = NVML_DEVICE_MIG_ENABLE if h.mig is not None else NVML_DEVICE_MIG_DISABLE
    return [mode, mode]


def nvmlDeviceGetMaxMigDeviceCount(h: FakeGPU) -> int:
    return 7 if h.mig is not None else 0


def nvmlDeviceGetMigDeviceHandleByIndex(h: FakeGPU, index: int) -> FakeMig:
    if h.mig is None or index >= len(h.mig):
        raise NVMLError_NotFound()
    return h.mig[index]


def nvmlDeviceGetGpuInstanceId(h: FakeMig) -> int:
    return h.gi


def nvmlDeviceGetComputeInstanceId(h: FakeMig) -> int:
    return h.ci


class _Attrs:
    def __init__(self, m: FakeMig) -> None:
        self.multiprocessorCount = 14 * m.ci_slices
        self.gpuInstanceSliceCount = m.gi_slices
        self.computeInstanceSliceCount = m.ci_slices
        self.memorySizeMB = 10_000 * m.gi_slices


def nvmlDeviceGetAttributes(h: FakeMig) -> _Attrs:
    if not isinstance(h, FakeMig):
        raise NVMLError_NotSupported()
    return _Attrs(h)


class _ProfileInfo:
    def __init__(self, profile: int) -> None:
        self.id, self.sliceCount = profile, _SLICES[profile]


def nvmlDeviceGetGpuInstanceProfileInfo(h: FakeGPU, profile: int, version: int = 2) -> _ProfileInfo:
    if h.mig is None or h.full_slices is None or _SLICES.get(profile, 99) > h.full_slices:
        raise NVMLError_NotSupported()
    return _ProfileInfo(profile)


def clock() -> float:
    """The simulated monotonic clock (seconds), for meters built with ``clock=fake.clock``."""
    return State.now_us / 1e6
