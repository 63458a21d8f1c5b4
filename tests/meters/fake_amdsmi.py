"""A REPLACEMENT for AMD's ``amdsmi`` Python module, at the vendor-library boundary (no AMD GPU here).

Simulates AMD GPUs whose energy accumulators advance with a simulated clock, in ticks of
``counter_resolution`` microjoules, so greenlm's real AMD SMI code path (handles, HIP order,
ROCR/HIP/CUDA visibility, counter scale and wraparound, the counter's sanity check and the
fallback to power sampling) runs without a GPU. Function names, arguments, dictionary keys,
units (power in W, caps in uW) and the ``"N/A"`` strings follow amdsmi 6.x/7.x; the physics
and the faults are made up. Labelled as a replacement everywhere it is used.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


class AmdSmiInitFlags(enum.IntFlag):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1 << 0
    INIT_AMD_GPUS = 1 << 1


class AmdSmiException(Exception):
    pass


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int, msg: str = "") -> None:
        super().__init__(msg or f"amdsmi error {err_code}")
        self.err_code = err_code


AMDSMI_STATUS_NOT_SUPPORTED = 2


@dataclass
class FakeAmdGpu:
    model: str
    serial: str  # hex, as amdsmi_get_gpu_asic_info gives it without "0x"
    bdf: str
    power_w: float
    hip_id: int | None = None
    resolution_uj: float = 15.3
    ticks: float = 1_000_000.0
    width_bits: int = 64
    max_cap_w: float | None = 560.0
    has_counter: bool = True
    has_power: bool = True
    current_power: bool = True  # MI300: current_socket_power; older: only average_socket_power
    old_key: bool = False  # ROCm 6.0-6.3: the accumulator under "power"
    stalled: bool = False  # the accumulator stops advancing
    scale: float = 1.0  # the accumulator advances scale x the true energy
    jump_uj: float = 0.0  # added once at the next read
    power_glitch_w: float | None = None  # the next power reading

    def advance(self, seconds: float) -> None:
        if not self.stalled:
            self.ticks += self.power_w * seconds * 1e6 * self.scale / self.resolution_uj


class State:
    gpus: list[FakeAmdGpu] = []
    fail_init = False
    enumeration_info = True  # ROCm >= 6.4
    initialised = False
    now_s = 1000.0


def install(gpus: list[FakeAmdGpu]) -> None:
    State.gpus = gpus
    State.fail_init = False
    State.enumeration_info = True
    State.initialised = False


def advance(seconds: float) -> None:
    """Let simulated time pass on every GPU."""
    State.now_s += seconds
    for g in State.gpus:
        g.advance(seconds)


@contextlib.contextmanager
def ticking(step_s: float = 0.01, speed: float = 1.0) -> Iterator[None]:
    """Advance simulated time along with real time (``speed`` simulated seconds per real one)."""
    stop = threading.Event()

    def run() -> None:
        last = time.monotonic()
        while not stop.wait(step_s):
            now = time.monotonic()
            advance((now - last) * speed)
            last = now

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def amdsmi_init(flag: AmdSmiInitFlags = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
    if State.fail_init:
        raise AmdSmiLibraryException(34, "AMDSMI_STATUS_DRIVER_NOT_LOADED")
    State.initialised = True


def amdsmi_shut_down() -> None:
    State.initialised = False


def amdsmi_get_processor_handles() -> list[FakeAmdGpu]:
    return list(State.gpus)


def amdsmi_get_gpu_asic_info(h: FakeAmdGpu) -> dict[str, object]:
    return {
        "market_name": h.model,
        "vendor_id": "0x1002",
        "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
        "device_id": "0x74a1",
        "asic_serial": "0x" + h.serial.upper(),
        "num_compute_units": 304,
    }


def amdsmi_get_gpu_device_bdf(h: FakeAmdGpu) -> str:
    return h.bdf


def amdsmi_get_gpu_enumeration_info(h: FakeAmdGpu) -> dict[str, object]:
    if not State.enumeration_info:
        raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED, "AMDSMI_STATUS_NOT_SUPPORTED")
    return {"drm_render": 128, "drm_card": 0, "hsa_id": h.hip_id, "hip_id": h.hip_id, "hip_uuid": f"GPU-{h.serial}"}


def amdsmi_get_energy_count(h: FakeAmdGpu) -> dict[str, object]:
    if not h.has_counter:
        raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED, "AMDSMI_STATUS_NOT_SUPPORTED")
    if h.jump_uj:
        h.ticks += h.jump_uj / h.resolution_uj
        h.jump_uj = 0.0
    value = int(h.ticks) % (2**h.width_bits)
    key = "power" if h.old_key else "energy_accumulator"
    return {key: value, "counter_resolution": h.resolution_uj, "timestamp": time.monotonic_ns()}


def amdsmi_get_power_info(h: FakeAmdGpu) -> dict[str, object]:
    if not h.has_power:
        raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED, "AMDSMI_STATUS_NOT_SUPPORTED")
    w = h.power_w
    if h.power_glitch_w is not None:
        w, h.power_glitch_w = h.power_glitch_w, None
    return {
        "socket_power": int(w),
        "current_socket_power": int(w) if h.current_power else "N/A",
        "average_socket_power": "N/A" if h.current_power else int(w),
        "gfx_voltage": 900,
        "soc_voltage": 800,
        "mem_voltage": 1200,
        "power_limit": int(h.max_cap_w) if h.max_cap_w else "N/A",
    }


def amdsmi_get_power_cap_info(h: FakeAmdGpu) -> dict[str, object]:
    if h.max_cap_w is None:
        raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED, "AMDSMI_STATUS_NOT_SUPPORTED")
    uw = int(h.max_cap_w * 1e6)
    return {"power_cap": uw, "default_power_cap": uw, "dpm_cap": 2100, "min_power_cap": 0, "max_power_cap": uw}


def clock() -> float:
    """The simulated monotonic clock (seconds), for meters built with ``clock=fake.clock``."""
    return State.now_s
