"""Pick meters in order of trust and say why the others were not used.

GPUs: every backend in :data:`GPU_BACKENDS` is asked in turn (NVML, then AMD SMI; each:
energy counter > power sampling); each answers with its meters or says why it cannot. CPU: RAPL package counters >
CPU power model. RAM: RAPL dram counters > RAM power model. Each fallback becomes one
warning in the result; ``greenlm detect`` prints the whole report.

A new GPU vendor is one module with a function ``find(ctx: DetectContext) -> GpuFound``
(raising :class:`~greenlm.errors.MeterUnavailableError` with the reason when it has nothing)
and one line in :data:`GPU_BACKENDS` (or :func:`register_gpu_backend` from outside greenlm).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from greenlm.config import DEFAULT_RAPL_ROOT
from greenlm.errors import MeterUnavailableError
from greenlm.meters.base import Meter

if TYPE_CHECKING:
    from greenlm.meters._proctree import ProcessTree

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeterStatus:
    """One backend's verdict on this machine."""

    backend: str
    available: bool
    used: bool
    detail: str


@dataclass
class Detection:
    """Meters chosen, what each backend said, and the fallbacks to record."""

    meters: list[Meter] = field(default_factory=list)
    report: list[MeterStatus] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DetectContext:
    """What a GPU backend may need to build its meters."""

    #: The process whose tree is measured (``greenlm track``'s child; else this process).
    pid: int
    #: ``process`` (charge the tracked process tree) or ``machine``.
    attribution: str = "process"
    #: The environment to read device visibility from (``CUDA_VISIBLE_DEVICES``, ...).
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: The tracked process tree (``pid`` and its descendants), shared with the CPU and RAM
    #: models so that ``/proc`` is walked once; ``None``: build one from ``pid``.
    tree: ProcessTree | None = None


@dataclass(frozen=True)
class GpuFound:
    """A GPU backend's answer: its meters, one line for ``greenlm detect``, fallbacks to record."""

    meters: list[Meter]
    detail: str
    warnings: list[str] = field(default_factory=list)


GpuFinder = Callable[[DetectContext], GpuFound]

#: GPU backends, asked in this order: (name shown by ``greenlm detect``, ``module:function``).
#: A new vendor is one module and one line here.
GPU_BACKENDS: list[tuple[str, str | GpuFinder]] = [
    ("NVML", "greenlm.meters.nvml:find"),
    ("AMD SMI", "greenlm.meters.amd:find"),
]


def register_gpu_backend(name: str, find: str | GpuFinder) -> None:
    """Add (or replace) a GPU backend: ``find(ctx) -> GpuFound`` or ``"module:function"``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a GPU backend needs a name, got {name!r}")
    GPU_BACKENDS[:] = [(n, f) for n, f in GPU_BACKENDS if n != name]
    GPU_BACKENDS.append((name, find))


def _finder(target: str | GpuFinder) -> GpuFinder:
    if callable(target):
        return target
    module, _, func = target.partition(":")
    fn: GpuFinder = getattr(importlib.import_module(module), func)
    return fn


def detect(
    *,
    pid: int | None = None,
    rapl_root: str = DEFAULT_RAPL_ROOT,
    cpu_tdp_w: float | None = None,
    attribution: str = "process",
    gpus: bool = True,
) -> Detection:
    """Build the meters for this machine."""
    from greenlm.meters import cpu_model, ram_model, rapl
    from greenlm.meters._proctree import ProcessTree

    det = Detection()
    tree_pid = pid if pid is not None else os.getpid()
    tree = ProcessTree(tree_pid)
    if gpus:
        ctx = DetectContext(pid=tree_pid, attribution=attribution, tree=tree)
        for name, target in list(GPU_BACKENDS):
            try:
                found = _finder(target)(ctx)
            except MeterUnavailableError as e:
                det.report.append(MeterStatus(name, False, False, e.reason))
                continue
            except Exception as e:  # a broken backend must not hide the others
                log.debug("GPU backend %s failed", name, exc_info=True)
                det.report.append(MeterStatus(name, False, False, f"backend failed: {e}"))
                continue
            det.meters += found.meters
            det.warnings += found.warnings
            det.report.append(MeterStatus(name, True, bool(found.meters), found.detail))
    # CPU and RAM
    rapl_ok: list[Meter] = []
    try:
        rapl_ok = rapl.rapl_meters(rapl_root)
        det.report.append(MeterStatus("RAPL", True, True, ", ".join(m.name for m in rapl_ok)))
    except MeterUnavailableError as e:
        det.report.append(MeterStatus("RAPL", False, False, e.reason))
        if "permission" in e.reason:
            det.warnings.append(f"RAPL: {e.reason}; fell back to the CPU power model")
    if any(m.kind == "cpu" for m in rapl_ok):
        det.meters += [m for m in rapl_ok if m.kind == "cpu"]
        det.report.append(MeterStatus("CPU model", True, False, "not needed: RAPL package counters"))
    else:
        spec = cpu_model.cpu_spec(tdp_w=cpu_tdp_w)
        det.meters.append(cpu_model.CpuModelMeter(spec, attribution=attribution, tree=tree))
        det.report.append(MeterStatus("CPU model", True, True, spec.source))
        det.warnings.append("CPU energy is modeled (utilisation x TDP; no RAPL counter): see the band")
        if spec.defaulted:
            det.warnings.append(f"CPU TDP {spec.source}")
    if any(m.kind == "ram" for m in rapl_ok):
        det.meters += [m for m in rapl_ok if m.kind == "ram"]
        det.report.append(MeterStatus("RAM model", True, False, "not needed: RAPL dram counters"))
    else:
        det.meters.append(ram_model.RamModelMeter(attribution=attribution, tree=tree))
        det.report.append(MeterStatus("RAM model", True, True, f"{ram_model.W_PER_GB[1]} W/GB of memory in use"))
    return det
