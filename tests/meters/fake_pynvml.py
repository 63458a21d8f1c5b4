"""A replacement for nvidia-ml-py's ``pynvml`` module, at the vendor-library boundary.

Simulates GPUs whose energy counters advance with a fake clock, so greenlm's real NVML
code path (handles, CUDA_VISIBLE_DEVICES mapping, counter vs power sampling) runs without
a GPU. Labelled as a fake everywhere it is used.
"""

from __future__ import annotations


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class FakeGPU:
    def __init__(self, name: str, uuid: str, power_w: float, has_counter: bool = True) -> None:
        self.name, self.uuid, self.power_w, self.has_counter = name, uuid, power_w, has_counter
        self.energy_mj = 10_000_000


class State:
    gpus: list[FakeGPU] = []
    initialised = False
    fail_init = False


def install(gpus: list[FakeGPU]) -> None:
    State.gpus = gpus
    State.initialised = False


def advance(seconds: float) -> None:
    """Let simulated time pass: counters advance by power x time."""
    for g in State.gpus:
        g.energy_mj += int(g.power_w * seconds * 1000)


def nvmlInit() -> None:
    if State.fail_init:
        raise NVMLError("NVML Shared Library Not Found")
    State.initialised = True


def nvmlShutdown() -> None:
    State.initialised = False


def nvmlDeviceGetCount() -> int:
    return len(State.gpus)


def nvmlDeviceGetHandleByIndex(i: int) -> FakeGPU:
    return State.gpus[i]


def nvmlDeviceGetUUID(h: FakeGPU) -> str:
    return h.uuid


def nvmlDeviceGetName(h: FakeGPU) -> bytes:
    return h.name.encode()


def nvmlDeviceGetTotalEnergyConsumption(h: FakeGPU) -> int:
    if not h.has_counter:
        raise NVMLError_NotSupported("Not Supported")
    return h.energy_mj


def nvmlDeviceGetPowerUsage(h: FakeGPU) -> int:
    return int(h.power_w * 1000)
